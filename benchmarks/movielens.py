"""Cold-start recommendation on MovieLens-100K: every method, every fold × seed, every support size.

Each user with 13-100 ratings is a task (MeLU's protocol, Lee et al. KDD 2019); 10 random query
ratings per user; support sizes 5, 10, 20 and all the other ratings. Users are cut into 5 folds
under each of 3 split seeds: fold f is tested, fold f+1 validates, the other three train, so
every user is a test user once per seed. Every method is fitted on the training users only and
tuned (or early-stopped) on the validation users only:

* baselines (:mod:`metamap.recsys.baselines`): global mean; item mean (damping tuned); item mean
  + user bias (Koren 2010; dampings tuned) — the bar; matrix factorisation by ALS with fold-in of
  the new user (factors and regularisation tuned); a pooled network — MeLU's network trained on
  every training rating as plain regression, then fine-tuned on the support set by MeLU's own
  local update (5 steps of α = 0.1 on the decision layers);
* meta-learners: MeLU's network (configs/movielens/melu.yaml) with its local update of the
  decision layers, meta-trained with Meta-SGD (one step, a learned step size per weight: the
  config), MAML (5 steps of α = 0.1: MeLU's own update), first-order MAML and Reptile.

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
import copy
import json
import math
import multiprocessing as mp
import resource
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.core import Task
from metamap.errors import NonFiniteLossError
from metamap.fileio import atomic_write
from metamap.recsys import (
    GlobalMean,
    ItemMean,
    ItemUserBias,
    MatrixFactorization,
    evaluate_users,
    paired_difference,
    tune,
)
from metamap.recsys.baselines import RatingBaseline
from metamap.train import (
    ColdStartProblem,
    Trainer,
    learner_from_checkpoint,
    load_config,
)
from metamap.train.build import build_run_learner
from metamap.train.cold_start import support_label
from metamap.train.problems import build_problem
from metamap.viz import support_curve_plot, user_adaptation_plot

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
MAML5 = ["learner.inner_steps=5", "learner.inner_lr=0.1"]
META = {
    "MeLU (Meta-SGD)": [],  # the config's
    "MeLU (MAML)": ["learner.name=maml", *MAML5],
    "MeLU (first-order MAML)": ["learner.name=fomaml", *MAML5],
    "MeLU (Reptile)": ["learner.name=reptile", *MAML5],
    # configs/movielens/melu-ridge.yaml: a closed-form fold-in on MeLU's features + item factors
    "MeLU (ridge)": [
        "learner={name: ridge, lam: 5.0}",
        "model.item_embedding=false",
        "model.item_factors=10",
        "train.lr=0.0001",
    ],
}
POOLED = "pooled network + fine-tune"
POOLED_LRS = (0.01, 0.03, 0.1)
PLOTTED = "MeLU (Meta-SGD)"  # one test user's ratings before and after its adaptation
METHODS = [*BASELINES, POOLED, *META]


def _split_overrides(args: argparse.Namespace, fold: int, seed: int) -> list[str]:
    return [
        f"task.root={args.data}",
        f"task.variant={args.variant}",
        f"task.scenario={args.scenario}",
        f"task.fold={fold}",
        f"task.split_seed={seed}",
        "train.progress=false",
        *([f"train.steps={args.steps}"] if args.steps else []),
        *args.set,
    ]


def _score(model: Any, problem: ColdStartProblem) -> dict[str, Any]:
    """Per support size: each test user's id and metrics."""
    out: dict[str, Any] = {}
    for support in problem.section.supports:
        tasks, users = problem.fixed_tasks("test", support)
        per_user = evaluate_users(model, tasks, scale=problem.data.scale)
        out[support_label(support)] = {
            "users": [int(problem.data.user_ids[u]) for u in users],
            **{m: [round(s[m], 4) for s in per_user] for m in METRICS},
            "diverged": [int(s["diverged"]) for s in per_user],  # non-finite predictions
        }
    return out


def _val_mae(problem: ColdStartProblem, learner: Any) -> float:
    """Validation MAE, or infinity where a user's fine-tuned predictions diverge (NaN)."""
    val = problem.validate(learner)
    return val if math.isfinite(val) else math.inf


