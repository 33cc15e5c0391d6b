"""Lake et al. (2015)'s 20 within-alphabet 20-way one-shot classification runs of Omniglot.

Each run (``one-shot-classification/all_runs/runNN`` in github.com/brendenlake/omniglot) holds 20
training images, one per class, and 20 test images; ``class_labels.txt`` names each test image's
training image. Humans err on 4.5% of the test items (Lake, Salakhutdinov & Tenenbaum 2015).
The images are preprocessed like :func:`metamap.data.omniglot_images` (grey, resized, inverted),
so a model trained on the Omniglot cache takes them as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from metamap.data.images import Resample, decode_image, list_images, parse_size
from metamap.data.omniglot import OMNIGLOT_ENV
from metamap.errors import DataError

__all__ = ["OneShotRun", "omniglot_one_shot_runs", "run_images_seen"]


@dataclass(frozen=True)
class OneShotRun:
    """One of Lake et al.'s 20-way one-shot runs: 20 training images (one per class), 20 tests.

    ``answers[j]`` is the index into ``train_images`` of test item ``j``'s class. Images are
    preprocessed like :func:`omniglot_images` (grey, resized, inverted).
    """

    name: str
    train_images: npt.NDArray[np.uint8]
    test_images: npt.NDArray[np.uint8]
    answers: npt.NDArray[np.int64]
    train_sources: tuple[str, ...]
    test_sources: tuple[str, ...]


def _runs_folder(root: str | os.PathLike[str] | None) -> Path:
    if root is None and not os.environ.get(OMNIGLOT_ENV):
        raise DataError(
            "Omniglot one-shot runs: pass root= or set "
            f"{OMNIGLOT_ENV} to the Omniglot folder holding one-shot-classification/all_runs/"
            "run01..run20 (from all_runs.zip in github.com/brendenlake/omniglot, python/"
            "one-shot-classification/)"
        )
    base = Path(root if root is not None else os.environ[OMNIGLOT_ENV]).expanduser()
    for candidate in (base / "one-shot-classification" / "all_runs", base / "all_runs", base):
        if (candidate / "run01").is_dir():
            return candidate
    raise DataError(
        f"no Omniglot one-shot runs under {base}: expected {base}/one-shot-classification/"
        "all_runs/runNN/{class_labels.txt,training/classNN.png,test/itemNN.png} (unzip "
        "all_runs.zip from github.com/brendenlake/omniglot, python/one-shot-classification/)"
    )


def omniglot_one_shot_runs(
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int | Sequence[int] = 28,
    resample: Resample = "lanczos",
) -> list[OneShotRun]:
    """Lake et al. (2015)'s 20 one-shot classification runs (800 small images: not cached).

    ``root``: the Omniglot folder (holding ``one-shot-classification/all_runs``), ``all_runs``
    itself, or ``$METAMAP_OMNIGLOT``.
    """
    folder = _runs_folder(root)
    hw = parse_size(image_size)
    runs = []
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("run")):
        labels_file = run_dir / "class_labels.txt"
        if not labels_file.is_file():
            raise DataError(f"{labels_file} is missing; the one-shot runs are incomplete")
        train_files = list_images(run_dir / "training")
        train_names = [f"{run_dir.name}/training/{f.name}" for f in train_files]
        pairs = []
        for n, line in enumerate(labels_file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in train_names:
                raise DataError(
                    f"{labels_file}:{n}: expected '<run>/test/itemNN.png "
                    f"<run>/training/classNN.png' naming a file of {run_dir / 'training'}"
                )
            pairs.append((parts[0], train_names.index(parts[1])))
        pairs.sort()
        test_paths = [folder / t for t, _ in pairs]

        def load(paths: Sequence[Path]) -> npt.NDArray[np.uint8]:
            return np.stack(
                [decode_image(p, hw, "L", resample=resample, invert=True) for p in paths]
            )

        runs.append(
            OneShotRun(
                name=run_dir.name,
                train_images=load(train_files),
                test_images=load(test_paths),
                answers=np.asarray([a for _, a in pairs], dtype=np.int64),
                train_sources=tuple(train_names),
                test_sources=tuple(t for t, _ in pairs),
            )
        )
    if not runs:
        raise DataError(f"{folder} holds no runNN folders")
    return runs


def run_images_seen(images: npt.NDArray[np.uint8], runs: Sequence[OneShotRun]) -> list[str]:
    """The run images (``runNN/training/classNN.png``, ``runNN/test/itemNN.png``) whose pixels
    are identical to one of ``images`` ``(N, 1, H, W)`` (a training split, decoded the same way),
    so a model trained on ``images`` has seen them: Lake's error is only a one-shot figure for
    a model for which this is empty.

    The runs are drawn from the 20 evaluation alphabets; the Vinyals split trains on characters
    of those alphabets, and 312 of the 800 run images are drawings in its training split.
    """
    seen = {np.ascontiguousarray(x).tobytes() for x in images}
    found = []
    for run in runs:
        for image, source in (
            *zip(run.train_images, run.train_sources, strict=True),
            *zip(run.test_images, run.test_sources, strict=True),
        ):
            if image.tobytes() in seen:
                found.append(source)
    return found
