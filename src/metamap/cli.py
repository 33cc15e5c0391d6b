"""The ``metamap`` command line: ``train``, ``eval``, ``plot``, ``demo``, and the feature
commands ``extract``, ``fewshot`` and ``export`` (:mod:`metamap.cli_features`).

Every user mistake is reported as one line naming the problem, with exit status 2; the library
never imports this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metamap.cli_features import add_feature_commands, run_feature_command
from metamap.errors import ConfigError, MetamapError, TaskShapeError
from metamap.learners import MetaLearner
from metamap.train import (
    RunConfig,
    RunPaths,
    Trainer,
    check_evaluation,
    describe,
    evaluate_run,
    lake_one_shot_error,
    learner_from_checkpoint,
    load_config,
    read_metrics,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="metamap", description="Meta-learning as a mapping from tasks to models."
    )
    sub = p.add_subparsers(dest="command", required=True)

    over = argparse.ArgumentParser(add_help=False)
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
    t.add_argument("config", help="YAML config file, e.g. configs/sinusoid/maml.yaml")
    t.add_argument("--out", help="output folder (default: the config's out_dir)")
    t.add_argument(
        "--restart",
        action="store_true",
        help="ignore an existing checkpoint in the output folder and start afresh",
    )
    t.add_argument("--eval", action="store_true", help="evaluate the best checkpoint afterwards")

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

    pl = sub.add_parser("plot", help="adaptation plot and learning curve of a run")
    pl.add_argument("run_dir", help="a run folder written by `metamap train`")
    pl.add_argument("--steps", default="0,1,10", help="inner-step counts to draw (default 0,1,10)")

    d = sub.add_parser(
        "demo", parents=[over], help="train sinusoid MAML on the embedded default, evaluate, plot"
    )
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    add_feature_commands(sub, over)
    return p


def _print_scores(results: dict[str, Any]) -> None:
    metric = results["metric"].upper()
    print(results["protocol"])
    print(f"{metric} on {results['tasks']} fixed tasks (seed {results['seed']}), mean ± 95% CI")
    for shots, by_step in results["scores"].items():
        cells = [
            f"{k} step{'s' if k != '1' else ''}: {v['mean']:.3f} ± {v['ci95']:.3f}"
            for k, v in by_step.items()
        ]
        print(f"  {shots:>8}  " + "   ".join(cells))
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


def _train(cfg: RunConfig, out: str | None, restart: bool, evaluate: bool = False) -> Trainer:
    if cfg.train.threads is not None:
        import torch

        torch.set_num_threads(cfg.train.threads)
    trainer = Trainer(cfg, out)
    if evaluate:  # an evaluation that cannot run fails now, not after the training
        check_evaluation(cfg, trainer.learner)
    if not restart and trainer.last_path.exists():
        print(f"resuming from {trainer.last_path}", file=sys.stderr)
    result = trainer.fit(resume=not restart)
    what = "validation accuracy" if trainer.higher_is_better else "validation MSE"
    print(
        f"trained {result.step} steps into {result.out_dir}; best {what} "
        f"{result.best_val:.4f} at step {result.best_step} [{describe(cfg)}]"
    )
    return trainer


def _lake(cfg: RunConfig, learner: MetaLearner, root: str) -> dict[str, Any]:
    """Lake et al.'s one-shot runs: 20 tasks of 20 grey classes, resized to the model's input."""
    from metamap.data import omniglot_one_shot_runs

    if cfg.task.family != "episodes" or cfg.data.channels != 1:
        raise ConfigError(
            "--lake scores Omniglot's grey one-shot runs: it needs an image checkpoint with "
            f"data.channels 1 (this one: task.family {cfg.task.family!r}, "
            f"data.channels {cfg.data.channels})"
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
    results = evaluate_run(cfg, learner)
    results["checkpoint"] = str(ckpt)
    results["step"] = int(state["step"])
    results["learner"] = cfg.learner.name
    if lake_result is not None:
        results["lake_one_shot"] = lake_result
    _print_scores(results)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _plot(run_dir: Path, steps: Sequence[int]) -> list[Path]:
    from metamap.learners import GradientLearner
    from metamap.tasks import RegressionTasks
    from metamap.train.build import build_tasks
    from metamap.viz import adaptation_plot, learning_curve_plot

    run = RunPaths(run_dir)
    cfg, learner, _ = learner_from_checkpoint(run.best)
    if cfg.eval.checkpoint == "last":  # the run's result is its last step, not its best
        cfg, learner, _ = learner_from_checkpoint(run.last)
    paths: list[Path] = []
    if cfg.task.family != "episodes" and isinstance(learner, GradientLearner):
        family = build_tasks(cfg, "test", queries=cfg.eval.queries)
        assert isinstance(family, RegressionTasks)
        task = family.fixed_tasks(1, cfg.eval.seed, shots=cfg.eval.shots[0])[0]
        title = f"{cfg.learner.name.upper()} on a {cfg.task.family} task"
        out = run_dir / "adaptation.png"
        paths.append(adaptation_plot(learner, family, task, out, steps, title))
    if run.metrics.exists():
        paths.append(
            learning_curve_plot(read_metrics(run.metrics), run_dir / "learning_curve.png", cfg.name)
        )
    for p in paths:
        print(f"wrote {p}")
    return paths


def _steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise MetamapError(f"--steps must be comma-separated integers, got {text!r}") from None
    if not steps or any(s < 0 for s in steps):
        raise MetamapError(f"--steps must be non-negative integers, got {text!r}")
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            cfg = load_config(args.config, args.overrides)
            trainer = _train(cfg, args.out, args.restart, evaluate=args.eval)
            if args.eval:
                _evaluate(trainer.result_path, [], trainer.out_dir / "eval.json")
        elif args.command == "eval":
            out = Path(args.out) if args.out else None
            _evaluate(Path(args.checkpoint), args.overrides, out, args.lake)
        elif args.command == "plot":
            _plot(Path(args.run_dir), _steps(args.steps))
        elif args.command == "demo":
            from metamap.defaults import default_config_path

            cfg = load_config(default_config_path(), [f"out_dir={args.out}", *args.overrides])
            trainer = _train(cfg, args.out, restart=False, evaluate=True)
            _evaluate(trainer.result_path, [], trainer.out_dir / "eval.json")
            _plot(trainer.out_dir, [0, 1, 10])
        else:
            run_feature_command(args)
    except MetamapError as e:
        print(f"metamap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "metamap: interrupted; the last checkpoint is kept, run again to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