def _pooled(
    problem: ColdStartProblem, cfg: Any, steps: int, seed: int
) -> tuple[Any, dict[str, Any]]:
    """MeLU's network trained on every training rating as plain regression (batches of 256
    ratings, Adam 1e-3, the best of every 100 steps by validation MAE), then fine-tuned on each
    support set by MeLU's local update (5 steps on the decision layers) with the step size,
    of :data:`POOLED_LRS`, best on the validation users (a network not meta-trained for it can
    diverge at MeLU's α = 0.1): the meta-learners' network and adaptation, without
    meta-training."""
    learners = {lr: build_run_learner(cfg.model_copy(update={"learner": cfg.learner.model_copy(
        update={"inner_lr": lr})}), baseline=problem.baseline()) for lr in POOLED_LRS}  # fmt: skip
    learner = learners[POOLED_LRS[-1]]
    model = learner.model
    x, y, _ = problem.training_ratings()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    best, best_state = _val_mae(problem, learner), copy.deepcopy(learner.state_dict())
    for step in range(1, steps + 1):
        idx = torch.randint(len(x), (256,), generator=g)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            val = _val_mae(problem, learner)
            if val < best:
                best, best_state = val, copy.deepcopy(learner.state_dict())
    scores = {}
    for lr, candidate in learners.items():
        candidate.load_state_dict(best_state)
        scores[lr] = _val_mae(problem, candidate)
    lr = min(scores, key=lambda k: scores[k])
    return learners[lr], {"steps": steps, "fine_tune_lr": lr, "val_mae": scores[lr]}


def run_split(job: tuple[argparse.Namespace, int, int, list[str]]) -> list[dict[str, Any]]:
    """Every method on one split, sharing the split's data, its user roles and the baseline a
    network starts from (built once, its time counted as the split's ``setup_seconds``); each
    method's result is kept in ``runs/bench/movielens-jobs/`` once done, so that a grid stopped
    part-way resumes where it was (the networks' runs resume by themselves)."""
    args, fold, seed, methods = job
    torch.set_num_threads(1)
    problem: ColdStartProblem | None = None
    out = []
    for method in methods:
        name = (
            f"{args.variant}-{args.scenario}{args.tag and '-' + args.tag}-{method}-f{fold}-s{seed}"
        )
        name = name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "and")
        done = args.runs / "movielens-jobs" / f"{name}.json"
        if done.is_file():
            out.append({**json.loads(done.read_text()), "resumed": True})
            continue
        setup = setup_cpu = 0.0
        if problem is None:  # the split's problem: the config's task, every method's
            start, cpu_start = time.perf_counter(), time.process_time()
            built = build_problem(load_config(CONFIG, _split_overrides(args, fold, seed)))
            assert isinstance(built, ColdStartProblem)
            built.prepare()
            built.baseline()
            problem, setup = built, time.perf_counter() - start
            setup_cpu = time.process_time() - cpu_start
        result = {
            **_run_job(args, fold, seed, method, problem),
            "setup_seconds": setup,
            "setup_cpu_seconds": setup_cpu,
        }
        text = json.dumps(result)
        atomic_write(done, lambda f, text=text: f.write(text.encode()))
        out.append(result)
    return out


