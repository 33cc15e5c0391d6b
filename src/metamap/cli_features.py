"""The feature commands of the ``metamap`` CLI: ``extract``, ``fewshot``, ``export``, ``explain``.

Part of the command line (the library never imports it); each handler raises
:class:`~metamap.errors.MetamapError` for user mistakes, which :func:`metamap.cli.main` prints as
one line.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from metamap.errors import ConfigError, MetamapError
from metamap.fileio import atomic_write, atomic_write_text, check_output_dir, check_output_file

__all__ = ["add_feature_commands", "run_feature_command"]


def _positive(text: str) -> int:
    """An argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _preprocess_option(text: str) -> tuple[str, Any]:
    """An argparse type: ``KEY=VALUE`` overriding a field of the model's preprocessing (the value
    parsed as YAML: ``invert=false``, ``mean=[0.5]``)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. invert=false), got {text!r}")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not valid YAML") from None


_SKIP_HELP = (
    "leave out files that are not images (Thumbs.db, notes.txt) instead of refusing the folder "
    "(hidden files are always left out)"
)


def _extractor_options(p: argparse.ArgumentParser, calibrate_help: str) -> None:
    """The options every command that embeds images has: preprocessing and BatchNorm."""
    p.add_argument(
        "--preprocess",
        action="append",
        type=_preprocess_option,
        default=[],
        metavar="KEY=VALUE",
        help="override the model's preprocessing explicitly (fields: channels, image_size, "
        "resample, invert, mean, std), e.g. --preprocess invert=false",
    )
    p.add_argument(
        "--calibrate", nargs="?", const="", default=None, metavar="DIR", help=calibrate_help
    )
    p.add_argument(
        "--transductive",
        action="store_true",
        help="transductive-BatchNorm checkpoints: normalise each batch with its own statistics "
        "(features then depend on the batch) instead of calibrating",
    )
    p.add_argument("--skip-non-images", action="store_true", help=_SKIP_HELP)


def _load_extractor(args: argparse.Namespace, notes: list[str]) -> Any:
    """The checkpoint's extractor with ``--preprocess`` overrides; ``notes`` gets what it
    applies (printed once the command has succeeded: a failure stays one line)."""
    from metamap.features import FeatureExtractor

    if args.transductive and args.calibrate is not None:
        raise MetamapError(
            "--calibrate and --transductive contradict each other: --calibrate fixes BatchNorm "
            "statistics so that features never depend on the batch, --transductive normalises "
            "each batch with its own statistics; give one of them"
        )
    changes = dict(args.preprocess)
    ext = FeatureExtractor.from_checkpoint(
        args.checkpoint, preprocessing=changes, transductive=args.transductive
    )
    what = "overridden: " if changes else ""
    notes.append(f"preprocessing ({what}{ext.spec.preprocessing()})")
    if ext.batch_dependent and args.transductive:
        notes.append(
            "transductive BatchNorm is on: each batch is normalised with its own statistics, so "
            "features depend on the batch"
        )
    return ext


def _calibrated(
    ext: Any, args: argparse.Namespace, default: Any, what: str, notes: list[str]
) -> Any:
    """``ext`` calibrated on ``--calibrate DIR`` or, when it needs it, on ``default``."""
    from metamap.features import load_image_files

    asked = args.calibrate is not None
    if args.transductive or (not ext.batch_dependent and not asked):
        return ext
    if args.calibrate:
        images = load_image_files(args.calibrate, ext.spec, skip_non_images=args.skip_non_images)
        what = f"the {len(images.files)} images of {args.calibrate}"
    else:
        images = default
    notes.append(f"BatchNorm statistics calibrated on {what}")
    return ext.calibrate(images, getattr(args, "batch_size", None) or 256)


def add_feature_commands(
    sub: Any, overrides: argparse.ArgumentParser, common: argparse.ArgumentParser
) -> None:
    """Register ``extract``, ``fewshot``, ``export`` and ``explain`` on the CLI's sub-parsers
    (``overrides``: the parent parser of the ``-o KEY=VALUE`` option, which includes
    ``common``'s options, e.g. ``--debug``)."""
    x = sub.add_parser("extract", parents=[common], help="embed images with a checkpoint's encoder")
    x.add_argument("checkpoint", help="a metamap checkpoint, e.g. runs/x/checkpoints/best.pt")
    x.add_argument("data", help="an image, a folder of images, or a folder of class folders")
    x.add_argument("--out", required=True, help="output file: .npz (NumPy) or .parquet")
    x.add_argument(
        "--batch-size", type=_positive, default=None, help="images per forward (default: automatic)"
    )
    _extractor_options(
        x,
        "fix BatchNorm statistics on the images of DIR (default for a transductive-BatchNorm "
        "checkpoint: on DATA), so that an image's features never depend on its batch",
    )

    f = sub.add_parser(
        "fewshot", parents=[common], help="classify new images from a few labelled examples"
    )
    f.add_argument("checkpoint")
    f.add_argument("--support", required=True, help="folder with one sub-folder per new class")
    f.add_argument(
        "--query",
        required=True,
        help="folder of images to classify, or of class folders (then the accuracy is printed, "
        "over the queries of support classes; the others are named)",
    )
    f.add_argument("--head", default="prototype", help="prototype, ridge, logistic or finetune")
    f.add_argument(
        "--out", default="predictions.csv", help="CSV of predictions (default: %(default)s)"
    )
    _extractor_options(
        f,
        "fix BatchNorm statistics on the images of DIR (default for a transductive-BatchNorm "
        "checkpoint: on the support set), so that a prediction never depends on the other "
        "queries",
    )

    e = sub.add_parser(
        "export", parents=[common], help="export the encoder to TorchScript, torch.export and ONNX"
    )
    e.add_argument("checkpoint")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument(
        "--format",
        default="torchscript,export,onnx",
        help="comma-separated: torchscript, export, onnx (default: all)",
    )
    e.add_argument(
        "--calibrate",
        metavar="DIR",
        default=None,
        help="transductive-BatchNorm checkpoints: fix BatchNorm statistics on the images of DIR "
        "(an export's features never depend on the batch)",
    )
    e.add_argument(
        "--preprocess",
        action="append",
        type=_preprocess_option,
        default=[],
        metavar="KEY=VALUE",
        help="override the model's preprocessing explicitly (recorded in features.json)",
    )
    e.add_argument("--skip-non-images", action="store_true", help=_SKIP_HELP)

    x = sub.add_parser(
        "explain",
        parents=[overrides],
        help="interpretability plots: embeddings, adaptation, per-task losses",
    )
    x.add_argument("checkpoint", help="a checkpoint of any run (last.pt, best.pt)")
    x.add_argument("--out", required=True, help="output folder for the PNGs and explain.json")
    x.add_argument(
        "--tasks",
        type=_positive,
        default=None,
        help="fixed test tasks (default 200; environments: eval.tasks; cold-start "
        "recommendation explains every test user)",
    )
    x.add_argument(
        "--steps",
        type=_positive,
        default=None,
        help="inner (adaptation) steps to profile (default 10; environments and users: the "
        "run's eval.steps)",
    )
    x.add_argument(
        "--data",
        help="a folder of class folders to draw episodes from (default: the run's test split)",
    )
    x.add_argument("--skip-non-images", action="store_true", help=_SKIP_HELP)


def _note(loaded: Any, spec: Any, what: str) -> None:
    if loaded.converted:
        print(
            f"note: {loaded.converted} of {len(loaded.files)} {what} images were converted to "
            f"{spec} (another size or colour mode)",
            file=sys.stderr,
        )


def _extract(args: argparse.Namespace) -> None:
    from metamap.features import load_image_files

    out = check_output_file(args.out, suffixes=(".npz", ".parquet"))
    notes: list[str] = []
    ext = _load_extractor(args, notes)
    loaded = load_image_files(args.data, ext.spec, skip_non_images=args.skip_non_images)
    _note(loaded, ext.spec, "input")
    ext = _calibrated(ext, args, loaded, f"the {len(loaded.files)} input images", notes)
    z = ext.embed(loaded, args.batch_size, progress=True).numpy()
    names = [loaded.class_names[i] for i in loaded.labels] if loaded.labels is not None else None
    if out.suffix.lower() == ".npz":
        labels = loaded.labels if loaded.labels is not None else np.full(len(z), -1)
        atomic_write(
            out,
            lambda f: np.savez(
                f,
                features=z,
                labels=labels,
                class_names=np.array(loaded.class_names, dtype=str),
                files=np.array(loaded.files, dtype=str),
            ),
        )
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MetamapError(
                "Parquet output needs pyarrow: pip install 'metamap[features]', or use .npz"
            ) from None
        cols: dict[str, Any] = {"file": loaded.files, "label": names}
        cols.update({f"f{j}": z[:, j] for j in range(z.shape[1])})
        table = pa.table(cols)
        atomic_write(out, lambda f: pq.write_table(table, f))
    print(f"wrote {len(z)} × {z.shape[1]} features to {out} [{ext}]")
    for n in notes:
        print(n)


def _fewshot(args: argparse.Namespace) -> None:
    from metamap.features import HEADS, FewShotClassifier, load_image_files

    if args.head not in HEADS:
        raise MetamapError(f"--head must be one of {', '.join(HEADS)}, got {args.head!r}")
    out = check_output_file(args.out)
    notes: list[str] = []
    ext = _load_extractor(args, notes)
    skip = args.skip_non_images
    support = load_image_files(args.support, ext.spec, labelled=True, skip_non_images=skip)
    query = load_image_files(args.query, ext.spec, skip_non_images=skip)
    _note(support, ext.spec, "support")
    _note(query, ext.spec, "query")
    ext = _calibrated(ext, args, support, f"the {len(support.files)} support images", notes)
    clf = FewShotClassifier(ext, args.head).fit(support)
    proba = clf.predict_proba(query)
    pred = clf.classes_[proba.argmax(1)]
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["file", "prediction", "probability", *[f"p_{c}" for c in clf.classes_]])
    for i, file in enumerate(query.files):
        w.writerow([file, pred[i], f"{proba[i].max():.4f}", *[f"{p:.4f}" for p in proba[i]]])
    atomic_write_text(out, table.getvalue())
    width = max(len(Path(f).name) for f in query.files)
    for i, file in enumerate(query.files):
        print(f"{Path(file).name:<{width}}  {pred[i]}  ({proba[i].max():.3f})")
    counts = ", ".join(
        f"{c}: {int(np.sum(support.labels == k))}" for k, c in enumerate(support.class_names)
    )
    print(f"{len(pred)} images, {len(clf.classes_)} classes ({counts}), head {args.head} → {out}")
    for n in notes:
        print(n)
    if query.labels is not None:  # a labelled query folder: report accuracy too
        _query_accuracy(pred, np.array(query.class_names)[query.labels], list(clf.classes_))


