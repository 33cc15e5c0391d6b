"""The ``metamap`` command line: ``train``, ``eval``, ``plot``, ``demo``, ``configs`` (the
shipped configs), and the feature commands ``extract``, ``fewshot``, ``export`` and ``explain``
(:mod:`metamap.cli_features`); ``metamap --version`` prints the installed version.

Every failure is one line on standard error, and the exit status says what kind it is:

====  ===================================================================================
0     success
1     an internal error (a bug in metamap): the full trace is written to a file it names
2     a mistake in what was given: arguments, config, data, checkpoint, output path
3     training diverged (a non-finite loss); the last good checkpoint is kept
74    the system refused a read or write (a full disk, a file removed while in use, ...)
75    the run folder is in use by another ``metamap train`` (try again when it has finished)
130   interrupted (Ctrl-C); the last checkpoint is kept
====  ===================================================================================

Output paths are checked before any work starts. ``--debug`` (or ``METAMAP_DEBUG=1``) shows
the full traceback instead. The library never imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metamap.cli_features import add_feature_commands, run_feature_command
from metamap.errors import ConfigError, MetamapError, TaskShapeError
from metamap.fileio import atomic_write_text, check_output_dir, check_output_file
from metamap.learners import MetaLearner
from metamap.train import (
    RunConfig,
    RunPaths,
    Trainer,
    build_problem,
    check_run_folder,
    check_time_budget,
    describe,
    lake_one_shot_error,
    learner_from_checkpoint,
    load_checkpoint,
    load_config,
    read_metrics,
)

__all__ = ["EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_IO", "main"]

EXIT_INTERNAL = 1
EXIT_IO = 74
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit status 2) that points at ``--help``."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of a failure (also: METAMAP_DEBUG=1)",
    )
    p = _Parser(
        prog="metamap",
        description="Meta-learning as a mapping from tasks to models.",
        parents=[common],
    )
    p.add_argument("--version", action="version", version=f"metamap {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    over = _Parser(add_help=False, parents=[common])
    over.add_argument(
        "-o",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. -o train.steps=1000 -o learner.inner_lr=0.02",
    )

    t = sub.add_parser("train", parents=[over], help="meta-train from a YAML config")
    t.add_argument(
        "config",
        help="YAML config file, e.g. my.yaml, or the name of a shipped config when no such "
        "file exists, e.g. sinusoid/maml (`metamap configs` lists them)",
    )
    t.add_argument("--out", help="output folder (default: the config's out_dir)")
    t.add_argument(
        "--restart",
        action="store_true",
        help="ignore an existing checkpoint in the output folder and start afresh",
    )
    t.add_argument("--eval", action="store_true", help="evaluate the best checkpoint afterwards")
    t.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="time budget of this call: stop after the step under way once it is spent, with "
        "that step checkpointed; the same command continues the run (default: no budget)",
    )
    t.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine (gloo): each meta-batch's tasks are split "
        "across them, with the one-process answer (default 1); across nodes use torchrun",
    )

    e = sub.add_parser("eval", parents=[over], help="evaluate a checkpoint on fixed tasks")
    e.add_argument("checkpoint", help="e.g. runs/x/checkpoints/best.pt")
    e.add_argument("--out", help="write the results as JSON to this file")
    e.add_argument(
        "--lake",
        nargs="?",
        const="",
        metavar="OMNIGLOT_ROOT",
        help="also score Lake et al.'s 20 within-alphabet one-shot runs (error rate; humans "
        "4.5%%), found under OMNIGLOT_ROOT/one-shot-classification/all_runs (default: the "
        "checkpoint's data.root, else $METAMAP_OMNIGLOT)",
    )

    r = sub.add_parser(
        "recommend",
        parents=[over],
        help="a new user's top movies from a few ratings (a cold-start recommendation run)",
        description="Adapt a cold-start checkpoint (task.family movielens) to the ratings in "
        "--ratings (CSV lines item_id,rating; a header line is allowed), and to the user's "
        "demographics given by --user, and print the movies the user has not rated with the "
        "highest predicted stars.",
    )
    r.add_argument("checkpoint", help="e.g. runs/movielens-melu/checkpoints/best.pt")
    r.add_argument("--ratings", required=True, help="CSV of item_id,rating lines")
    r.add_argument("--top", type=int, default=10, help="how many movies (default 10)")
    r.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the user's gender=F|M, age=YEARS, occupation=NAME (of the dataset's list) or "
        "zip=CODE, one per --user (repeatable; any left out are unknown, as by default)",
    )
    r.add_argument(
        "--data", help="MovieLens folder or zip, if not the run's task.root / $METAMAP_MOVIELENS"
    )
    r.add_argument(
        "--steps",
        type=int,
        help="inner steps of adaptation to the ratings (default: as trained; 0: the "
        "meta-learned model unadapted)",
    )
    r.add_argument("--out", help="also write the recommendations as JSON to this file")

    pl = sub.add_parser(
        "plot", parents=[common], help="adaptation plot and learning curve of a run"
    )
    pl.add_argument("run_dir", help="a run folder written by `metamap train`")
    pl.add_argument(
        "--steps",
        help="inner-step counts to draw (default: 0,1,10 for regression, 0 and the trained "
        "count for recommendation, eval.steps for meta-RL)",
    )

    c = sub.add_parser(
        "configs",
        parents=[common],
        help="list the shipped configs, or print one",
        description="Without NAME: list the configs shipped with metamap (the published "
        "protocols), with a line on each. With NAME: print that config's YAML (redirect it to a "
        "file to start your own), or with --path where it is installed. `metamap train NAME` "
        "trains one.",
    )
    c.add_argument("name", nargs="?", help="a shipped config, e.g. omniglot/protonet-5w1s")
    c.add_argument("--path", action="store_true", help="print the file's path, not its text")

    d = sub.add_parser(
        "demo", parents=[over], help="train sinusoid MAML on the embedded default, evaluate, plot"
    )
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    add_feature_commands(sub, over, common)
    return p


def _print_scores(results: dict[str, Any]) -> None:
    metric = results["metric"].upper()
    print(f"trained: {results['protocol']}")
    ways = results.get("ways")
    kind = f"{ways}-way tasks ({results['queries']} queries per class)" if ways else "tasks"
    print(f"{metric} on {results['tasks']} fixed {kind} (seed {results['seed']}), mean ± 95% CI")
    for shots, by_step in results["scores"].items():
        cells = [
            f"{k} step{'s' if k != '1' else ''}: {v['mean']:.3f} ± {v['ci95']:.3f}"
            for k, v in by_step.items()
        ]
        print(f"  {shots:>8}  " + "   ".join(cells))
        for k, v in by_step.items():
            if v.get("diverged"):
                print(
                    f"  {'':>8}  after {k} step{'s' if k != '1' else ''}: {v['diverged']} of "
                    f"{v['n']} adaptations diverged (NaN or infinite predictions)"
                )
    if any(v.get("diverged") for s in results["scores"].values() for v in s.values()):
        print(
            "A diverged adaptation's errors count an infinite prediction as the rating scale's "
            "bound; a NaN prediction makes them NaN. Fewer inner steps (-o eval.steps=[...]) "
            "or a smaller inner step size in training avoid it."
        )
    md = results.get("meta_dataset")
    if md is not None:
        print(
            f"Meta-Dataset episodes ({md['tasks']}, {md['min_ways']}-{md['max_ways']} ways, "
            f"mean {md['mean_ways']:.1f} ways and {md['mean_support']:.0f} support images): "
            f"{md['mean']:.3f} ± {md['ci95']:.3f}"
        )
        for d in md.get("by_domain") or []:
            score = f"{d['mean']:.3f} ± {d['ci95']:.3f}" if d["tasks"] else "no episodes"
            print(f"  {d['name']} ({d['tasks']} episodes): {score}")


def _train(
    cfg: RunConfig,
    out: str | None,
    restart: bool,
    evaluate: bool = False,
    minutes: float | None = None,
) -> Trainer:
    check_time_budget(minutes)
    out_dir = check_output_dir(cfg.out_dir if out is None else out)
    check_run_folder(cfg, out_dir, resume=not restart)  # before the data is loaded
    if cfg.train.threads is not None:
        import torch

        torch.set_num_threads(cfg.train.threads)
    trainer = Trainer(cfg, out_dir)
    split = cfg.data.split_summary() if cfg.task.images else ""
    if split:  # classes the user's own folder split gives each part
        print(split, file=sys.stderr)
    if evaluate:  # an evaluation that cannot run fails now, not after the training
        build_problem(cfg).check_evaluation(trainer.learner)

    def note(source: Path, step: int) -> None:
        lost = "" if source == trainer.last_path else f" ({trainer.last_path.name} is missing)"
        print(f"resuming from {source} at step {step}{lost}", file=sys.stderr)

    trainer.on_resume = note
    result = trainer.fit(resume=not restart, minutes=minutes)
    metric = trainer.problem.metric
    what = f"validation {metric if metric == 'accuracy' else metric.upper()}"
    best = (
        f"best {what} {result.best_val:.4f} at step {result.best_step}"
        if result.best_step
        else f"no validation yet (every {cfg.train.val_every} steps)"
    )
    cpu = result.train_cpu_seconds  # None: part of the run predates the count
    spent = _duration(result.train_seconds) + ("" if cpu is None else f", {_duration(cpu)} of CPU")
    print(f"trained {result.step} steps into {result.out_dir} ({spent}); {best} [{describe(cfg)}]")
    if result.budget_stopped:
        print(
            f"stopped by the {minutes:g}-minute budget at step {result.step} of "
            f"{cfg.train.steps} (checkpointed); run the same command to continue",
            file=sys.stderr,
        )
    return trainer


def _duration(seconds: float) -> str:
    """``seconds`` for a person: ``12.3 s`` or, from two minutes, ``4.5 min``."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _last_step(paths: RunPaths) -> int:
    """The step of a run's last checkpoint (0 without one): what ``--nproc``'s processes,
    which have ended, reached."""
    return int(load_checkpoint(paths.last)["step"]) if paths.last.is_file() else 0


