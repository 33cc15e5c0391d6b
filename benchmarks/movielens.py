"""Cold-start recommendation on MovieLens-100K: every method, every fold × seed, every support size.

Each user with 13-100 ratings is a task (MeLU's protocol, Lee et al. KDD 2019); 10 random query
ratings per user; support sizes 5, 10, 20 and all the other ratings. Users are cut into 5 folds
under each of 3 split seeds: fold f is tested, fold f+1 validates, the other three train, so
every user is a test user once per seed. Every method is fitted on the training users only and
tuned (or early-stopped) on the validation users only:

* baselines (:mod:`metamap.recsys.baselines`): global mean; item mean (damping tuned); item mean
  + user bias (Koren 2010; dampings tuned) — the bar; matrix factorisation by ALS with fold-in of
  the new user (factors and regularisation tuned); a pooled network — MeLU's network trained on
  every training rating as plain regression, then fine-tuned on the support set with the same
  inner steps as MeLU;
* meta-learners: MeLU's network (configs/movielens/melu.yaml) meta-trained with MAML (its inner
  loop adapting the decision layers: MeLU's local update), first-order MAML, Meta-SGD, Reptile.

Scores per test user: MAE, RMSE, nDCG@3, nDCG@10 of the query ratings; mean ± 95% CI over the
test users of all folds and seeds; paired per-user differences against the strongest baseline.

    python benchmarks/movielens.py --workers 2            # the whole grid (2 cores)
    python benchmarks/movielens.py --scenario item_cold   # MeLU's other scenarios
    python benchmarks/make_tables.py                      # regenerate the README tables

MovieLens is read from ../shared/data/ml-100k (or --data); its licence forbids redistribution,
so no rating or derived file is written beside the results, only per-user scores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.core import Task
from metamap.recsys import (
    GlobalMean,
    ItemMean,
    ItemUserBias,
    MatrixFactorization,
    paired_difference,
    tune,
)
from metamap.recsys.baselines import RatingBaseline
from metamap.train import ColdStartProblem, Trainer, load_config, score_users
from metamap.train.build import build_run_learner
from metamap.train.cold_start import support_label
from metamap.train.problems import build_problem

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONFIG = ROOT / "configs" / "movielens" / "melu.yaml"
METRICS = ("mae", "rmse", "ndcg@3", "ndcg@10")
BAR = "item mean + user bias"

BASELINES: dict[str, tuple[Callable[..., RatingBaseline], dict[str, list[Any]]]] = {
    "global mean": (GlobalMean, {}),
    "item mean": (ItemMean, {"damping": [0.0, 2.0, 5.0, 10.0, 25.0]}),
    BAR: (ItemUserBias, {"item_damping": [0.0, 5.0, 10.0, 25.0], "user_damping": [0, 2, 5, 10]}),
    "matrix factorisation (fold-in)": (
        MatrixFactorization,
        {"factors": [5, 10], "reg": [2.0, 5.0, 10.0], "iterations": [10]},
    ),
}
META = {
    "MeLU (MAML)": [],
    "MeLU (first-order MAML)": ["learner.name=fomaml"],
    "MeLU (Meta-SGD)": ["learner.name=metasgd", "learner.inner_steps=1", "learner.inner_lr=0.3"],
    "MeLU (Reptile)": ["learner.name=reptile"],
}
POOLED = "pooled network + fine-tune"
METHODS = [*BASELINES, POOLED, *META]


def _split_overrides(args: argparse.Namespace, fold: int, seed: int) -> list[str]:
    return [
        f"task.root={args.data}",
        f"task.scenario={args.scenario}",
        f"task.fold={fold}",
        f"task.split_seed={seed}",
        "train.progress=false",
        *([f"train.steps={args.steps}"] if args.steps else []),
    ]


def _score(model: Any, problem: ColdStartProblem) -> dict[str, Any]:
    """Per support size: each test user's id and metrics."""
    out: dict[str, Any] = {}
    for support in problem.section.supports:
        tasks, users = problem.fixed_tasks("test", support)
        per_user = score_users(model, tasks, problem.data.scale)
        out[support_label(support)] = {
            "users": [int(problem.data.user_ids[u]) for u in users],
            **{m: [round(s[m], 5) for s in per_user] for m in METRICS},
        }
    return out


def _pooled(problem: ColdStartProblem, cfg: Any, steps: int, seed: int) -> tuple[Any, dict]:
    """MeLU's network trained on every training rating as plain regression (batches of 256
    ratings, Adam 1e-3, the best of every 100 steps by validation MAE), then fine-tuned on each
    support set by the MeLU learner's own inner loop: the meta-learners' network and adaptation,
    without meta-training."""
    learner = build_run_learner(cfg, baseline=problem.baseline())
    model = learner.model
    x, y, _ = problem.training_ratings()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    best, best_state = problem.validate(learner), {k: v.clone() for k, v in learner.state_dict().items()}
    for step in range(1, steps + 1):
        idx = torch.randint(len(x), (256,), generator=g)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            val = problem.validate(learner)
            if val < best:
                best, best_state = val, {k: v.clone() for k, v in learner.state_dict().items()}
    learner.load_state_dict(best_state)
    return learner, {"steps": steps, "best_val_mae": best}


