"""Do two versions of metamap train the same runs to the same bits?

Trains two short runs with the code of ``--base`` (a git revision, checked out in a temporary
worktree) and with this working tree, from this tree's configs, on one machine, one thread, the
same venv:

* sinusoid MAML (``configs/sinusoid/maml.yaml``, 60 meta-iterations, 50 test tasks);
* Omniglot ProtoNet (``configs/omniglot/protonet-5w1s.yaml`` on ``../shared/data/omniglot``,
  30 episodes, 30 test episodes).

and compares, exactly: every line of ``metrics.jsonl`` (timings aside), every tensor of
``last.pt`` and ``best.pt``, and the test scores of ``eval.json``. The default base is the commit
before the core redesign (issue 24). Writes ``benchmarks/results/bit_identity.json``.

    python benchmarks/bit_identity.py [--base REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from machine import ROOT, SHARED, command_line, cpu_info, git_state, provenance, write_result

BASE = "8b8e35990c6d96e63d6762b574d82b66898edaeb"
"""The last commit before the core redesign (``metamap.core``, problems, registries)."""

RUNS = {
    "sinusoid-maml": [
        "configs/sinusoid/maml.yaml",
        "-o", "train.steps=60", "-o", "train.val_every=20", "-o", "train.ckpt_every=20",
        "-o", "train.log_every=10", "-o", "train.val_tasks=20", "-o", "eval.tasks=50",
    ],
    "omniglot-protonet": [
        "configs/omniglot/protonet-5w1s.yaml",
        "-o", f"data.root={SHARED / 'omniglot'}",
        "-o", "train.steps=30", "-o", "train.val_every=10", "-o", "train.ckpt_every=10",
        "-o", "train.log_every=5", "-o", "train.val_tasks=20", "-o", "eval.tasks=30",
        "-o", "eval.queries=5",
    ],
}  # fmt: skip


def train(src: Path, name: str, out: Path, cache: Path) -> None:
    """One run (this tree's config) with the package at ``src``, checked to be the one imported."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    where = [sys.executable, "-c", "import metamap; print(metamap.__file__)"]
    imported = subprocess.run(where, env=env, check=True, capture_output=True, text=True)
    if not Path(imported.stdout.strip()).is_relative_to(src):
        raise SystemExit(f"{src} is not the metamap imported: {imported.stdout.strip()}")
    config, *rest = RUNS[name]
    code = "import sys; from metamap.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "train", str(ROOT / config), "--out", str(out)]
    cmd += [*rest, "-o", f"data.cache_dir={cache}", "-o", "train.progress=false", "--eval"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)


def compare(a: Path, b: Path) -> dict[str, Any]:
    """What differs between run folders ``a`` and ``b`` (each entry ``True``: identical)."""

    def metrics(run: Path) -> list[dict[str, Any]]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]

    out: dict[str, Any] = {"metrics": metrics(a) == metrics(b)}
    for ckpt in ("last.pt", "best.pt"):
        sa = torch.load(a / "checkpoints" / ckpt, weights_only=True)["learner"]
        sb = torch.load(b / "checkpoints" / ckpt, weights_only=True)["learner"]
        out[ckpt] = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ea = json.loads((a / "eval.json").read_text())["scores"]
    eb = json.loads((b / "eval.json").read_text())["scores"]

    def summary(scores: dict[str, Any]) -> dict[str, Any]:
        """The scores without the per-episode ``values`` (older versions did not write them)."""
        return {
            shots: {k: {f: v for f, v in s.items() if f != "values"} for k, s in by_step.items()}
            for shots, by_step in scores.items()
        }

    out["eval"] = summary(ea) == summary(eb)
    out["scores"] = eb
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=BASE, help="the git revision to compare with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.base],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            runs: dict[str, Any] = {}
            for name in RUNS:
                train(base / "src", name, work / "old" / name, work / "cache")
                train(ROOT / "src", name, work / "new" / name, work / "cache")
                runs[name] = compare(work / "old" / name, work / "new" / name)
                print(name, {k: v for k, v in runs[name].items() if k != "scores"}, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    identical = all(all(v for k, v in r.items() if k != "scores") for r in runs.values())
    result = {
        "benchmark": "bit_identity",
        "command": command_line(),
        "base": args.base,
        **git_state(),
        "machine": cpu_info(),
        "torch": torch.__version__,
        "runs": runs,
        "identical": identical,
        "provenance": provenance("cpu", 1),
    }
    write_result(ROOT / "benchmarks" / "results" / "bit_identity.json", result)
    print("bit-identical" if identical else "DIFFERENT")


if __name__ == "__main__":
    main()