def _finished(step: int, cfg: RunConfig) -> bool:
    """Whether the run reached ``train.steps`` at ``step`` (``--eval`` waits for that), saying
    so if not."""
    if step < cfg.train.steps:
        print(
            f"not evaluated: the run stopped at step {step} of {cfg.train.steps}; the same "
            "command continues it and evaluates at the end",
            file=sys.stderr,
        )
    return step >= cfg.train.steps


def _train_ranks(
    cfg: RunConfig,
    out: str | None,
    restart: bool,
    nproc: int,
    minutes: float | None = None,
    evaluate: bool = False,
) -> None:
    """``metamap train --nproc N``: N processes of one meta-batch each step (gloo on the CPU,
    NCCL with one GPU each); ``evaluate``: ``--eval``'s evaluation is checked before training."""
    from metamap.train.distributed import backend_for, check_shardable, spawn_ranks

    check_time_budget(minutes)
    check_shardable(cfg, nproc)
    out_dir = check_output_dir(cfg.out_dir if out is None else out)
    check_run_folder(cfg, out_dir, resume=not restart)  # before any process starts
    backend = backend_for(cfg.train.device)
    spawn_ranks(
        nproc,
        _train_rank,
        (cfg, str(out_dir), restart, minutes, evaluate),
        backend,
        cfg.train.collective_timeout_minutes,
    )


