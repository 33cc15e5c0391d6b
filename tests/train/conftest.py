"""Shared test data for the training tests: a class-per-folder tree of grey 28×28 images, and
the comparison of two finished runs (the run-folder and fault tests)."""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BlockClasses = Callable[..., Path]


def write_block_classes(
    root: Path,
    counts: Sequence[int],
    cols: int,
    step: tuple[int, int],
    offset: tuple[int, int] = (2, 2),
    block: int = 4,
    seed: int = 0,
) -> Path:
    """``root/class<NN>/<i>.png``: class ``c`` has ``counts[c]`` images of dim noise (0-59) with
    a bright ``block``-square at grid cell ``divmod(c, cols)`` (cells ``step`` pixels apart)."""
    rng = np.random.default_rng(seed)
    for c, n in enumerate(counts):
        (root / f"class{c:02d}").mkdir()
        r, col = divmod(c, cols)
        top, left = offset[0] + step[0] * r, offset[1] + step[1] * col
        for i in range(n):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            img[top : top + block, left : left + block] = 255
            Image.fromarray(img, mode="L").save(root / f"class{c:02d}" / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def block_classes() -> BlockClasses:
    """:func:`write_block_classes`, for the test modules' folder fixtures."""
    return write_block_classes


def assert_same_run(a: Path, b: Path) -> None:
    """Runs ``a`` and ``b`` ended alike: last and best weights bit for bit, the best step, and
    the metrics history (wall-clock times aside, no step logged twice); ``b`` holds no
    temporaries of interrupted writes."""
    import torch

    from metamap.train import RunPaths, load_checkpoint, read_metrics

    def outcome(out: Path) -> tuple[dict, dict, int, list]:
        run = RunPaths(out)
        last, best = load_checkpoint(run.last), load_checkpoint(run.best)
        records = [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run.metrics)]
        return last["learner"], best["learner"], best["step"], records

    (la, ba, sa, ra), (lb, bb, sb, rb) = outcome(a), outcome(b)
    assert la.keys() == lb.keys() and all(torch.equal(la[k], lb[k]) for k in la), "last differs"
    assert all(torch.equal(ba[k], bb[k]) for k in ba), "best weights differ"
    assert (sa, ra) == (sb, rb), "best step or metrics history differ"
    assert [r["step"] for r in rb] == sorted({r["step"] for r in rb}), "a step logged twice"
    leftovers = list(b.rglob(".*.tmp"))
    assert not leftovers, f"temporaries left behind: {leftovers}"


@pytest.fixture(scope="session")
def same_run() -> Callable[[Path, Path], None]:
    """:func:`assert_same_run`, for the test modules."""
    return assert_same_run