def run_job(job: tuple[argparse.Namespace, int, int, str]) -> dict[str, Any]:
    args, fold, seed, method = job
    torch.set_num_threads(1)
    over = _split_overrides(args, fold, seed)
    cfg = load_config(CONFIG, over + META.get(method, []))
    problem = build_problem(cfg)
    assert isinstance(problem, ColdStartProblem)
    problem.prepare()
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    model: Any
    if method in BASELINES:
        make, grid = BASELINES[method]
        fit = problem.training_ratings()
        val: list[Task] = problem.fixed_tasks("val", None)[0]
        params, val_mae = tune(make, grid, fit, val) if grid else ({}, None)
        model = make(**params).fit(*fit)
        info = {"params": params, "val_mae": val_mae}
    elif method == POOLED:
        model, info = _pooled(problem, cfg, args.pooled_steps, seed)
    else:
        out = args.runs / f"movielens-{args.scenario}-{method}-f{fold}-s{seed}".replace(" ", "_")
        trainer = Trainer(cfg, out)
        result = trainer.fit(resume=True)
        model = trainer.learner
        from metamap.train import learner_from_checkpoint

        _, model, _ = learner_from_checkpoint(trainer.result_path)
        info = {"steps": result.step, "best_step": result.best_step, "best_val_mae": result.best_val}
    train_s = time.perf_counter() - t0
    scores = _score(model, problem)
    print(f"{method} fold {fold} seed {seed}: {train_s:.0f} s", flush=True)
    return {"method": method, "fold": fold, "seed": seed, "seconds": train_s, "info": info,
            "scores": scores}  # fmt: skip


def summarise(jobs: list[dict[str, Any]], supports: list[str]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for name in METHODS:
        mine = sorted((j for j in jobs if j["method"] == name), key=lambda j: (j["seed"], j["fold"]))
        if not mine:
            continue
        cells = {}
        for s in supports:
            keys = [(j["fold"], j["seed"], u) for j in mine for u in j["scores"][s]["users"]]
            values = {m: [v for j in mine for v in j["scores"][s][m]] for m in METRICS}
            cells[s] = {"keys": keys, "values": values}
        methods[name] = {
            "train_seconds": sum(j["seconds"] for j in mine),
            "splits": [{"fold": j["fold"], "seed": j["seed"], **j["info"]} for j in mine],
            "cells": cells,
        }
    paired: dict[str, Any] = {}
    for s in supports:
        bar = methods[BAR]["cells"][s]
        ref = dict(zip(map(tuple, bar["keys"]), bar["values"]["mae"], strict=True))
        paired[s] = {}
        for name, m in methods.items():
            if name == BAR:
                continue
            mine = dict(zip(map(tuple, m["cells"][s]["keys"]), m["cells"][s]["values"]["mae"], strict=True))
            common = [k for k in mine if k in ref]
            d = paired_difference([mine[k] for k in common], [ref[k] for k in common])
            paired[s][name] = {"mean": d.mean, "ci95": d.ci95, "n": d.n}
    return {"methods": methods, "paired_mae_vs_bar": paired}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "ml-100k")
    ap.add_argument("--scenario", default="user_cold",
                    choices=["user_cold", "item_cold", "user_item_cold"])  # fmt: skip
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--steps", type=int, default=None, help="meta-training steps (config's)")
    ap.add_argument("--pooled-steps", type=int, default=1500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    jobs = [(args, f, s, m) for s in args.seeds for f in args.folds for m in args.methods]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        done = pool.map(run_job, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    cfg = load_config(CONFIG, _split_overrides(args, 0, 0))
    supports = [support_label(s) for s in cfg.task.supports]  # type: ignore[attr-defined]
    result = {
        "benchmark": "movielens",
        "dataset": "MovieLens-100K",
        "scenario": args.scenario,
        "folds": args.folds,
        "seeds": args.seeds,
        "queries": cfg.task.queries,  # type: ignore[attr-defined]
        "supports": supports,
        "config": cfg.model_dump(mode="json"),
        "command": command_line(),
        "workers": args.workers,
        "wall_seconds": round(wall, 1),
        **summarise(done, supports),
        "provenance": provenance("cpu", 1),
    }
    write_result(args.results / f"movielens_100k_{args.scenario}.json", result)


if __name__ == "__main__":
    main()