def _train_torchrun(
    cfg: RunConfig,
    out: str | None,
    restart: bool,
    world: int,
    minutes: float | None = None,
    evaluate: bool = False,
) -> None:
    """One of the ``WORLD_SIZE`` processes ``torchrun`` started (on one node or several);
    ``evaluate`` (``--eval``): global rank 0 scores the result once every process is done."""
    from metamap.train.distributed import backend_for, check_shardable, process_group

    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))  # this node's processes
    check_shardable(cfg, world, local)
    out_dir = str(cfg.out_dir if out is None else out)
    with process_group(backend_for(cfg.train.device), cfg.train.collective_timeout_minutes):
        _train_rank(cfg, out_dir, restart, minutes, evaluate)
    if evaluate and int(os.environ.get("RANK", "0")) == 0:
        _evaluate_finished(cfg, out_dir)


def _evaluate_finished(cfg: RunConfig, out: str | None) -> None:
    """``--eval`` after several processes trained the run in ``out`` (default: its
    ``out_dir``): its checkpoint is scored if the run reached its last step."""
    paths = RunPaths(Path(cfg.out_dir if out is None else out))
    if _finished(_last_step(paths), cfg):
        _evaluate(paths.result(cfg.eval.checkpoint), [], paths.evaluation)


def _train_rank(
    cfg: RunConfig,
    out: str,
    restart: bool,
    minutes: float | None = None,
    evaluate: bool = False,
) -> None:
    """One process of ``--nproc``: rank 0 trains as ``metamap train`` does (progress, notes,
    checkpoints); the others compute their share quietly (the trainer shows them no progress).
    ``evaluate``: every process checks first that ``--eval``'s evaluation can run."""
    import torch.distributed as dist

    if dist.get_rank() > 0:
        with (
            open(os.devnull, "w") as quiet,
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
        ):
            _train(cfg, out, restart, evaluate, minutes)
        return
    _train(cfg, out, restart, evaluate, minutes)