def _query_accuracy(pred: Any, truth: Any, support: list[str]) -> None:
    """Print the accuracy of predictions ``pred`` against the class folders ``truth`` of the
    queries, over the queries of support classes only: a query of a class the support set does
    not have can never be predicted right, so it is named and left out, not counted wrong."""
    known = np.isin(truth, support)
    unknown = sorted(set(truth[~known].tolist()))
    if known.any():
        right = float(np.mean(pred[known] == truth[known]))
        print(f"accuracy {right:.4f} on {int(known.sum())} labelled queries of support classes")
    if unknown:
        counts = ", ".join(f"{c} ({int(np.sum(truth == c))})" for c in unknown)
        if known.any():
            what = (
                f"{int((~known).sum())} queries in class folders the support set does not have "
                f"— {counts} — are left out of the accuracy"
            )
        else:
            what = f"no accuracy: none of the query class folders — {counts} — is a support class"
        print(
            f"note: {what}; a few-shot classifier only predicts the support classes "
            f"({', '.join(support)}): name the query folders as the support's, or add those "
            "classes to the support set"
        )


def _export(args: argparse.Namespace) -> None:
    from metamap.features import FeatureExtractor, load_image_files
    from metamap.features.export import FORMATS, export_extractor

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise MetamapError(f"--format takes {', '.join(FORMATS)}; got {args.format!r}")
    out = check_output_dir(args.out)
    ext = FeatureExtractor.from_checkpoint(args.checkpoint, preprocessing=dict(args.preprocess))
    if args.calibrate:
        images = load_image_files(args.calibrate, ext.spec, skip_non_images=args.skip_non_images)
        ext = ext.calibrate(images)
    elif ext.batch_dependent:
        raise MetamapError(
            "this checkpoint has transductive BatchNorm (no running statistics), so an exported "
            "model's features would depend on the batch: give --calibrate DIR (unlabelled images "
            "like those it will embed)"
        )
    for r in export_extractor(ext, out, formats):
        print(f"{r.format:<12} {r.path}  max |Δ| vs eager {r.max_abs_error:.2e}")
    print(f"preprocessing recorded in {out / 'features.json'}: {ext.spec.preprocessing()}")
    if args.calibrate:
        print(
            f"BatchNorm statistics calibrated on the {len(images.files)} images of {args.calibrate}"
        )