def _run_job(
    args: argparse.Namespace, fold: int, seed: int, method: str, problem: ColdStartProblem
) -> dict[str, Any]:
    start = time.perf_counter()  # the whole method: fitting or training, tuning, scoring
    cpu_start = time.process_time()  # the same, as CPU time: not inflated by other work
    over = _split_overrides(args, fold, seed)
    cfg = load_config(CONFIG, over + META.get(method, [*MAML5, "learner.name=maml"]))
    t0 = time.perf_counter()
    c0: float | None = time.process_time()
    info: dict[str, Any] = {}
    model: Any
    if method in BASELINES:
        make, grid = BASELINES[method]
        fit = problem.training_ratings()
        val: list[Task] = problem.fixed_tasks("val", None)[0]
        if grid:
            params, val_mae, model = tune(make, grid, fit, val)
        else:
            params, val_mae, model = {}, None, make().fit(*fit)
        info = {"params": params, "val_mae": val_mae}
    elif method == POOLED:
        model, info = _pooled(problem, cfg, args.pooled_steps, seed)
    else:
        tagged = args.scenario + (args.tag and "-" + args.tag)
        name = f"movielens-{args.variant}-{tagged}-{method}-f{fold}-s{seed}"
        out = args.runs / name.replace(" ", "_").replace("(", "").replace(")", "")
        learner = build_run_learner(cfg, baseline=problem.baseline())
        # resumes a run stopped part-way, or loads a finished one
        trainer = Trainer(cfg, out, problem=problem, learner=learner)
        try:
            result = trainer.fit(resume=True)
        except NonFiniteLossError as e:  # scored at its best validated step before diverging
            if not trainer.best_path.is_file():
                raise
            _, model, state = learner_from_checkpoint(trainer.best_path)
            info = {"diverged_at": e.step, "best_step": int(state["step"])}
        else:
            _, model, _ = learner_from_checkpoint(trainer.result_path)
            info = {
                "steps": result.step,
                "best_step": result.best_step,
                "best_val_mae": result.best_val,
            }
            t0 = time.perf_counter() - result.train_seconds  # the trainer's clock: over resumes
            cpu = result.train_cpu_seconds  # None: resumed from a checkpoint that did not count
            c0 = None if cpu is None else time.process_time() - cpu
    train_s = time.perf_counter() - t0
    train_cpu = None if c0 is None else time.process_time() - c0
    scores = _score(model, problem)
    if method == PLOTTED and (fold, seed) == (args.folds[0], args.seeds[0]):
        tasks, users = problem.fixed_tasks("test", None)
        uid = int(problem.data.user_ids[users[0]])
        title = f"{method}: MovieLens user {uid} (fold {fold}, seed {seed})"
        tag = args.tag and "_" + args.tag
        out = args.plots / f"movielens_{args.variant}_{args.scenario}{tag}_user.png"
        user_adaptation_plot(model, tasks[0], out, [0, model.inner_steps], title=title)
    print(f"{method} fold {fold} seed {seed}: {train_s:.0f} s", flush=True)
    job_s, job_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"method": method, "fold": fold, "seed": seed, "seconds": train_s, "info": info,
            "job_seconds": job_s, "cpu_seconds": train_cpu, "job_cpu_seconds": job_cpu,
            "scores": scores}  # fmt: skip


def _total(seconds: Iterable[float | None]) -> float | None:
    """The sum of ``seconds``, rounded to 0.1 s; ``None`` if any is ``None`` (not counted)."""
    values = list(seconds)
    known = [v for v in values if v is not None]
    return round(sum(known), 1) if len(known) == len(values) else None