def _lake(cfg: RunConfig, learner: MetaLearner, root: str) -> dict[str, Any]:
    """Lake et al.'s one-shot runs: 20 tasks of 20 grey classes, resized to the model's input."""
    from metamap.data import omniglot_one_shot_runs

    if not cfg.task.images or cfg.data.channels != 1:
        raise ConfigError(
            "--lake scores Omniglot's grey one-shot runs: it needs an image checkpoint with "
            f"data.channels 1 (this one: task.family {cfg.task.family!r}"
            + (f", data.channels {cfg.data.channels})" if cfg.task.images else ", not images)")
        )
    where = root or cfg.data.root
    runs = omniglot_one_shot_runs(where or None, image_size=cfg.data.image_size)
    ways = len(runs[0].train_images) if runs else 0
    try:
        lake = lake_one_shot_error(learner, runs)
    except TaskShapeError as e:
        raise TaskShapeError(
            f"Lake's one-shot runs are {ways}-way 1-shot tasks, which this checkpoint cannot "
            f"take: {e}"
        ) from e
    print(
        f"Lake et al. one-shot runs ({lake['runs']} × {ways}-way 1-shot): error "
        f"{lake['error']:.3f} ± {lake['ci95']:.3f} (humans 0.045)"
    )
    return lake


def _evaluate(
    ckpt: Path, overrides: Sequence[str], out: Path | None, lake: str | None = None
) -> dict[str, Any]:
    cfg, learner, state = learner_from_checkpoint(ckpt, overrides)
    # Lake's 20 tasks first: a checkpoint that cannot take them fails before the long part.
    lake_result = _lake(cfg, learner, lake) if lake is not None else None
    results = build_problem(cfg).evaluate(learner)
    results["checkpoint"] = str(ckpt)
    results["step"] = int(state["step"])
    results["learner"] = cfg.learner.name
    if lake_result is not None:
        results["lake_one_shot"] = lake_result
    _print_scores(results)
    if out is not None:
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    return results