def _explain_tasks(args: argparse.Namespace, cfg: Any, count: int) -> tuple[Any, list[str] | None]:
    """The ``count`` fixed tasks to explain on, and the class names of the first one (if
    known)."""
    from metamap.data import ImageClassDataset
    from metamap.features import input_spec, load_image_files
    from metamap.tasks import EpisodeSampler
    from metamap.train import apply_overrides, build_tasks, parse_config

    e = cfg.eval
    shots = e.shots[0]
    if args.data is None:
        dist = build_tasks(cfg, "test", queries=e.queries, ways=e.ways, shots=shots)
    else:
        if not cfg.task.images:
            raise MetamapError("--data is for image classifiers; this checkpoint is a regression")
        loaded = load_image_files(
            args.data, input_spec(cfg), labelled=True, skip_non_images=args.skip_non_images
        )
        assert loaded.labels is not None
        smallest = int(np.bincount(loaded.labels).min())
        if smallest <= shots:
            raise MetamapError(
                f"every class of --data needs more than {shots} images (shots + at least one "
                f"query); the smallest has {smallest}"
            )
        ways = min(e.ways or cfg.task.episodes().ways, len(loaded.class_names))
        try:  # the check `eval` makes: a fixed-size head takes only its own number of ways
            parse_config(apply_overrides(cfg.model_dump(mode="json"), [f"eval.ways={ways}"]))
        except ConfigError as err:
            raise MetamapError(
                f"--data has {len(loaded.class_names)} classes, so its episodes are {ways}-way: "
                f"{err}"
            ) from None
        data = ImageClassDataset(loaded.images, loaded.labels, loaded.class_names)
        spec = input_spec(cfg)  # normalised as the run's own episodes are
        norm = None if spec.mean is None else (spec.mean, spec.std or ())
        dist = EpisodeSampler(data, ways, shots, min(e.queries, smallest - shots), normalize=norm)
    names = dist.fixed_task_class_names(e.seed, shots)
    return dist.fixed_tasks(count, e.seed, shots=shots), names