def _mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean ± 95% CI; ``None`` for both where no test user has that many ratings."""
    if not values:
        return {"mean": None, "ci95": None, "n": 0}
    t = torch.tensor(values, dtype=torch.float64)
    sd = float(t.std()) if len(t) > 1 else 0.0
    return {"mean": float(t.mean()), "ci95": 1.96 * sd / len(t) ** 0.5, "n": len(t)}


def summarise(jobs: list[dict[str, Any]], supports: list[str]) -> tuple[dict, dict]:
    """The summary (mean ± CI per method, support size and metric; paired MAE differences
    against the bar) and the per-user scores behind it, aligned with ``keys``."""
    keys: dict[str, list[list[int]]] = {}
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    methods: dict[str, Any] = {}
    for name in METHODS:
        mine = [j for j in jobs if j["method"] == name]
        mine.sort(key=lambda j: (j["seed"], j["fold"]))
        if not mine:
            continue
        values[name] = {}
        for s in supports:
            k = [[j["fold"], j["seed"], u] for j in mine for u in j["scores"][s]["users"]]
            if keys.setdefault(s, k) != k:
                raise RuntimeError(f"{name} was scored on other users than the others at {s}")
            values[name][s] = {m: [v for j in mine for v in j["scores"][s][m]] for m in METRICS}
        methods[name] = {
            "train_seconds": round(sum(j["seconds"] for j in mine), 1),
            "job_seconds": round(sum(j["job_seconds"] for j in mine), 1),
            # CPU time of the same (None where a job predates the count)
            "train_cpu_seconds": _total(j.get("cpu_seconds") for j in mine),
            "job_cpu_seconds": _total(j.get("job_cpu_seconds") for j in mine),
            "splits": [{"fold": j["fold"], "seed": j["seed"], **j["info"]} for j in mine],
            "cells": {s: {m: _mean_ci(values[name][s][m]) for m in METRICS} for s in supports},
            "diverged_users": {  # users whose test-time adaptation gave non-finite predictions
                s: sum(sum(j["scores"][s].get("diverged", [])) for j in mine) for s in supports
            },
        }

    def paired(reference: Callable[[str], str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in supports:
            ref = reference(s)
            out[s] = {"reference": ref}
            for name in methods:
                if name != ref and values[name][s]["mae"]:
                    d = paired_difference(values[name][s]["mae"], values[ref][s]["mae"])
                    out[s][name] = {"mean": d.mean, "ci95": d.ci95, "n": d.n}
        return out

    def strongest(s: str) -> str:  # the baseline with the lowest mean MAE at this support size
        names = [n for n in methods if n in BASELINES or n == POOLED]
        return min(names, key=lambda n: methods[n]["cells"][s]["mae"]["mean"] or math.inf)

    summary = {
        "methods": methods,
        "paired_mae_vs_bar": paired(lambda s: BAR),
        "paired_mae_vs_strongest_baseline": paired(strongest),
    }
    return summary, {"keys": keys, "values": values}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "ml-100k")
    ap.add_argument("--scenario", default="user_cold",
                    choices=["user_cold", "item_cold", "user_item_cold"])  # fmt: skip
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--steps", type=int, default=None, help="meta-training steps (config's)")
    ap.add_argument("--pooled-steps", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--plots", type=Path, default=ROOT / "docs" / "results" / "movielens")
    ap.add_argument("--variant", default="100k", choices=["100k", "1m"])
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every method, e.g. task.other_users=true (needs --tag)",
    )
    ap.add_argument("--tag", default="", help="suffix of the result files' names")
    args = ap.parse_args()
    if args.set and not args.tag:
        ap.error("--set changes the protocol: name its results with --tag")
    if BAR not in args.methods:
        ap.error(f"--methods must include {BAR!r}: every method is compared with it, user by user")
    # The code that runs is the checkout as it is now: record it before, not after, the grid.
    where = provenance("cpu", 1)
    jobs = [(args, f, s, list(args.methods)) for s in args.seeds for f in args.folds]
    t0 = time.perf_counter()
    before = _cpu_seconds()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        done = [j for split in pool.map(run_split, jobs, chunksize=1) for j in split]
    wall = time.perf_counter() - t0
    processes = _cpu_seconds() - before  # the pool's workers are reaped by now
    cfg = load_config(CONFIG, _split_overrides(args, 0, 0))
    supports = [support_label(s) for s in cfg.task.supports]  # type: ignore[attr-defined]
    result = {
        "benchmark": "movielens",
        "dataset": f"MovieLens-{args.variant.upper()}",
        "scenario": args.scenario,
        "folds": args.folds,
        "seeds": args.seeds,
        "queries": cfg.task.queries,  # type: ignore[attr-defined]
        "supports": supports,
        "config": cfg.model_dump(mode="json"),
        "command": command_line(),
        "workers": args.workers,
        "wall_seconds": round(wall, 1),
        "jobs": len(done),
        "jobs_resumed": sum(bool(j.get("resumed")) for j in done),
        # every split's shared set-up and every method's job on its one thread: the CPU time
        "cpu_seconds": round(sum(j["job_seconds"] + j.get("setup_seconds", 0.0) for j in done), 1),
        # what the operating system counted: this process and its workers, user + system time,
        # start-up and imports included (meaningful when no job was resumed)
        "process_cpu_seconds": round(processes, 1),
        # the jobs' own CPU time (each job's process, start to end; None where a job predates
        # the count): unlike the clocks above, not inflated when other work shares the machine
        "job_cpu_seconds": _total(
            None if (c := j.get("job_cpu_seconds")) is None else c + j.get("setup_cpu_seconds", 0.0)
            for j in done
        ),
    }
    summary, per_user = summarise(done, supports)
    stem = f"movielens_{args.variant}_{args.scenario}{args.tag and '_' + args.tag}"
    result |= {**summary, "per_user_file": f"{stem}_users.json", "provenance": where}
    # The per-user scores (MAE, RMSE, nDCG@3, nDCG@10 of each test user of every fold and seed,
    # keyed [fold, seed, user id]) in a compact file beside the summary, to recompute any CI.
    text = json.dumps({**per_user, "provenance": result["provenance"]}, separators=(",", ":"))
    atomic_write(args.results / f"{stem}_users.json", lambda f: f.write(text.encode()))
    write_result(args.results / f"{stem}.json", result)
    support_curve_plot(result, args.plots / f"{stem}.png")


if __name__ == "__main__":
    main()