def _user_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``--user KEY=VALUE`` options as a mapping; a known key given twice, a key not of
    ``USER_KEYS`` or a pair without ``=`` is refused, naming it."""
    from metamap.recommend.product import USER_KEYS

    user: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MetamapError(f"--user {pair!r}: give KEY=VALUE, e.g. --user gender=F")
        if key not in USER_KEYS:
            raise MetamapError(
                f"--user {pair!r}: unknown key {key!r} (value {value!r}); the keys are "
                + ", ".join(USER_KEYS)
            )
        if key in user:
            raise MetamapError(f"--user {key} given twice ({user[key]!r} and {value!r})")
        user[key] = value
    return user


def _recommend(args: argparse.Namespace) -> None:
    from metamap.recommend import Recommender, read_ratings_csv

    out = None if args.out is None else check_output_file(args.out)
    if args.top < 1:
        raise MetamapError(f"--top must be at least 1, got {args.top}")
    if args.steps is not None and args.steps < 0:
        raise MetamapError(f"--steps must be 0 or more, got {args.steps}")
    user = _user_pairs(args.user)
    ratings = read_ratings_csv(args.ratings)  # before the checkpoint: a bad file fails at once
    rec = Recommender.from_checkpoint(args.checkpoint, args.data, args.overrides)
    shown = rec.describe_user(user)  # a bad value fails before the model adapts
    top = rec.recommend(ratings, args.top, user, args.steps)
    unrated = rec.data.num_items - len(ratings)  # the candidates (a movie rated twice is refused)
    who = f" and {shown}" if shown else ""
    print(f"top {len(top)} of {unrated} unrated movies for {len(ratings)} ratings{who}:")
    for i, t in enumerate(top, 1):
        print(f"{i:>3}  {t.item_id:>5}  {t.score:4.2f}  {t.title}")
    if out is not None:
        rows = [{"item_id": t.item_id, "title": t.title, "score": t.score} for t in top]
        atomic_write_text(out, json.dumps(rows, indent=2) + "\n")


def _plot(run_dir: Path, steps: Sequence[int] | None = None) -> list[Path]:
    from metamap.train import build_problem
    from metamap.viz import learning_curve_plot
    from metamap.viz.runs import run_plots

    run = RunPaths(run_dir)
    if not run_dir.exists():
        raise MetamapError(
            f"run folder {str(run_dir)!r} does not exist; give the --out folder of a "
            "`metamap train` run"
        )
    if not run_dir.is_dir() or not (run.best.is_file() or run.last.is_file()):
        raise MetamapError(
            f"{str(run_dir)!r} is not a run folder (it has no checkpoints/best.pt or last.pt); "
            "give the --out folder of a `metamap train` run"
        )
    check_output_dir(run_dir, "run folder")
    records = _readable_metrics(run.metrics)
    cfg, learner, _ = learner_from_checkpoint(run.best if run.best.is_file() else run.last)
    if cfg.eval.checkpoint == "last" and run.best.is_file():  # the result is the last step
        cfg, learner, _ = learner_from_checkpoint(run.last)
    problem = build_problem(cfg)
    paths = run_plots(cfg, learner, problem, run_dir, steps)  # the run's problem draws its own
    if records:  # the metric it validated on: accuracy for classification, MSE for regression
        metric = problem.metric
        out = run_dir / "learning_curve.png"
        paths.append(learning_curve_plot(records, out, cfg.name, metric))
    for p in paths:
        print(f"wrote {p}")
    return paths


def _readable_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics log with a training loss, saying how many lines of a
    damaged log were skipped; refuses a log with lines but no readable record."""
    if not path.is_file():
        return []
    records = read_metrics(path)
    lines = sum(1 for line in path.read_bytes().splitlines() if line.strip())
    usable = [r for r in records if isinstance(r.get("loss"), int | float)]
    if lines and not usable:
        raise MetamapError(
            f"{str(path)!r} holds {lines} lines but no readable training record (it is "
            "damaged); resume the run (metamap train) to rewrite it from the checkpoint"
        )
    if lines > len(usable):
        print(f"note: skipped {lines - len(usable)} unreadable lines of {path}", file=sys.stderr)
    return usable


def _steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise MetamapError(f"--steps must be comma-separated integers, got {text!r}") from None
    if not steps or any(s < 0 for s in steps):
        raise MetamapError(f"--steps must be non-negative integers, got {text!r}")
    return steps