def _unnormalised(task: Any, spec: Any) -> Any:
    """``task`` with its images as pixels in [0, 1] again: a run's episodes are normalised with
    its ``mean``/``std`` (``spec``), which a feature extractor applies itself."""
    if spec.mean is None:
        return task
    import torch

    from metamap.core.task import Task

    c = spec.channels
    mean = torch.tensor(spec.mean, dtype=task.support_x.dtype).expand(c).reshape(c, 1, 1)
    std = torch.tensor(spec.std, dtype=task.support_x.dtype).expand(c).reshape(c, 1, 1)

    def pixels(x: Any) -> Any:
        return (x * std.to(x.device) + mean.to(x.device)).clamp(0.0, 1.0)

    return Task(pixels(task.support_x), task.support_y, pixels(task.query_x), task.query_y)


def _explain(args: argparse.Namespace) -> None:
    import json

    from metamap.features import FeatureExtractor, encoder_of, input_spec
    from metamap.features.explain import (
        adaptation_gains,
        adaptation_profile,
        per_task_scores,
        project_episode,
    )
    from metamap.train import learner_from_checkpoint, parse_config
    from metamap.train.config import apply_overrides
    from metamap.viz.explain import adaptation_profile_plot, embedding_plot, task_scores_plot

    if args.tasks is not None and args.tasks < 2:
        raise MetamapError(f"--tasks must be at least 2 (a spread needs two), got {args.tasks}")
    out = check_output_dir(args.out)
    cfg, learner, state = learner_from_checkpoint(Path(args.checkpoint))
    if args.overrides:
        cfg = parse_config(apply_overrides(cfg.model_dump(mode="json"), args.overrides))
    title = f"{cfg.learner.name} ({cfg.name}, step {int(state['step'])})"
    if not cfg.task.tensor_tasks:  # users, environments: what their evaluation shows
        _explain_evaluation(args, cfg, learner, title, out)
        return
    steps = 10 if args.steps is None else args.steps
    tasks, names = _explain_tasks(args, cfg, 200 if args.tasks is None else args.tasks)
    losses, metrics = per_task_scores(learner, tasks)
    metric = "mse" if learner.loss_name == "mse" else "accuracy"
    written = [task_scores_plot(losses, metrics, metric, out / "task_scores.png", title)]
    report: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "tasks": len(tasks),
        "per_task": {"loss": losses.tolist(), metric: metrics.tolist()},
    }
    if learner.inner_steps:  # an adaptation curve needs inner steps
        prof = adaptation_profile(learner, tasks, range(steps + 1))
        written.append(adaptation_profile_plot(prof, out / "adaptation.png", title))
        report["adaptation"] = {
            "steps": prof.steps,
            metric: [[s.mean, s.ci95] for s in prof.metric],
            "loss": [[s.mean, s.ci95] for s in prof.loss],
            "delta_norms": prof.delta_norms,
        }
        by_step = {str(k): m.to_dict() for k, m in zip(prof.steps, prof.metric, strict=True)}
        gains = adaptation_gains({"tasks": by_step}, higher_is_better=metric == "accuracy")
        report["adaptation_gains"] = gains.get("tasks")
    if cfg.task.images:
        spec = input_spec(cfg)
        ext = FeatureExtractor(  # one episode, as it is evaluated
            encoder_of(learner),
            spec,
            batch_norm=cfg.model.batch_norm_policy(),
            transductive=True,
        )
        proj = project_episode(ext, _unnormalised(tasks[0], spec))
        written.append(embedding_plot(proj, out / "embedding.png", names, f"{title}: one episode"))
        report["embedding_explained_variance"] = list(proj.explained)
    atomic_write_text(out / "explain.json", json.dumps(report, indent=1) + "\n")
    for p in written:
        print(f"wrote {p}")
    worst = metrics.min() if metric == "accuracy" else metrics.max()
    print(f"per-task {metric}: mean {metrics.mean():.4f}, worst {worst:.4f} ({len(tasks)} tasks)")
    gain = report.get("adaptation_gains")
    if gain is not None:
        print(
            f"after {gain['steps']} steps against 0: better on {gain['improved']} of "
            f"{gain['tasks']} tasks, worse on {gain['worse']}"
        )