def _version() -> str:
    """The installed distribution's version (the package's own when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("metamap")
    except PackageNotFoundError:
        import metamap

        return f"{metamap.__version__} (not installed)"


def _config_path(text: str) -> Path:
    """The config file ``metamap train`` reads: ``text`` when it names an existing file or
    folder (a folder is refused by the config loader, naming it), else the shipped config of
    that name, else a one-line error suggesting close names."""
    from metamap.shipped_configs import shipped_config

    path = Path(text)
    if not text.strip() or path.exists():
        return path
    try:
        shipped = shipped_config(text)
    except ConfigError as e:
        raise ConfigError(f"config file {text!r} does not exist, and {e}") from None
    print(f"using the shipped config {shipped.name} ({shipped.path})", file=sys.stderr)
    return shipped.path


def _configs(name: str | None, path_only: bool) -> None:
    """``metamap configs [NAME] [--path]``."""
    from metamap.shipped_configs import shipped_config, shipped_configs, shipped_configs_dir

    if name is None:
        if path_only:
            print(shipped_configs_dir())
            return
        every = shipped_configs()
        width = max((len(c.name) for c in every), default=0)
        for c in every:
            print(f"{c.name:<{width}}  {c.description}".rstrip())
        print(
            f"{len(every)} configs in {shipped_configs_dir()}; `metamap configs NAME` prints "
            "one, `metamap train NAME` trains it",
            file=sys.stderr,
        )
        return
    shipped = shipped_config(name)
    if path_only:
        print(shipped.path)
    else:
        sys.stdout.write(shipped.path.read_text(encoding="utf-8"))


def _run(args: argparse.Namespace) -> None:
    if args.command == "train":
        if "WORLD_SIZE" in os.environ and args.nproc != 1:  # a torchrun launch's process
            raise MetamapError(
                f"--nproc {args.nproc} under torchrun (WORLD_SIZE is set): torchrun starts the "
                "processes (its --nproc-per-node); drop --nproc"
            )
        cfg = load_config(_config_path(args.config), args.overrides)
        torchrun = int(os.environ.get("WORLD_SIZE", "1"))
        if torchrun > 1:  # one process of a torchrun launch (its env:// rendezvous)
            _train_torchrun(cfg, args.out, args.restart, torchrun, args.minutes, args.eval)
        elif args.nproc != 1:
            _train_ranks(cfg, args.out, args.restart, args.nproc, args.minutes, args.eval)
            if args.eval:
                _evaluate_finished(cfg, args.out)
        else:
            trainer = _train(cfg, args.out, args.restart, args.eval, args.minutes)
            if args.eval and _finished(trainer.step, cfg):
                _evaluate(trainer.result_path, [], RunPaths(trainer.out_dir).evaluation)
    elif args.command == "eval":
        out = None if args.out is None else check_output_file(args.out)
        _evaluate(Path(args.checkpoint), args.overrides, out, args.lake)
    elif args.command == "plot":
        if not args.run_dir.strip():
            raise MetamapError("the run folder argument is empty; give a `metamap train` --out")
        _plot(Path(args.run_dir), None if args.steps is None else _steps(args.steps))
    elif args.command == "configs":
        _configs(args.name, args.path)
    elif args.command == "recommend":
        _recommend(args)
    elif args.command == "demo":
        from metamap.defaults import default_config_path

        out_dir = check_output_dir(args.out)
        cfg = load_config(default_config_path(), [f"out_dir={out_dir}", *args.overrides])
        trainer = _train(cfg, str(out_dir), restart=False, evaluate=True)
        _evaluate(trainer.result_path, [], RunPaths(trainer.out_dir).evaluation)
        _plot(trainer.out_dir, [0, 1, 10])
    else:
        run_feature_command(args)


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _write_trace() -> Path | None:
    """The current exception's traceback, in a file under ``$METAMAP_CRASH_DIR`` or the
    temporary folder (``None`` if it cannot be written)."""
    folder = os.environ.get("METAMAP_CRASH_DIR") or tempfile.gettempdir()
    name = f"metamap-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    try:
        path = Path(folder) / name
        path.write_text(f"metamap {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    except OSError:
        return None
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``metamap`` command line; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("METAMAP_DEBUG", "") not in ("", "0")
    try:
        _run(args)
    except MetamapError as e:
        if debug:
            traceback.print_exc()
        print(f"metamap: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(
            "metamap: interrupted; the last checkpoint is kept, run again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except OSError as e:  # the system refused: a full disk, a file removed while in use, ...
        if debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"metamap: error: {e.strerror or _one_line(str(e))}{where}", file=sys.stderr)
        return EXIT_IO
    except Exception as e:
        if debug:
            raise
        trace = _write_trace()
        where = f"the full trace is in {trace}" if trace else "rerun with --debug to see it"
        print(
            f"metamap: internal error ({type(e).__name__}: {_one_line(str(e))[:300]}); this is "
            f"a bug in metamap, not a mistake in your input: {where}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