def _explain_evaluation(
    args: argparse.Namespace, cfg: Any, learner: Any, title: str, out: Path
) -> None:
    """``explain`` for tasks that are not tensors of one shape (users, environments): the
    problem's own evaluation after 0 to ``--steps`` adaptation steps, drawn as adaptation
    curves (``adaptation.png``) and each test task before against after adapting
    (``task_scores.png``), with every task's score in ``explain.json``."""
    import json

    from metamap.features.explain import adaptation_gains
    from metamap.train import apply_overrides, build_problem, parse_config
    from metamap.viz.explain import per_task_plot, score_curves_plot
    from metamap.viz.plots import METRIC_NAMES

    if args.data is not None:
        raise MetamapError(
            f"--data is for image classifiers; this checkpoint's tasks are {cfg.task.describe()}"
        )
    if args.tasks is not None:
        cfg = parse_config(
            apply_overrides(cfg.model_dump(mode="json"), [f"eval.tasks={args.tasks}"])
        )
    problem = build_problem(cfg)
    steps = None if args.steps is None else range(args.steps + 1)
    results = problem.evaluate(learner, steps)
    scores = results["scores"]
    metric = METRIC_NAMES.get(results["metric"], results["metric"])
    gains = adaptation_gains(scores, problem.higher_is_better)
    what = f"{title}: the fixed test tasks"
    written = [
        per_task_plot(scores, metric, problem.higher_is_better, out / "task_scores.png", what)
    ]
    if any(len(by_step) > 1 for by_step in scores.values()):  # a curve needs two points
        written.insert(0, score_curves_plot(scores, metric, out / "adaptation.png", what))
    report = {
        "checkpoint": args.checkpoint,
        "tasks": results["tasks"],
        "metric": results["metric"],
        "higher_is_better": problem.higher_is_better,
        "adaptation_gains": gains,
        "evaluation": results,
    }
    atomic_write_text(out / "explain.json", json.dumps(report, indent=1) + "\n")
    for p in written:
        print(f"wrote {p}")
    if args.tasks is not None and results["tasks"] != args.tasks:
        print(
            f"note: --tasks {args.tasks} does not apply here: this evaluation scores all "
            f"its {results['tasks']} fixed test tasks",
            file=sys.stderr,
        )
    for label, by_step in scores.items():
        counts = sorted(by_step, key=int)
        first, last = by_step[counts[0]], by_step[counts[-1]]
        line = f"{label}: {metric} {first['mean']:.4f} ± {first['ci95']:.4f}"
        if len(counts) > 1:
            line += (
                f" after {counts[0]} steps, {last['mean']:.4f} ± {last['ci95']:.4f} "
                f"after {counts[-1]}"
            )
        if label in gains:
            g = gains[label]
            line += f"; better on {g['improved']} of {g['tasks']} tasks, worse on {g['worse']}"
        print(line)
    if not gains:
        print("no adaptation steps to compare: this learner maps a task in one closed form")


def run_feature_command(args: argparse.Namespace) -> bool:
    """Run ``args.command`` if it is a feature command; returns whether it was one."""
    handlers = {"extract": _extract, "fewshot": _fewshot, "export": _export, "explain": _explain}
    handler = handlers.get(args.command)
    if handler is None:
        return False
    handler(args)
    return True
