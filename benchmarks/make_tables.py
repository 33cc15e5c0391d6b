"""Regenerate the results tables of the documentation from benchmarks/results/*.json.

Each table sits between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers in the page
:data:`PAGES` names for it: the full tables in ``docs/results/*.md``, one headline table (the best
Omniglot rows against the papers) in README.md. Nothing in a table is typed by hand, and a second
run changes nothing.

A figure that prose states is generated too: ``<!-- fig FILE:PATH:FORMAT -->98.90 ± 0.14<!-- /fig
-->`` is refilled from benchmarks/results/FILE.json (see :func:`figure`), and the results pages
may state no measured figure outside a table or such a marker (:func:`hand_typed`).

    python benchmarks/make_tables.py
"""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ORDER = ["maml", "fomaml", "anil", "metasgd", "reptile"]
NAMES = {
    "maml": "MAML",
    "fomaml": "FOMAML",
    "anil": "ANIL",
    "metasgd": "Meta-SGD",
    "reptile": "Reptile",
}
PAPER_MAML_5SHOT = {"1": 0.67, "5": 0.38, "10": 0.35}


def shell(command: str) -> str:
    """A recorded command as a shell takes it: older results joined ``sys.argv`` with spaces,
    leaving e.g. ``train.milestones=[5500]`` unquoted."""
    return shlex.join(shlex.split(command))


class NoResults(Exception):
    """A table's results are not written yet; the message is the line the page shows instead."""

    def __init__(self, script: str) -> None:
        super().__init__(f"_No results yet: run `python benchmarks/{script}.py`._")


def _load(pattern: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


def _result(name: str, script: str | None = None) -> dict[str, Any]:
    """benchmarks/results/<name>.json, or :class:`NoResults` naming the script that writes it:
    benchmarks/<script>.py (default: <name>.py)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise NoResults(script or name)
    return dict(json.loads(path.read_text()))


def provenance_note(results: list[dict[str, Any]]) -> str:
    """The line under a table that says at which commit its results were measured: each commit
    (short sha, ", dirty" when the tree had uncommitted changes), and how many of the results
    predate the ``provenance`` record (made before result files kept one)."""
    counts: dict[str, int] = {}
    missing = 0
    for r in results:
        p = r.get("provenance")
        if not isinstance(p, dict) or not p.get("commit"):
            missing += 1
            continue
        key = f"`{str(p['commit'])[:7]}`" + (", dirty" if p.get("dirty") else "")
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return "Measured before result files recorded their commit."
    many = len(results) > 1
    parts = [f"{key}{f' ({n})' if many else ''}" for key, n in counts.items()]
    if missing:
        parts.append(f"not recorded ({missing}, older results)")
    return "Measured at commit " + "; ".join(parts) + "."


def _cell(s: dict[str, Any] | None, base: float = math.inf) -> str:
    if s is None:
        return "–"
    if s.get("n") == 0:
        return "– (no user)"
    if s.get("nonfinite") or not math.isfinite(s["mean"]):
        return f"diverges ({s.get('nonfinite', '?')}/{s['n']} tasks) †"
    mark = " †" if s["mean"] > base else ""
    return (
        f"{s['mean']:.3g} ± {s['ci95']:.2g}{mark}" if mark else f"{s['mean']:.3f} ± {s['ci95']:.3f}"
    )


def demo_table() -> str:
    """What ``make demo`` gives (benchmarks/demo.py ran it): its MSE after each number of inner
    steps against the MAML paper's, its length and its time."""
    data = _result("demo")
    ev = data["evaluation"]
    steps = list(next(iter(ev["scores"].values())))
    names = [f"{k} step{'s' if k != '1' else ''}" for k in steps]
    lines = [
        "| `make demo` | " + " | ".join(names) + " | meta-iterations | time |",
        "|" + "---|" * (len(steps) + 3),
    ]
    for shots, sc in ev["scores"].items():
        lines.append(
            f"| metamap, {shots} MSE | "
            + " | ".join(_cell(sc.get(k)) for k in steps)
            + f" | {data['steps_trained']:,} | {data['wall_seconds']:.0f} s, "
            f"{data['threads']} CPU thread{'s' * (data['threads'] != 1)} |"
        )
        if shots == "5-shot":
            paper = [f"{PAPER_MAML_5SHOT[k]:.2f}" if k in PAPER_MAML_5SHOT else "–" for k in steps]
            lines.append("| *MAML paper* | " + " | ".join(paper) + " | 70,000 | – |")
    where = data.get("provenance") or {}
    lines += [
        "",
        f"Query MSE (mean ± 95% CI) on {ev['tasks']} fixed sinusoid tasks (seed {ev['seed']}, "
        f"{ev['queries']} query points each) after each number of inner steps from the "
        f"support points; time: the whole command (training {data['train_seconds']:.0f} s, then "
        "evaluation and plots)"
        + (f" on {where['cpu']}" if where.get("cpu") else "")
        + f", torch {data['torch']}. Produced by `{shell(data['command'])}`, which runs "
        f"`{data['demo_command']}` as `make demo` does.",
        provenance_note([data]),
    ]
    return "\n".join(lines)


def sinusoid_table() -> str:
    runs = {r["learner"]: r for r in _load("sinusoid_*.json")}
    if not runs:
        raise NoResults("sinusoid")
    steps = ["0", "1", "5", "10"]
    names = [f"{s} step{'s' if s != '1' else ''}" for s in steps]
    head = "| learner | support | " + " | ".join(names)
    lines = [head + " |", "|" + "---|" * (len(steps) + 2)]
    first = next(iter(runs.values()))
    for shots in first["scores"]:
        for name in [n for n in ORDER if n in runs]:
            sc = runs[name]["scores"][shots]
            base = sc["0"]["mean"] if "0" in sc else math.inf
            cells = [_cell(sc.get(s), base) for s in steps]
            lines.append(f"| {NAMES[name]} | {shots} | " + " | ".join(cells) + " |")
        if shots == "5-shot":
            paper = ["–"] + [f"{PAPER_MAML_5SHOT[s]:.2f}" for s in steps[1:]]
            lines.append("| *MAML paper (target)* | 5-shot | " + " | ".join(paper) + " |")
    r = first
    c = r["config"]
    notes = [
        "",
        f"Query MSE (mean ± 95% CI) on {r['tasks']} fixed tasks (seed {r['seed']}, "
        f"{r['queries']} query points each, x ~ U[-5, 5]); 0 steps = the meta-learned "
        "initialisation. Training: "
        f"{c['train']['steps']:,} meta-iterations, meta-batch {c['train']['meta_batch']}, "
        f"K={c['task']['shots']}, Adam {c['train']['lr']}, inner lr {c['learner']['inner_lr']} "
        "(Reptile: 5 inner steps); best checkpoint by validation MSE on 100 "
        "separate fixed tasks.",
        "† worse than not adapting at all (0 steps): ANIL and Meta-SGD are meta-trained for one "
        "inner step, and the step they learn (Meta-SGD's per-parameter rates; ANIL's feature "
        "scale under a fixed rate) overshoots when it is repeated. Use them with the number of "
        "steps they were trained for, or train them with more inner steps.",
        f"Training time on {_cpus(runs.values())} (1 CPU thread): "
        + ", ".join(
            f"{NAMES[n]} {runs[n]['train_seconds'] / 60:.1f} min" for n in ORDER if n in runs
        )
        + f"; torch {r['torch']}. Commands: "
        + "; ".join(sorted({f"`{shell(x['command'])}`" for x in runs.values()}))
        + ".",
    ]
    return "\n".join([*lines, *notes, provenance_note(list(runs.values()))])


def _paired(d: dict[str, Any] | None) -> str:
    """A paired difference of query MSE (:func:`_delta`), or "diverges" where it is not finite."""
    if d is not None and not (math.isfinite(d["mean"]) and math.isfinite(d["ci95"])):
        return "diverges"
    return _delta(d, digits=3)


def inner_optimizers_table() -> str:
    """benchmarks/inner_optimizers.py: the sinusoid configs trained once per inner update rule,
    with each variant's paired difference to its plain-steps control on the same tasks."""
    data = _result("inner_optimizers")
    rows = data["variants"]
    cols = [("5-shot", "1"), ("5-shot", "5"), ("5-shot", "10"), ("10-shot", "5"), ("20-shot", "5")]
    diffs = [("5-shot", "5"), ("10-shot", "5")]
    head = " | ".join(f"{s}, {k} step{'s' * (k != '1')}" for s, k in cols)
    dhead = " | ".join(f"Δ {s}, {k} steps" for s, k in diffs)
    lines = [
        f"| learner | inner update | inner lr | {head} | {dhead} | training |",
        "|" + "---|" * (4 + len(cols) + len(diffs)),
    ]
    for r in rows.values():
        learner = r["config"]["learner"]
        cpu = r.get("train_cpu_seconds")
        time = (
            f"{cpu / 60:.1f} CPU min" if cpu is not None else f"{r['train_seconds'] / 60:.1f} min"
        )
        vs = r.get("vs_control", {})
        lines.append(
            f"| {NAMES[r['base_config']]}, {learner['inner_steps']} steps | {r['rule']} | "
            f"{learner['inner_lr']:g} | "
            + " | ".join(_cell(r["scores"][s].get(k)) for s, k in cols)
            + " | "
            + " | ".join(_paired(vs.get(s, {}).get(k)) if vs else "control" for s, k in diffs)
            + f" | {time} |"
        )

    def named(r: dict[str, Any]) -> str:
        return f"{NAMES[r['base_config']]} ({r['rule']}; {r['config']['learner']['inner_lr']:g})"

    verdict: dict[str, list[str]] = {"better than": [], "worse than": [], "not told from": []}
    for r in rows.values():
        d = r.get("vs_control", {}).get("5-shot", {}).get("5")
        if d is not None:
            sure = abs(d["mean"]) > d["ci95"]
            verdict[
                ("worse than" if d["mean"] > 0 else "better than") if sure else "not told from"
            ].append(named(r))
    longer = []  # worse after 10 steps than after 5, task by task (95% CI above zero)
    for r in rows.values():
        at = r["scores"]["5-shot"]
        diffs = [a - b for a, b in zip(at["10"]["values"], at["5"]["values"], strict=True)]
        half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs))
        if statistics.fmean(diffs) > half:
            longer.append(named(r))
    first = next(iter(rows.values()))
    c, threads = first["config"], data["provenance"]["threads"]
    lines += [
        "",
        "At 5 shots and 5 steps, "
        + "; ".join(f"{how} plain steps: {', '.join(v)}" for how, v in verdict.items() if v)
        + ". "
        + (
            "Worse after 10 steps than after 5, task by task (adapting longer than trained "
            f"hurts): {', '.join(longer)}."
            if longer
            else "No variant is worse after 10 steps than after 5, task by task."
        ),
    ]
    lines += [
        "",
        f"Query MSE (mean ± 95% CI) on the sinusoid table's {first['tasks']} fixed tasks (seed "
        f"{first['seed']}, {first['queries']} query points each) after adapting from 5, 10 or 20 "
        "support points with the update rule each variant was meta-trained with. Δ: the "
        "variant's MSE minus its control's (the same learner with plain steps) task by task, "
        "mean ± 95% CI, in bold where the interval excludes zero (negative: the rule helps). "
        f"Training: {c['train']['steps']:,} meta-iterations, meta-batch "
        f"{c['train']['meta_batch']}, K={c['task']['shots']}, Adam {c['train']['lr']} outside; "
        f"best checkpoint by validation MSE; {_cpus([data])}, {threads} CPU "
        f"thread{'s' * (threads != 1)}, torch {first['torch']}. "
        f"Produced by `{shell(data['command'])}`.",
        provenance_note([data]),
    ]
    return "\n".join(lines)


def _cpus(results: Iterable[dict[str, Any]]) -> str:
    """The CPU model(s) the results' provenance names, or "this machine" for older results."""
    cpus = sorted({str(r["provenance"]["cpu"]) for r in results if r.get("provenance")})
    return " and ".join(cpus) or "this machine"


PAPER_OMNIGLOT = {
    "protonet": {"5w1s": 98.8, "5w5s": 99.7, "20w1s": 96.0, "20w5s": 98.9},
    "maml": {"5w1s": 98.7, "5w5s": 99.9, "20w1s": 95.8, "20w5s": 98.9},
    "fomaml": {"5w1s": 98.3, "5w5s": 99.2},
    "anil": {"20w1s": 96.2, "20w5s": 98.0},  # Raghu et al. 2020, Table 2 (Omniglot 20-way only)
    "mamlpp": {"5w1s": 99.47, "20w1s": 97.65},  # Antoniou et al. 2019, Table 1 (1-shot)
    "matching": {"5w1s": 98.1, "5w5s": 98.9, "20w1s": 93.8, "20w5s": 98.5},
    "relation": {"5w1s": 99.6, "5w5s": 99.8, "20w1s": 97.6, "20w5s": 99.1},  # Sung et al. 2018
    # Nichol et al. 2018, Table 1, "Reptile + Transduction" (as these rows' BatchNorm)
    "reptile": {"5w1s": 97.68, "5w5s": 99.48, "20w1s": 89.43, "20w5s": 97.12},
}


def _on_gpu(r: dict[str, Any]) -> bool:
    return str(r.get("device", "cpu")).startswith("cuda")


def _cpu_minutes(r: dict[str, Any]) -> str:
    """ ", N CPU min" where a CPU row recorded its training's CPU time (the process's, over every
    thread), which unlike the wall clock does not grow when other work shares the machine."""
    cpu = r.get("train_cpu_seconds")
    return "" if cpu is None or _on_gpu(r) else f" ({cpu / 60:.0f} CPU min)"


def _run_name(r: dict[str, Any]) -> str:
    """A result's config, with the GPU it trained on where it did (beside a CPU row), and
    "batch-statistics test" where an inductive network was scored transductively."""
    name = f"{r['config']} on {r['device_name']}" if _on_gpu(r) else str(r["config"])
    return name + (", batch-statistics test" if _tested_transductively(r) else "")


def lake_unseen(r: dict[str, Any]) -> bool:
    """Whether a row's model never trained on an image of Lake's one-shot runs, so that its
    Lake error is a one-shot figure. Newer results record the pixel check
    (``seen_run_images``); for older ones the split decides: the runs come from the evaluation
    alphabets, which the Vinyals and MAML splits train on (312 and 560 of the 800 run images,
    tests/data/test_data_omniglot_real.py) and the background alphabets ("metadataset"
    protocol) do not."""
    lake = r["lake_one_shot"]
    if "seen_run_images" in lake:
        return int(lake["seen_run_images"]) == 0
    return r["config_dump"]["data"].get("protocol", "vinyals") == "metadataset"


def _lake_error(r: dict[str, Any]) -> float | None:
    """A row's Lake error where it is a one-shot figure, else ``None``."""
    error = r["lake_one_shot"].get("error")
    return float(error) if error is not None and lake_unseen(r) else None


def _tested_transductively(r: dict[str, Any]) -> bool:
    return "eval.batch_norm=transductive" in r.get("eval_overrides", [])


def omniglot_table() -> str:
    runs = [r for r in _load("omniglot_*.json") if r.get("benchmark") == "omniglot"]
    if not runs:
        raise NoResults("omniglot")
    settings = ["5w1s", "5w5s", "20w1s", "20w5s"]
    lines = [
        "| method (config) | " + " | ".join(settings) + " | Lake error | trained on (BatchNorm) "
        "| trained | training time |",
        "|" + "---|" * (len(settings) + 5),
    ]
    for r in runs:
        paper = PAPER_OMNIGLOT.get(r["learner"], {})
        if r["config_dump"]["task"].get("sampler") == "metadataset":
            paper = {}  # the papers' figures are for their own (N-way K-shot) training episodes
        if r["config_dump"]["data"].get("protocol") == "metadataset":
            paper = {}  # tested on other characters than the papers' (the evaluation alphabets)
        cells = []
        for s in settings:
            sc = r["scores"].get(s)
            target = f" (paper {paper[s]})" if s in paper else ""
            cells.append(f"{100 * sc['mean']:.2f} ± {100 * sc['ci95']:.2f}{target}" if sc else "–")
        train = r["config_dump"]["train"]
        if r["learner"] == "pretrain":
            unit = f"steps of {train['batch_size']} images"
        elif train["meta_batch"] > 1:
            unit = f"meta-iterations of {train['meta_batch']} episodes"
        else:
            unit = "episodes"
        budget = f"{r['steps_trained']:,} of {r['steps_in_paper_schedule']:,} {unit}"
        if train["schedule"] == "piecewise":
            cuts = zip(train["milestones"], train["factors"], strict=True)
            budget += "; lr " + ", ".join(f"×{f:g} from {m:,}" for m, f in cuts)
        elif train["schedule"] == "linear":  # Reptile's meta step, annealed over this budget
            budget += f"; lr linearly to 0 over {train['steps']:,}"
        task, model = r["config_dump"]["task"], r["config_dump"]["model"]
        bn = model["batch_norm"] + (", strided" if model.get("downsample") == "stride" else "")
        if _tested_transductively(r):
            bn += ", tested with each episode's statistics"
        episodes = "images" if r["learner"] == "pretrain" else f"{task['ways']}w{task['shots']}s"
        if task.get("sampler") == "metadataset":
            episodes = f"Meta-Dataset {task['min_ways']}-{task['max_ways']}w"
        if r["config_dump"]["data"].get("train_split", "train") == "trainval":
            episodes += ", train+val"
        if r["config_dump"]["data"].get("protocol") == "metadataset":
            episodes += "; background alphabets only, tested on the evaluation alphabets"
        if r["learner"] == "mamlpp":  # its phases, as this run scaled them to its steps
            lrn = r["config_dump"]["learner"]
            budget += (
                f"; {train['schedule']} lr over {train['steps']:,}, MSL over "
                f"{lrn['msl_steps']:,}, first-order for {lrn['first_order_steps']:,}"
            )
        if r["config_dump"]["eval"].get("checkpoint") == "last":
            budget += "; last weights"
        lines.append(
            f"| {r['learner']} ({_run_name(r)}) | "
            + " | ".join(cells)
            + _lake_cell(r)
            + f"{episodes} ({bn}) | {budget} | "
            f"{r['train_seconds'] / 60:.0f} min, "
            + (r["device_name"] if _on_gpu(r) else f"{r['threads']} CPU thread(s)")
            + _cpu_minutes(r)
            + " |"
        )
    profiles = []
    for r in runs:
        for setting, sc in r["scores"].items():
            steps = sorted(sc.get("by_step", {}), key=int)
            if len(steps) > 2:  # gradient-based: 0, 1, ... steps
                curve = ", ".join(
                    f"{k} step{'s' * (k != '1')} {100 * sc['by_step'][k]['mean']:.2f}"
                    for k in steps
                    if k != "0"
                )
                profiles.append(f"{_run_name(r)} {setting}: {curve}")
    more_shots = []
    for r in runs:
        trained = r["config_dump"]["task"]["shots"]
        cells = [s for s in settings if s in r["scores"] and int(s.split("w")[1][:-1]) > trained]
        if cells and r["learner"] != "pretrain":
            more_shots.append(f"{', '.join(cells)} of {_run_name(r)}")
    meta_dataset = [
        f"{_run_name(r)}: {100 * md['mean']:.2f} ± {100 * md['ci95']:.2f} over {md['tasks']:,} "
        f"episodes of {md['min_ways']}-{md['max_ways']} ways (mean {md['mean_ways']:.1f} ways, "
        f"{md['mean_support']:.0f} support images"
        + (f", {q:.1f} queries per class" if (q := md.get("mean_queries_per_class")) else "")
        + ")"
        + "".join(
            f"; {d['name']} {100 * d['mean']:.2f} ± {100 * d['ci95']:.2f} ({d['tasks']})"
            for d in md.get("by_domain") or []
            if d["tasks"]
        )
        for r in runs
        if (md := r.get("meta_dataset"))
    ]
    notes = [
        "",
        "Protocol: Conv-4 of width 64 on 28×28 images for every row, with 2×2 max-pooling, or "
        "with stride-2 convolutions where the 'trained on' column says strided (the MAML "
        "paper's Omniglot network, `model.downsample: stride`); each row's training episodes "
        "and BatchNorm policy are in that column (the full protocol line of each run is in its "
        "result file).",
        "Gradient-based rows report accuracy after the most test-time inner steps (MAML 5-way: 3, "
        "20-way: 5; Reptile: 50, as its paper); a fixed 5-way head cannot take Lake's 20-way "
        "runs (n/a). Lake's error is given only for models that never trained on a run "
        "image, checked on pixels (`metamap.data.run_images_seen`): Lake's runs are drawn "
        "from the 20 evaluation alphabets, and the Vinyals training characters include 312 "
        "of their 800 images (the MAML split 560), so the errors earlier tables gave for "
        "those rows — "
        + ", ".join(
            f"{_run_name(r)} {100 * r['lake_one_shot']['error']:.1f}%"
            for r in runs
            if r["lake_one_shot"].get("error") is not None and not lake_unseen(r)
        )
        + " — measured recognition of drawings the model had trained on, not one-shot "
        "learning, and were optimistic; the rows that train on the 30 background alphabets "
        "only (Lake's protocol) give the one-shot figure. "
        + _batch_norm_note(runs)
        + "A row's settings "
        "with more shots than it was trained with test the same model with more shots: "
        + "; ".join(more_shots)
        + ". "
        "Rows train on the Vinyals training characters (1,028 × 4 rotations) and are scored at "
        "their best checkpoint on the 172 validation characters, except where the 'trained on' "
        "column says train+val: as the ProtoNets paper's final models were, those train from "
        "scratch on all 1,200 characters for the episode count at which the row's train-only "
        "run validated best, and are scored at their last weights (`eval.checkpoint: last`). "
        "The pre-train row is supervised "
        "training on all 4,112 base classes (no episodes), then a prototype head on normalised "
        "features per test task. "
        "Rows trained for fewer episodes than the published schedule are short of the paper "
        "for that reason: these CPUs run about two 60-way ProtoNet episodes per second. "
        "Training time is the training's wall clock, summed over resumed sessions: where other "
        "work shared the machine (several of these runs trained two at a time on its two "
        "cores, or beside other jobs), it is longer than the training alone would take; rows "
        "made since metamap counts it also give the training process's CPU minutes, which "
        "sharing does not inflate.",
        "Accuracy after each number of test-time inner steps (the adaptation profile; the table "
        "shows the last): "
        + "; ".join(profiles)
        + ". Where more steps score lower, an initialisation meta-trained for one inner step "
        "overshoots when that step is repeated (as in the sinusoid table); the papers' protocol "
        "(3 test steps after 1 in training) is kept all the same.",
        "Commands: " + "; ".join(f"`{shell(r['command'])}`" for r in runs) + ".",
    ]
    if meta_dataset:
        notes.insert(
            -1,
            "Accuracy on fixed Meta-Dataset test episodes (variable ways, class-imbalanced "
            "support; Triantafillou et al. 2020): " + "; ".join(meta_dataset) + ".",
        )
    curves = [
        f"{_run_name(r)}: "
        + ", ".join(f"{v['step']:,} {100 * v['accuracy']:.1f}" for v in r["validation"])
        for r in runs
        if r.get("validation")
    ]
    if curves:
        notes.insert(
            -1,
            "Validation accuracy (%) by training step, for the rows whose result records it "
            "(the validation split, the trained setting): " + "; ".join(curves) + ".",
        )
    return "\n".join([*lines, *notes, provenance_note(runs)])


OMNIGLOT_NAMES = {
    "protonet": "ProtoNet",
    "matching": "Matching Networks",
    "relation": "Relation Networks",
    "maml": "MAML",
    "mamlpp": "MAML++",
    "fomaml": "first-order MAML",
    "anil": "ANIL",
    "reptile": "Reptile",
    "r2d2": "R2D2",
    "pretrain": "supervised pre-training",
}
"""Method names of the headline table, in its row order (other learners follow, sorted)."""


def _batch_norm_note(runs: list[dict[str, Any]]) -> str:
    """Rows scored both ways (running statistics, and each episode's): the papers differ (the
    ProtoNets code tests with running statistics, MAML's with the episode's)."""
    pairs = []
    for r in runs:
        if not _tested_transductively(r):
            continue
        twin = next(
            (x for x in runs if x["config"] == r["config"] and not _tested_transductively(x)),
            None,
        )
        if twin is None:
            continue
        cells = [
            f"{s} {100 * twin['scores'][s]['mean']:.2f} with running statistics against "
            f"{100 * r['scores'][s]['mean']:.2f} with each episode's"
            for s in ("5w1s", "20w1s")
            if s in twin["scores"] and s in r["scores"]
        ]
        pairs.append(f"{r['config']}: " + ", ".join(cells))
    if not pairs:
        return ""
    twin = next((r for r in runs if r["config"] == "protonet-5w1s-trainval-inductive"), None)
    budget = ""
    if twin is not None:
        done, schedule = twin["steps_trained"], twin["steps_in_paper_schedule"]
        budget = (
            "on its whole budget"
            if done >= schedule
            else f"so far on {done:,} of its {schedule:,} episodes"
        )
    return (
        "BatchNorm at test time: an inductive network scored both ways (`eval.batch_norm: "
        "transductive`; the policy does not change training, so the weights are the same) — "
        + "; ".join(pairs)
        + ". The ProtoNets code tests with running statistics and MAML's with each episode's; "
        "the paper-level Vinyals ProtoNet rows were trained transductive (no running "
        "statistics): `protonet-5w1s-trainval-inductive` is their inductive twin, the "
        f"ProtoNets code's protocol, measured {budget} (see its row). "
    )


def _lake_cell(r: dict[str, Any]) -> str:
    """The Lake column of a row: its error where the model never saw a run image."""
    lake = r["lake_one_shot"]
    if lake.get("error") is None and ("seen_run_images" not in lake or lake.get("reason")):
        return " | n/a | "  # the model cannot take Lake's runs (the reason is recorded)
    error = _lake_error(r)
    return f" | {100 * error:.1f}% | " if error is not None else " | – (saw run images) | "


def headline_table(full_table: str = "docs/results/omniglot.md") -> str:
    """The README's summary of the Omniglot table: per method and setting, the best of that
    method's rows, with the paper's figure and the row (config) it comes from; ``full_table``:
    the link to the full table from the page the summary is on."""
    runs = [r for r in _load("omniglot_*.json") if r.get("benchmark") == "omniglot"]
    if not runs:
        raise NoResults("omniglot")
    settings = ["5w1s", "5w5s", "20w1s", "20w5s"]
    rank = {n: i for i, n in enumerate(OMNIGLOT_NAMES)}
    learners = sorted({r["learner"] for r in runs}, key=lambda n: (rank.get(n, len(rank)), n))
    lines = [
        "| method | " + " | ".join(settings) + " | Lake error |",
        "|" + "---|" * (len(settings) + 2),
    ]
    for learner in learners:  # each network as it was trained to be tested
        mine = [r for r in runs if r["learner"] == learner and not _tested_transductively(r)]
        paper = PAPER_OMNIGLOT.get(learner, {})
        cells = []
        for s in settings:
            scored = [  # on the Vinyals test characters, as the papers (not Lake's protocol)
                r
                for r in mine
                if s in r["scores"] and r["config_dump"]["data"].get("protocol") != "metadataset"
            ]
            if not scored:
                cells.append("–")
                continue
            best = max(scored, key=lambda r: r["scores"][s]["mean"])
            sc = best["scores"][s]
            target = f"paper {paper[s]}; " if s in paper else ""
            cells.append(
                f"{100 * sc['mean']:.2f} ± {100 * sc['ci95']:.2f} ({target}{_run_name(best)})"
            )
        lake = [r for r in mine if _lake_error(r) is not None]
        if lake:
            low = min(lake, key=lambda r: _lake_error(r) or 0.0)
            cells.append(f"{100 * (_lake_error(low) or 0.0):.1f}% ({_run_name(low)})")
        else:
            cells.append("–")
        lines.append(f"| {OMNIGLOT_NAMES.get(learner, learner)} | " + " | ".join(cells) + " |")
    episodes = sorted({sc["n"] for r in runs for sc in r["scores"].values()})
    queries = sorted({r["queries"] for r in runs})
    lake_runs = sorted({r["lake_one_shot"]["runs"] for r in runs if "runs" in r["lake_one_shot"]})
    lines += [
        "",
        "Omniglot test accuracy (%, mean ± 95% CI over "
        + " or ".join(f"{n:,}" for n in episodes)
        + " fixed test episodes, "
        + " or ".join(str(q) for q in queries)
        + " queries per class) and error on Lake et al.'s "
        + " or ".join(str(n) for n in lake_runs)
        + " within-alphabet 20-way one-shot runs, for models that never trained on a run "
        "image (checked on pixels: the runs come from the evaluation alphabets, which the "
        "Vinyals and MAML splits train on; – where every row of the method did). Each cell is "
        "the best of that method's rows in "
        f"[the full table]({full_table}), named in brackets (a GPU row names its GPU), "
        "which gives each row's training episodes, budget against the paper's schedule, time "
        "and command.",
    ]
    return "\n".join([*lines, provenance_note(runs)])


BACKBONE_NAMES = {
    "protonet-lake": "ProtoNet, background alphabets (meta-trained)",
    "protonet": "ProtoNet, Vinyals train+val (meta-trained)",
    "maml": "MAML (meta-trained)",
    "pretrain": "supervised pre-training",
    "pretrain+adabn": "supervised pre-training + AdaBN",
    "random": "random initialisation",
    "pixels": "raw pixels",
}
FEATURE_DOMAINS = {"omniglot": "held-out Omniglot", "digits": "digits", "gratings": "gratings"}
DIGITS_DIAGNOSTICS = {
    "inverted": "inverted",
    "framed": "framed",
    "shifted": "framed, shifted",
    "adabn": "AdaBN",
}


def _pct(v: dict[str, Any] | None) -> str:
    return "–" if v is None else f"{100 * v['mean']:.2f} ± {100 * v['ci95']:.2f}"


def _left_out(head: str, info: dict[str, Any]) -> str:
    """The sentence saying why ``head`` was left out of the features table (and what it costs)."""
    if "seconds_per_episode" not in info:
        return f"Head {head} {info['reason']}."
    per = info["seconds_per_episode"]
    others = info["other_heads_seconds_per_episode"]
    return (
        f"Head {head} {info['reason']}: timed on {info['episodes_timed']} held-out Omniglot "
        f"episodes of {BACKBONE_NAMES.get(info['timed_on'], info['timed_on'])}, it takes "
        + " and ".join(f"{per[s]:.2f} s per {s} episode" for s in per)
        + " (the three heads above together: "
        + " and ".join(f"{others[s]:.3f} s" for s in others)
        + f"), about {info['estimated_hours']:.1f} more hours for this table."
    )


def features_table() -> str:
    """benchmarks/features.py: each backbone under each head on held-out Omniglot and two
    domains no backbone saw (5-way, 1 and 5 shots), its linear probes, and what moves its digits
    score (polarity, framing, AdaBN)."""
    data = _result("features")
    rows = data["backbones"]
    shots = data["shots"]
    doms = [
        d for d in FEATURE_DOMAINS if any(k.startswith(f"{d}/") for r in rows.values() for k in r)
    ]
    cols = [(d, f"{data['ways']}w{k}s") for d in doms for k in shots]
    lines = [
        "| backbone | head | " + " | ".join(f"{FEATURE_DOMAINS[d]} {s}" for d, s in cols) + " |",
        "|" + "---|" * (len(cols) + 2),
    ]
    for key, row in rows.items():
        for head in data["heads"]:
            cells = [_pct(row.get(f"{d}/{s}/{head}")) for d, s in cols]
            lines.append(f"| {BACKBONE_NAMES.get(key, key)} | {head} | " + " | ".join(cells) + " |")
    probe = [
        "",
        "| backbone (feature dimension) | measure | "
        + " | ".join(FEATURE_DOMAINS[d] for d in doms)
        + " |",
        "|" + "---|" * (len(doms) + 2),
    ]
    measures = {
        "probe": ("linear probe, centred (%)", lambda v: f"{100 * v:.1f}"),
        "probe_uncentred": ("linear probe, uncentred (%)", lambda v: f"{100 * v:.1f}"),
        "mean_cosine": ("mean cosine of two images' features", lambda v: f"{v:.2f}"),
    }
    for key, row in rows.items():
        for m, (label, fmt) in measures.items():
            if f"{doms[0]}/{m}" in row:
                probe.append(
                    f"| {BACKBONE_NAMES.get(key, key)} ({row['feature_dim']}) | {label} | "
                    + " | ".join(fmt(row[f"{d}/{m}"]) for d in doms)
                    + " |"
                )
    diag = data.get("diagnostics")
    why: list[str] = []
    if diag:
        variants = [
            v
            for v in DIGITS_DIAGNOSTICS
            if any(f"{v}/" in k for r in rows.values() for k in r.get("digits_diagnostics", {}))
        ]
        dcols = [(v, f"{data['ways']}w{k}s") for v in ["as given", *variants] for k in shots]
        why = [
            "",
            "| backbone (digits, "
            + diag["head"]
            + " head) | "
            + " | ".join(f"{DIGITS_DIAGNOSTICS.get(v, v)} {s}" for v, s in dcols)
            + " |",
            "|" + "---|" * (len(dcols) + 1),
        ]
        for key, row in rows.items():
            found = {
                **{f"as given/{s}": row.get(f"digits/{s}/{diag['head']}") for _, s in dcols},
                **row.get("digits_diagnostics", {}),
            }
            why.append(
                f"| {BACKBONE_NAMES.get(key, key)} | "
                + " | ".join(_pct(found.get(f"{v}/{s}")) for v, s in dcols)
                + " |"
            )
    splits = data["domains"]["omniglot"]["splits"]
    scored_on = {
        split: [BACKBONE_NAMES.get(k, k) for k, r in rows.items() if r["omniglot_split"] == split]
        for split in splits
    }
    digits = data["domains"]["digits"]
    notes = [
        "",
        f"Few-shot accuracy (%, mean ± 95% CI) over {data['episodes']} fixed {data['ways']}-way "
        f"episodes ({data['queries']} queries per class, seed {data['seed']}) per cell, through "
        "`FewShotClassifier(extractor, head)` at its default settings. Held-out Omniglot: "
        + "; ".join(
            f"{info['description']} ({info['characters']} characters"
            + (f", {info['classes']} classes" if info["classes"] != info["characters"] else "")
            + f") for {', '.join(scored_on[split])}"
            for split, info in splits.items()
        )
        + f". Digits: {digits['images']:,} real scanned digits of {digits['classes']} classes "
        f"({digits['source']}); gratings: {data['domains']['gratings']['classes']} synthetic "
        "classes. Linear probe: accuracy (%) of a logistic regression (C=1) on the features of at "
        f"most {data['probe_classes']} classes, trained on half of each class's images and "
        "tested on the other half, the features centred on the training half's mean and "
        "L2-normalised (CL2N), or L2-normalised only (uncentred).",
    ]
    if diag:
        notes.append(
            f"Digits diagnostics, the {diag['head']} head on the same episodes: *inverted*, "
            "dark strokes on bright; *framed*, the digit "
            f"{diag['frame']}×{diag['frame']} in a dark 28×28 margin; *framed, shifted*, each "
            f"framed digit moved by up to {diag['shift']} pixels along each axis (random, "
            "fixed); *AdaBN*, the backbone's "
            "BatchNorm statistics re-estimated on all the unlabelled digits."
        )
    left = data.get("left_out") or {}
    skipped = data.get("skipped") or {}
    notes.append(
        " ".join(
            [
                *(_left_out(h, why_left) for h, why_left in left.items()),
                *(
                    [
                        "Not scored (no checkpoint): "
                        + "; ".join(f"{BACKBONE_NAMES.get(k, k)} ({r})" for k, r in skipped.items())
                        + "."
                    ]
                    if skipped
                    else []
                ),
                f"torch {data['torch']}, {data['threads']} thread(s); "
                f"produced by `{shell(data['command'])}` on {data['date'][:10]}. Checkpoints: "
                + "; ".join(
                    f"{BACKBONE_NAMES.get(k, k)}: {r['info']['run']}, step {r['info']['step']:,}"
                    for k, r in rows.items()
                    if "checkpoint" in r["info"]
                )
                + ".",
            ]
        )
    )
    return "\n".join([*lines, *probe, *why, *notes, provenance_note([data])])


def episode_speed_table() -> str:
    data = _result("episode_speed")
    eps = data["episodes_per_second"]
    names = {
        "omniglot": "Omniglot",
        "rotations": "synthetic, 1,200 × 4 rotations",
        "plain": "synthetic, 4,800 classes",
    }
    sets = [n for n in names if n in eps]
    head = " | ".join(f"{names[n]}, batch {b}" for n in sets for b in (1, 32))
    lines = [f"| episode | {head} |", "|---|" + "---|" * (2 * len(sets))]
    for key in eps[sets[0]]:
        if not key.endswith("_b1"):
            continue
        setting = key.removesuffix("_b1")
        ways, shots = setting.removesuffix("s").split("w")
        cells = " | ".join(f"{eps[n][f'{setting}_b{b}']:,.0f}" for n in sets for b in (1, 32))
        lines.append(f"| {ways}-way {shots}-shot | {cells} |")
    lines += [
        "",
        "Episodes per second of `EpisodeSampler.sample(batch, generator)` "
        f"({data['queries_per_class']} queries per class, float32 tensors out; best of "
        f"{data['repeats']} repeats of "
        f"{data['seconds_per_repeat']:g} s, {data['threads']} thread, torch {data['torch']}, "
        f"{data['date'][:10]}). Data: {data['dataset']}. The Meta-Dataset sampler (variable ways "
        f"and shots, one episode per call): {data['metadataset_episodes_per_second']:,.0f} "
        f"episodes/s. Produced by `{shell(data['command'])}`.",
    ]
    return "\n".join([*lines, provenance_note([data])])


def embed_speed_table() -> str:
    data = _result("embed_speed")
    lines = [
        "| backbone | naive loop | batch 256 | batch 256, channels-last | metamap default "
        "| default / naive |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['backbone']} | {r['naive_per_s']:.0f} | {r['batch256_per_s']:.0f} | "
            f"{r['batch256_channels_last_per_s']:.0f} | {r['default_per_s']:.0f} "
            f"(batch {r['default_batch_size']}) | {r['default_per_s'] / r['naive_per_s']:.2f}× |"
        )
    lines += [
        "",
        f"Images per second on the CPU ({data['threads']} thread(s), torch {data['torch']}, "
        f"best of 3), random-initialised backbones, outputs checked to agree. Produced by "
        f"`{shell(data['command'])}`.",
    ]
    return "\n".join([*lines, provenance_note([data])])


def miniimagenet_speed_table() -> str:
    runs = {k: RESULTS / f"miniimagenet_speed_{k}.json" for k in ("cpu", "cuda")}
    data = {k: json.loads(p.read_text()) for k, p in runs.items() if p.exists()}
    if not data:
        raise NoResults("miniimagenet_speed")
    by = {k: {r["config"]: r for r in d["rows"]} for k, d in data.items()}
    configs = list(dict.fromkeys(c for rows in by.values() for c in rows))
    cpu, gpu = by.get("cpu", {}), by.get("cuda", {})
    lines = [
        "| config (configs/miniimagenet) | meta-batch (CPU / GPU) | CPU episodes/s "
        "| GPU episodes/s | GPU / CPU | peak GPU MiB | CPU process peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]

    def eps(r: dict[str, Any]) -> float:  # older files hold it/s only
        return float(r.get("episodes_per_s", r["it_per_s"] * r["episodes_per_step"]))

    for c in configs:
        a, b = cpu.get(c), gpu.get(c)
        ref = a or b
        assert ref is not None
        batches = " / ".join(
            "–"
            if r is None
            else str(r["episodes_per_step"])
            + (
                f" of {r['config_meta_batch']}"
                if r.get("config_meta_batch", 0) > r["meta_batch"]
                else ""
            )
            for r in (a, b)
        )
        lines.append(
            f"| {c} ({ref['protocol'].split(', ', 1)[1]}) | {batches} | "
            + (f"{eps(a):.3g}" if a else "–")
            + " | "
            + (f"{eps(b):.3g}" if b else "not run")
            + " | "
            + (f"{eps(b) / eps(a):.0f}×" if a and b else "–")
            + " | "
            + (f"{b['peak_gpu_mib']:,}" if b else "–")
            + " | "
            + (f"{a['process_peak_rss_mib']:,}" if a and "process_peak_rss_mib" in a else "–")
            + " |"
        )
    where = "; ".join(
        f"{k.upper()}: {d['device_name']}, {d['threads']} thread(s), torch {d['torch']}, "
        f"{d['rows'][0]['timed_steps']} timed steps after {d['rows'][0]['warmup_steps']}, "
        f"`{shell(d['command'])}`"
        for k, d in data.items()
    )
    lines += [
        "",
        "Training episodes per second of the real trainer (meta-iterations/s × meta-batch; a "
        "meta-batch below the config's was capped with `--max-meta-batch` for memory; the RSS "
        "column is the benchmark process's peak so far, configs running in table order). "
        f"{where}.",
    ]
    if "cuda" not in data:
        lines.append(
            "No GPU column yet: no GPU machine was lent to the sessions that made this table "
            "(`make device-wheels`, then `benchmarks/device_check.sh` on one)."
        )
    budgets = [r for r in _load("steps_in_budget_*.json") if _on_gpu(r)]
    if budgets:
        rates = "; ".join(
            f"{r['config']} "
            + ", ".join(f"{b} {v:.3g} it/s" for b, v in sorted(r["it_per_s"].items()))
            + f" ({r['timed_steps']} timed steps after {r['warmup_steps']}, "
            f"`{shell(r['command'])}`)"
            for r in budgets
        )
        lines.append(
            "Second-order MAML on Omniglot (configs/omniglot) on the GPU, by task batching "
            f"(the rates `benchmarks/steps_in_budget.py` sized the GPU rows of the Omniglot "
            f"table with; {budgets[0]['device_name']}, torch {budgets[0]['torch']}): {rates}."
        )
    return "\n".join([*lines, provenance_note([*data.values(), *budgets])])


def downsample_speed_table() -> str:
    data = _result("downsample_speed")
    lines = [
        "| config (configs/omniglot) | episodes | max-pool it/s | strided it/s "
        "| strided / max-pool |",
        "|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        episodes = r["protocol"]["maxpool"].split(", ")[1]
        steps = r["inner_steps"]
        lines.append(
            f"| {r['config']} | {episodes}, {steps} inner step{'s' * (steps != 1)}, meta-batch "
            f"{r['meta_batch']} | {r['it_per_s']['maxpool']:.3g} | {r['it_per_s']['stride']:.3g} "
            f"| {r['speedup']:.2f}× |"
        )
    lines += [
        "",
        "Second-order meta-iterations per second of the real trainer on the real Omniglot, "
        f"median of {len(data['rows'][0]['rounds']['stride'])} alternating rounds of "
        f"{data['timed_steps']} timed steps after {data['warmup_steps']} "
        f"({data['device_name']}, {data['threads']} thread(s), torch {data['torch']}): "
        f"`{shell(data['command'])}`.",
    ]
    return "\n".join([*lines, provenance_note([data])])


def first_order_gap_table() -> str:
    data = _result("first_order_gap")
    lines = [
        "| Conv-4 | inner α | body: cosine | body: first-order / exact norm | head: cosine "
        "| head: first-order / exact norm | query loss after the inner step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        cells = [f"{r['inner_lr']:g}"] + [
            f"{r[p][k]['mean']:.3f} ± {r[p][k]['sd']:.3f}"
            for p in ("body", "head")
            for k in ("cosine", "norm_ratio")
        ]
        loss = r["adapted_query_loss"]
        cells.append(f"{loss['mean']:.2f} ± {loss['sd']:.2f}")
        name = {"maxpool": "max-pool", "stride": "strided"}[r["downsample"]]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    steps = data["inner_steps"]
    lines += [
        "",
        f"First-order against exact (second-order) MAML meta-gradient of the same weights on the "
        f"same meta-batch of {data['meta_batch']} training episodes of "
        f"`configs/omniglot/{data['config']}.yaml` ({steps} inner step{'s' * (steps != 1)}, "
        f"α as in each row, the config's is {data['config_inner_lr']}), at initialisation; "
        "mean ± sd over "
        f"{len(data['rows'][0]['seeds'])} "
        f"seeds ({data['machine']}, torch {data['torch']}): `{shell(data['command'])}`.",
    ]
    return "\n".join([*lines, provenance_note([data])])


def autocast_table() -> str:
    """benchmarks/autocast.py: ``train.autocast: bf16`` against float32 — the meta-gradient's
    cosine and relative error, and the time of a meta-step."""
    r = _result("autocast")
    lines = [
        "| network | cosine to float32 | relative error | float32 s / step | bf16 s / step "
        "| bf16 speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        sec = row["seconds"]
        lines.append(
            f"| {name} | {row['cosine']:.4f} | {row['relative_error']:.3f} | "
            f"{sec['float32']:.3f} | {sec['bf16']:.3f} | {row['speedup']:.2f}× |"
        )
    prov = r["provenance"]
    seeds = len(next(iter(r["rows"].values()))["seeds"])
    before, after = r["load_average"]
    lines += [
        "",
        "Second-order MAML's meta-gradient of one meta-batch of training tasks (each config's "
        f"size), float32 against bfloat16 autocast, mean over {seeds} initialisations; seconds: "
        f"median of {r['rounds']} interleaved rounds, {prov['cpu']}, {prov['threads']} "
        f"thread(s), 1-minute load average {before:.1f} before and {after:.1f} after. "
        f"Produced by `{shell(r['command'])}`.",
        provenance_note([r]),
    ]
    return "\n".join(lines)


def step_variants_table() -> str:
    """benchmarks/step_variants.py: the training step's meta-gradient eager channels-last (the
    default), eager in the default layout, and compiled (``train.compile``) — seconds, and each
    one's float32 error against float64."""
    r = _result("step_variants")
    ways = ("channels-last", "default layout", "compiled")
    lines = [
        "| step (config) | channels-last s | default layout s | compiled s | "
        "float32 error: channels-last | default layout | compiled | compiling s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        sec, err = row["seconds"], row["float32_error"]
        fastest = min(ways, key=lambda w: sec[w])
        cells = [f"**{sec[w]:.3f}**" if w == fastest else f"{sec[w]:.3f}" for w in ways]
        errs = [f"{err[w]:.1e}" for w in ways]
        lines.append(
            f"| {name} (`{row['config']}`) | {' | '.join(cells)} | {' | '.join(errs)} | "
            f"{row['compile_seconds']:.0f} |"
        )
    prov = r["provenance"]
    before, after = r["load_average"]
    worst = max(r["rows"].items(), key=lambda kv: kv[1]["float32_error"]["channels-last"])
    lines += [
        "",
        "One meta-gradient of one meta-batch of training tasks (each config's size, real Omniglot "
        "episodes), median seconds of "
        f"{r['rounds']} interleaved rounds (fastest in bold), {prov['cpu']}, {prov['threads']} "
        f"thread(s), 1-minute load average {before:.1f} before and {after:.1f} after. Error: "
        "‖g − g₆₄‖ / ‖g₆₄‖ against the same meta-gradient in float64 (default layout), over the "
        "parameters whose exact gradient is not zero (conv biases right before BatchNorm "
        "cancel). Compiled: `train.compile` (TorchInductor; second-order inner loops stay "
        "eager); compiling: its first call. Largest channels-last error: "
        f"{worst[0]}, {worst[1]['float32_error']['channels-last']:.1e}, against "
        f"{worst[1]['float32_error']['default layout']:.1e} in the default layout. "
        f"Produced by `{shell(r['command'])}`.",
    ]
    blocks = [
        f"{name}: channels-last {b['error']['channels-last']:.1e}, default layout "
        f"{b['error']['default layout']:.1e} ({b['per_channel']:,} elements per channel)"
        for name, row in r["rows"].items()
        if (b := row.get("first_block"))
    ]
    if blocks:
        lines.append(
            "The first block alone (conv → BatchNorm with the batch's statistics, the first "
            "episode's support and query images together), float32 output error against float64: "
            + "; ".join(blocks)
            + "."
        )
    lines.append(provenance_note([r]))
    return "\n".join(lines)


def batching_table() -> str:
    """What ``batching="auto"`` chooses and why: vmap against the per-task loop on the CPU
    (speed_learn2learn.json's sinusoid and Conv-4 MAML scenarios) and on a GPU (the
    steps_in_budget results that timed both)."""
    data = _result("speed_learn2learn")
    lines = [
        "| model | device | vmap it/s | loop it/s | `auto` picks | its speed-up "
        "| peak MiB vmap / loop |",
        "|---|---|---|---|---|---|---|",
    ]
    shown, gpu = [data], []
    for name, model in (("sinusoid-maml", "sinusoid MLP"), ("conv4-maml", "Conv-4")):
        sc = data["scenarios"].get(name)
        if sc is None:
            continue
        v = {k: sc["variants"][f"metamap-{k}"] for k in ("vmap", "loop")}
        pick = sc["metamap_default_batching"]
        other = "loop" if pick == "vmap" else "vmap"
        rate = {k: v[k]["median_it_s"] for k in v}
        lines.append(
            f"| {model}, second-order MAML, meta-batch {sc['settings']['meta_batch']} | CPU, "
            f"{data['threads']} thread{'s' * (data['threads'] != 1)} | {rate['vmap']:.3g} | "
            f"{rate['loop']:.3g} | {pick} | {rate[pick] / rate[other]:.1f}× | "
            f"{v['vmap']['peak_increase_mib']:,.0f} / {v['loop']['peak_increase_mib']:,.0f} |"
        )
    for r in _load("steps_in_budget_*.json"):
        its = r["it_per_s"]
        if not _on_gpu(r) or not {"vmap", "loop"} <= set(its):
            continue
        pick = "vmap"  # auto's choice for a convolutional model on a CUDA device
        lines.append(
            f"| Conv-4, second-order MAML, Omniglot `{r['config']}` | {r['device_name']} | "
            f"{its['vmap']:.3g} | {its['loop']:.3g} | {pick} | {its['vmap'] / its['loop']:.1f}× "
            "| – |"
        )
        shown.append(r)
        gpu.append(f"torch {r['torch']}")
    lines += [
        "",
        "Meta-iterations per second (meta-gradient and Adam step) of each batching path; the CPU "
        f"rows are the median of {data['scenarios']['sinusoid-maml']['plan']['rounds']} (MLP) "
        f"and {data['scenarios']['conv4-maml']['plan']['rounds']} (Conv-4) rounds of "
        f"`{shell(data['command'])}` (torch {data['torch']}, {data['cpu']}), the GPU row"
        + (f" ({', '.join(dict.fromkeys(gpu))})" if gpu else "")
        + " the timing `benchmarks/steps_in_budget.py` made before training the GPU rows of "
        "the Omniglot table. Peak MiB: the rise of the process's resident memory while timing.",
        provenance_note(shown),
    ]
    return "\n".join(lines)


def easyfsl_table() -> str:
    data = _result("speed_easyfsl")
    lines = [
        "| episode | easyfsl eps/s | metamap eps/s | metamap / easyfsl "
        "| metamap contiguous eps/s | contiguous / easyfsl |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['episode']} | {r['easyfsl_eps']:.3f} | {r['metamap_eps']:.3f} | "
            f"{r['ratio']:.2f}× | {r['metamap_contiguous_eps']:.3f} | "
            f"{r['ratio_contiguous']:.2f}× |"
        )
    lines += [
        "",
        "ProtoNet training episodes per second (forward, backward, Adam step), Conv-4 with 64 "
        f"filters, median over {data['rounds']} interleaved rounds of {data['steps_per_round']} "
        f"episodes; easyfsl {data['easyfsl']}, torch {data['torch']}, {data['threads']} "
        "thread(s). Same episodes and initial weights; the script first checks that both compute "
        "the same prototype distances. Produced by "
        f"`{shell(data['command'])}`.",
        _easyfsl_target(data["rows"]),
    ]
    return "\n".join([*lines, provenance_note([data])])


def _verdict(ratio: float, target: float) -> str:
    """A speed ratio judged against its target: ``**met** (1.62×)`` or ``**not met** (…)``."""
    return f"**{'met' if ratio >= target else 'not met'}** ({ratio:.2f}×)"


EASYFSL_TARGET = 1.5
"""The few-shot issue's target: metamap's ProtoNet episodes ≥ this many times easyfsl's."""


def _easyfsl_target(rows: list[dict[str, Any]]) -> str:
    """The target against each episode shape of this run, met or not."""
    verdicts = [f"{r['episode']}: {_verdict(r['ratio'], EASYFSL_TARGET)}" for r in rows]
    return f"Target ≥ {EASYFSL_TARGET:g}× easyfsl, this run: " + "; ".join(verdicts) + "."


def speed_table() -> str:
    data = _result("speed_learn2learn")
    rows = data.get("table")
    if not rows:
        return "_speed_learn2learn.json holds no `table` rows._"
    cols = list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(row[c]) for c in cols) + " |" for row in rows]
    lines += ["", *([data["notes"]] if data.get("notes") else []), _speed_targets(data)]
    lines.append(_other_cpus())
    lines.append(_conv4_time_split())
    lines.append(provenance_note([data]))
    return "\n".join(lines)


def _other_cpus() -> str:
    """The same benchmark's targets as earlier runs on other CPUs measured them
    (``speed_learn2learn_<cpu>.json``: a run kept when the benchmark was re-run on another
    machine; the ratios depend on the CPU)."""
    parts = []
    for path in sorted(RESULTS.glob("speed_learn2learn_*.json")):
        if path.stem.endswith("_quick"):
            continue
        data = json.loads(path.read_text())
        where = data.get("provenance") or {}
        ratios = [
            f"{name} {data['scenarios'][name]['ratio_metamap_over_l2l']['default']:.2f}×"
            for name in SPEED_TARGETS
            if "default"
            in data.get("scenarios", {}).get(name, {}).get("ratio_metamap_over_l2l", {})
        ]
        commit = str(where.get("commit") or "")[:7]
        parts.append(f"{where.get('cpu', path.stem)} (`{path.name}`, commit `{commit}`): "
                     + ", ".join(ratios))  # fmt: skip
    if not parts:
        return ""
    return "The same benchmark on another CPU, default / learn2learn: " + "; ".join(parts) + "."


SPEED_TARGETS = {"sinusoid-maml": 8.0, "conv4-maml": 1.7}
"""The scale-out issue's targets: metamap's default path ≥ this many times learn2learn's speed
(second-order MAML, one thread)."""


def _speed_targets(data: dict[str, Any]) -> str:
    """Each target of :data:`SPEED_TARGETS` against this run's ratio, met or not."""
    parts = []
    for name, target in SPEED_TARGETS.items():
        ratio = data.get("scenarios", {}).get(name, {}).get("ratio_metamap_over_l2l", {})
        if "default" in ratio:
            parts.append(f"{name} ≥ {target:g}× learn2learn: {_verdict(ratio['default'], target)}")
    return "Targets of the scale-out issue, this run: " + "; ".join(parts) + "." if parts else ""


PROFILE_KINDS = {
    "convolutions": ("convolution",),
    "BatchNorm": ("batch_norm",),
    "max-pool": ("max_pool",),
    "ReLU": ("threshold", "relu", "clamp_min"),
}
"""How :func:`_conv4_time_split` groups the profiler's operators (by a part of their name)."""


def _conv4_time_split() -> str:
    """Where one Conv-4 MAML meta-iteration's time goes, from the torch.profiler tables that
    ``speed_learn2learn.py`` writes (``profile_conv4.txt``, self CPU time of its listed top
    operators; the rest, unlisted, counts as other)."""
    path = RESULTS / "profile_conv4.txt"
    if not path.exists():
        return ""
    parts = []
    for section in path.read_text().split("== ")[1:]:
        who = section.split(":")[0]
        total = re.search(r"Self CPU time total: ([\d.]+)(m?s)", section)
        if total is None:
            continue
        whole = float(total.group(1)) * (1e-3 if total.group(2) == "ms" else 1.0)
        shares = dict.fromkeys(PROFILE_KINDS, 0.0)
        for name, pct in re.findall(r"^\s*(aten::\w+)\s+([\d.]+)%", section, re.M):
            kind = next((k for k, keys in PROFILE_KINDS.items() if any(w in name for w in keys)),
                        None)  # fmt: skip
            if kind:
                shares[kind] += float(pct)
        listed = ", ".join(f"{k} {v:.0f}%" for k, v in shares.items())
        parts.append(f"{who} {whole:.2f} s: {listed}, other {100 - sum(shares.values()):.0f}%")
    return (
        "Where one Conv-4 MAML meta-iteration (meta-batch 32) spends its time, torch.profiler "
        "self CPU by operator (benchmarks/results/profile_conv4.txt): " + "; ".join(parts) + "."
    )


SCENARIOS = {
    "user_cold": "new users, known movies",
    "item_cold": "known users, new movies",
    "user_item_cold": "new users and new movies",
}
ML_BAR = "item mean + user bias"
ML_PROTOCOLS = {"": "13-100 ratings only", "other": "every training user"}
"""Result tag → whose ratings train (``--set task.other_users=true --tag other``: also the
users outside 13-100 ratings; never validation or test users)."""


def _delta(d: dict[str, Any] | None, digits: int = 4) -> str:
    """A paired difference (MAE, MSE), bold where its 95% CI excludes zero."""
    if d is None:
        return "–"
    text = f"{d['mean']:+.{digits}f} ± {d['ci95']:.{digits}f}"
    return f"**{text}**" if abs(d["mean"]) > d["ci95"] else text


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _train_time(m: dict[str, Any]) -> float:
    """A method's training time: its CPU seconds where the grid counted them, else its jobs'
    clocks (results made before the count)."""
    cpu = m.get("train_cpu_seconds")
    return float(m["train_seconds"] if cpu is None else cpu)


def _grid_cost(r: dict[str, Any]) -> str:
    """What a grid's jobs cost from start to end: their CPU time where counted, and the sum of
    their clocks (``cpu_seconds``, a misnomer kept for older files)."""
    clocks = f"{_minutes(r['cpu_seconds'])} of job time"
    cpu = r.get("job_cpu_seconds")
    return clocks if cpu is None else f"{_minutes(cpu)} of CPU in its jobs ({clocks})"


def movielens_table(scenario: str, tag: str = "") -> str:
    """Every method of benchmarks/movielens.py on one scenario: MAE at each support size, and
    at "all" the four metrics, the paired MAE difference to the bar and to the strongest
    baseline, and the training time summed over the folds and seeds."""
    r = _result(f"movielens_100k_{scenario}{tag and '_' + tag}", "movielens")
    supports = r["supports"]
    head = [s.replace("support ", "") for s in supports]
    lines = [
        "| method | " + " | ".join(f"MAE, support {h}" for h in head) + " |",
        "|---|" + "---|" * len(head),
    ]
    for name, m in r["methods"].items():
        cells = [_cell(m["cells"][s]["mae"]) for s in supports]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    last = supports[-1]
    lines += [
        "",
        f"| method, {last} | MAE | RMSE | nDCG@3 | nDCG@10 | Δ MAE vs {ML_BAR} (paired) | "
        "Δ MAE vs strongest baseline (paired) | training time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    vs_bar, vs_best = r["paired_mae_vs_bar"][last], r["paired_mae_vs_strongest_baseline"][last]
    for name, m in r["methods"].items():
        c = m["cells"][last]
        lines.append(
            f"| {name} | {_cell(c['mae'])} | {_cell(c['rmse'])} | {_cell(c['ndcg@3'])} | "
            f"{_cell(c['ndcg@10'])} | {_delta(vs_bar.get(name))} | {_delta(vs_best.get(name))} "
            f"| {_minutes(_train_time(m))} |"
        )
    n = r["methods"][ML_BAR]["cells"][last]["mae"]["n"]
    best = vs_best["reference"]
    prov = r["provenance"]
    total = sum(_train_time(m) for m in r["methods"].values())
    cpu = all(m.get("train_cpu_seconds") is not None for m in r["methods"].values())
    resumed = r.get("jobs_resumed", 0)
    wall = f"this invocation took {_minutes(r['wall_seconds'])} of wall time" + (
        f", {resumed} of its {r['jobs']} jobs resumed from an earlier one" if resumed else ""
    )
    if "cpu_seconds" in r:  # every job from start to end (data, training, tuning, scoring)
        wall += (
            f"; the whole grid, every job from start to end (data, fitting, tuning, training, "
            f"scoring), took {_grid_cost(r)}"
        )
    lines += [
        "",
        f"MovieLens-100K, {SCENARIOS[scenario]} ({scenario}); users with 13-100 ratings, "
        f"{r['queries']} random query ratings each; training ratings: "
        f"{_trained_on(r)}; {len(r['folds'])} folds × "
        f"{len(r['seeds'])} split seeds, mean ± 95% CI over the {n} test users of all of them "
        f"({last}). Δ: mean per-user MAE difference (negative: better), bold where its "
        f"95% CI excludes zero; the strongest baseline ({last}) is {best}. Training "
        f"time: summed over the {len(r['folds']) * len(r['seeds'])} splits (tuning and early "
        f"stopping on validation users included; a network's from its trainer's "
        + ("count" if cpu else "clock")
        + "), each "
        + (
            "job's CPU time on one thread (its process's, which other work on the machine does "
            "not inflate)"
            if cpu
            else "job's wall clock on one thread"
        )
        + f", on {prov['cpu']}; all methods together "
        f"{_minutes(total)}, {_minutes(total / r['workers'])} on {r['workers']} workers ({wall}). "
        + ("" if cpu else "Beside other work a job's clock runs longer than its CPU time. ")
        + "Produced by "
        f"`{shell(r['command'])}`." + _diverged(r),
        provenance_note([r]),
    ]
    return "\n".join(lines)


def _diverged(r: dict[str, Any]) -> str:
    """The runs whose training loss went non-finite (scored at their best validated step), and
    the test users whose adaptation gave non-finite predictions (results that count them)."""
    parts = []
    for name, m in r["methods"].items():
        bad = [s for s in m["splits"] if "diverged_at" in s]
        if bad:
            where = ", ".join(
                f"fold {s['fold']} seed {s['seed']} at step {s['diverged_at']}" for s in bad
            )
            parts.append(f"{name} in {len(bad)} of {len(m['splits'])} splits ({where})")
    adapted = [
        f"{name} {s}: {k} of {m['cells'][s]['mae']['n']} users"
        for name, m in r["methods"].items()
        for s, k in m.get("diverged_users", {}).items()
        if k
    ]
    text = ""
    if parts:
        text += (
            " Training diverged (a non-finite loss) for "
            + "; ".join(parts)
            + ": those splits are scored at their best validated step before it."
        )
    if adapted:
        text += (
            " Test-time adaptations that diverged (NaN or infinite predictions; an infinite one "
            "counts as the scale's bound): " + "; ".join(adapted) + "."
        )
    elif all("diverged_users" in m for m in r["methods"].values()):  # counted, and none
        text += " No test-time adaptation diverged (NaN or infinite predictions; counted per user)."
    return text


def _rl_rows(r: dict[str, Any]) -> list[str]:
    """The rows of a meta-RL result: each method's mean return ± 95% CI after each count of
    adaptation steps beside the paper's figure, its meta-iterations and training time."""
    steps = [str(k) for k in r["steps"]]
    lines = [
        "| method | "
        + " | ".join(f"{k} step{'s' * (k != '1')}" for k in steps)
        + " | meta-iterations | training time |",
        "|---|" + "---|" * (len(steps) + 2),
    ]
    for name, m in r["methods"].items():
        paper = m.get("paper") or []
        cells = [
            f"{m['scores'][k]['mean']:.1f} ± {m['scores'][k]['ci95']:.1f}"
            + (f" (paper {paper[int(k)]:g})" if int(k) < len(paper) else "")
            for k in steps
        ]
        t = _minutes(m["train_seconds"]) if m["steps"] else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['steps'] or '–'} | {t} |")
    return lines


def _rl_protocol(r: dict[str, Any], what: str) -> str:
    """The protocol line under a meta-RL table; ``what``: goals or tasks."""
    prov = r["provenance"]
    return (
        f"{r['protocol']}; {r['tasks']} fixed test {what} (seed {r['seed']}), adaptation step "
        f"sizes {', '.join(f'{a:g}' for a in r.get('test_lr', [0.1]))} (the last for later "
        f"steps); mean return ± 95% CI over the {what}, each {what[:-1]}'s score the mean of "
        f"its episodes. Training on {prov['cpu']}, {prov['threads']} thread(s). Produced by "
        f"`{shell(r['command'])}`."
    )


def rl_navigation_table(name: str = "rl_navigation") -> str:
    """benchmarks/navigation.py: mean return on the test goals after 0-3 adaptation steps, each
    method beside the MAML paper's figure, with training time (``rl_navigation_velocity``: the
    run on raw velocities, before the configs normalized the actions)."""
    r = _result(name, "navigation")
    raw = r["config"]["task"].get("actions", "velocity") == "velocity"
    return "\n".join([
        *_rl_rows(r),
        "",
        _rl_protocol(r, "goals")
        + (
            " Raw velocities: made before `task.actions` existed, so that command now trains "
            "the normalized protocol; `-o task.actions=velocity` on each config gives this one."
            if raw
            else ""
        )
        + (
            " RL²: its policy is a GRU (`configs/rl/rl2-navigation.yaml`; the protocol above "
            "names the other rows' policy) that reads its rewards, and \"k steps\" is the (k+1)-th "
            "episode of each trial, its hidden state carried from the k before (one episode of "
            "experience a step, where the MAML rows adapt on 20); it also adapts within an "
            "episode, so even its first episode is not a 0-step policy in MAML's sense."
            if "RL²" in r["methods"]
            else ""
        ),
        provenance_note([r]),
    ])  # fmt: skip


def rl_locomotion_table(family: str) -> str:
    """benchmarks/locomotion.py: MAML-TRPO on HalfCheetah (``dir`` or ``vel``) within this
    machine's time budget, beside the untrained policy and the paper; how far training got."""
    r = _result(f"rl_halfcheetah_{family}", "locomotion")
    maml = r["methods"]["MAML-TRPO"]
    stop = (
        "stopped there by its time budget" if r["budget_stopped"] else "the whole planned schedule"
    )
    curve = ", ".join(f"{int(s)}: {v:.1f}" for s, v in r["validation"]) or "none yet"
    return "\n".join([
        *_rl_rows(r),
        "",
        _rl_protocol(r, "tasks"),
        f"MAML-TRPO is scored at meta-iteration {r['scored_step']} (its best validation) of the "
        f"{r['reached']} it trained, {stop}, of the {r['planned']} planned; training took "
        f"{_minutes(maml['train_seconds'])}. Validation return after one step, by "
        f"meta-iteration: {curve}.",
        provenance_note([r]),
    ])  # fmt: skip


def scaling_table() -> str:
    """benchmarks/scaling.py: seconds per meta-iteration on 1 and N processes, and the bytes
    one step all-reduces."""
    r = _result("scaling")
    measured = {int(n): t for n, t in r["seconds_per_step"].items()}
    bucket = r["allreduce_bytes_per_step"]
    lines = [
        "| processes | seconds / meta-iteration | speed-up | all-reduce sent a process a step |",
        "|---|---|---|---|",
        *(f"| {n} | {t:.3f} | {measured[1] / t:.2f}× | {_ring_mb(bucket, n)} |"
          for n, t in measured.items()),
    ]  # fmt: skip
    serial, parallel = _amdahl(measured)
    if serial is not None:
        b = r["protocol"].split("meta-batch ")[-1].split(",")[0]
        for n in (4, 8, 16, 32):
            if n > max(measured) and (not b.isdigit() or n <= int(b)):
                t = serial + parallel / n
                ring = _ring_mb(bucket, n)
                lines.append(f"| {n} (projected) | {t:.3f} | {measured[1] / t:.2f}× | {ring} |")
    lines += [
        "",
        f"{r['protocol']}; the trainer's clock over {r['steps']} meta-iterations after "
        f"{r['warmup']}, on {r['provenance']['cpu']}. Each step all-reduces one bucket of "
        f"{bucket / 1e6:.2f} MB ({r['parameters']:,} parameters); a ring all-reduce sends "
        f"2(N−1)/N of it from each process."
        + (
            f" Projected rows: Amdahl's law through the measured ones, {serial:.3f} s a step "
            f"that does not split (what every process repeats, such as drawing the whole "
            f"batch's tasks and the optimizer step, or waits for) and {parallel:.3f} s that "
            f"does; the all-reduce stays under {2 * bucket / 1e6:.2f} MB a process a step at "
            f"any N, so on one machine or a fast network the part that does not split, not "
            f"communication, bounds the speed-up."
            if serial is not None
            else ""
        )
        + f" Produced by `{shell(r['command'])}`.",
        provenance_note([r]),
    ]
    return "\n".join(lines)


def _ring_mb(bucket: float, n: int) -> str:
    return "–" if n == 1 else f"{2 * (n - 1) / n * bucket / 1e6:.2f} MB"


def _amdahl(measured: dict[int, float]) -> tuple[float | None, float]:
    """``(S, P)`` with ``t(N) = S + P / N`` through the measured times of 1 and the largest N."""
    n = max(measured)
    if n == 1 or 1 not in measured:
        return None, 0.0
    parallel = (measured[1] - measured[n]) * n / (n - 1)
    return measured[1] - parallel, parallel


def rl_speed_table() -> str:
    """benchmarks/rl_speed.py: environment steps per second of the rollout engine against a
    Gymnasium SyncVectorEnv loop, and the share of a meta-iteration spent in each part."""
    r = _result("rl_speed")
    sps = r["steps_per_second"]
    lines = [
        f"| {r['envs']} | environment steps / s |",
        "|---|---|",
        *(f"| {name} | {v:,} |" for name, v in sps.items()),
        "",
        "| one MAML-TRPO meta-iteration | share |",
        "|---|---|",
        *(f"| {name} | {100 * v:.1f}% |" for name, v in r["share"].items()),
        "",
        f"The rollout engine is {r['speedup']:g}× the Gymnasium loop (same dynamics, same "
        f"batched policy). A meta-iteration took {r['iteration_seconds']:g} s (mean of "
        f"{r['iterations']}) on {r['provenance']['cpu']}, {r['provenance']['threads']} "
        f"thread(s). Produced by `{shell(r['command'])}`.",
        provenance_note([r]),
    ]
    return "\n".join(lines)


def _trained_on(r: dict[str, Any]) -> str:
    """Whose ratings a MovieLens result trained on, from its recorded config."""
    other = r["config"]["task"].get("other_users", False)
    return (
        "every training user's (`task.other_users=true`)"
        if other
        else ("the training users with 13-100 ratings only")
    )


ML_SHIPPED = {
    "MeLU (Meta-SGD)": "configs/movielens/melu.yaml",
    "MeLU (ridge)": "configs/movielens/melu-ridge.yaml",
}
"""The methods the README's headline shows: the shipped configs."""


def movielens_headline() -> str:
    """The README's table on cold-start recommendation: the bar, the strongest baseline and the
    shipped configs at every support size, user-cold, for each set of training ratings."""
    results = {
        t: _result(f"movielens_100k_user_cold{t and '_' + t}", "movielens") for t in ML_PROTOCOLS
    }
    supports = results[""]["supports"]
    lines = [
        "| MovieLens-100K, new users: MAE | trained on | "
        + " | ".join(supports)
        + " | nDCG@3, all |",
        "|---|---|" + "---|" * (len(supports) + 1),
    ]
    for tag, r in results.items():
        best = r["paired_mae_vs_strongest_baseline"][supports[-1]]["reference"]
        for name in dict.fromkeys([ML_BAR, best, *ML_SHIPPED]):
            if name not in r["methods"]:
                continue
            m = r["methods"][name]
            cells = [_cell(m["cells"][s]["mae"]) for s in supports]
            nd = m["cells"][supports[-1]]["ndcg@3"]
            lines.append(
                f"| {name} | {ML_PROTOCOLS[tag]} | " + " | ".join(cells) + f" | {_cell(nd)} |"
            )
            if name in ML_SHIPPED:
                deltas = [_delta(r["paired_mae_vs_bar"][s].get(name)) for s in supports]
                lines.append("| ↳ paired Δ vs the bar | | " + " | ".join(deltas) + " | |")
    r = results[""]
    lines += [
        "",
        f"Over {len(r['folds'])} folds × {len(r['seeds'])} seeds of test users (the same users "
        "in both protocols); Δ: mean per-user MAE difference to item mean + user bias, bold "
        "where its 95% CI excludes zero. The shipped configs: "
        + ", ".join(f"{k} `{v}`" for k, v in ML_SHIPPED.items())
        + ". All methods and scenarios: [docs/results/movielens.md](docs/results/movielens.md)."
        + _grid_times(results),
        provenance_note(list(results.values())),
    ]
    return "\n".join(lines)


def _grid_times(results: dict[str, dict[str, Any]]) -> str:
    """What each protocol's whole grid cost (every method, fold, seed and support size, every job
    from start to end), where its result file records it."""
    timed = {t: r for t, r in results.items() if "cpu_seconds" in r}
    if not timed:
        return ""

    def counted(r: dict[str, Any]) -> str:  # the operating system's count, where recorded
        if "process_cpu_seconds" not in r or r.get("jobs_resumed"):
            return ""
        shared = r["process_cpu_seconds"] < 0.8 * r["cpu_seconds"]
        return f", {_minutes(r['process_cpu_seconds'])} of CPU counted by the OS for all its " + (
            "processes: they shared the CPU with other work" if shared else "processes"
        )

    def wall(r: dict[str, Any]) -> str:  # a resumed grid's clock saw only its last part
        if r.get("jobs_resumed"):
            return (
                f"no wall time of the whole: {r['jobs_resumed']} of its {r['jobs']} jobs were "
                "done by earlier invocations"
            )
        return f"{_minutes(r['wall_seconds'])} of wall time on {r['workers']} worker" + (
            "s" * (r["workers"] > 1)
        )

    parts = [
        f"{_grid_cost(r)} ({ML_PROTOCOLS[t]}: "
        f"{len(r['methods'])} methods × {len(r['folds']) * len(r['seeds'])} splits"
        f"{counted(r)}; {wall(r)})"
        for t, r in timed.items()
    ]
    return (
        " The whole grid, every job from start to end (data, tuning, training, scoring), one "
        "thread a job, by the jobs' wall clocks (job time) and, where counted, their CPU time: "
        + "; ".join(parts)
        + "."
    )


def replace(text: str, name: str, table: str, page: str = "the page") -> str:
    """``text`` with the body of its ``name`` block replaced by ``table``; ``page`` names the file
    in the error raised when there is no such block."""
    pat = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"{page} has no <!-- BEGIN {name} --> ... <!-- END {name} --> block")
    return pat.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)


FIGURE = re.compile(r"<!-- fig (\S+) -->([^<`\n]*)<!-- /fig -->")
"""An inline figure: ``<!-- fig SPEC -->`` the figure ``<!-- /fig -->``, on one line."""

FORMATS: dict[str, Callable[[Any], str]] = {
    "pm": lambda v: f"{100 * v['mean']:.2f} ± {100 * v['ci95']:.2f}",
    "pct": lambda v: f"{100 * (v['mean'] if isinstance(v, dict) else v):.2f}",
    "pct1": lambda v: f"{100 * (v['mean'] if isinstance(v, dict) else v):.1f}",
    "min": lambda v: f"{v / 60:.0f}",
    "s": lambda v: f"{v:.0f}",
    "int": lambda v: f"{v:,}",
    "num1": lambda v: f"{v:.1f}",
    "num2": lambda v: f"{v:.2f}",
}
"""How :func:`figure` writes a value: ``pm`` a score as "98.90 ± 0.14" (mean and 95% CI in
percent), ``pct`` / ``pct1`` a fraction (or a score's mean) in percent to 2 / 1 decimals, ``min``
/ ``s`` seconds in whole minutes / seconds, ``int`` a count with thousands separators, ``num1`` /
``num2`` a number to 1 / 2 decimals."""


def figure(spec: str) -> str:
    """The figure ``FILE:PATH:FORMAT`` names: benchmarks/results/FILE.json (FILE may name a
    subfolder, e.g. ``experiments/omniglot_relation-5w1s_mean``), the value at the dotted PATH
    (``validation@2000`` is the validation accuracy logged at step 2,000; a number indexes a
    list: ``rows.0.adapted_query_loss.mean``), written by
    :data:`FORMATS`. A spec naming no result, key or format is refused, naming it."""
    try:
        name, path, form = spec.split(":")
    except ValueError:
        raise SystemExit(f"figure {spec!r}: write it as FILE:PATH:FORMAT") from None
    file = RESULTS / f"{name}.json"
    if not file.is_file():
        raise SystemExit(f"figure {spec!r}: no results file {_shown(file)}")
    value: Any = json.loads(file.read_text())
    for key in path.split("."):
        if "@" in key:
            key, at = key.split("@")
            found = [e for e in value.get(key, []) if str(e.get("step")) == at]
            value = found[0]["accuracy"] if found else None
        elif isinstance(value, list):
            value = value[int(key)] if key.isdigit() and int(key) < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            raise SystemExit(f"figure {spec!r}: {_shown(file)} has no {path}")
    if form not in FORMATS:
        raise SystemExit(f"figure {spec!r}: format {form!r} is not one of {sorted(FORMATS)}")
    return FORMATS[form](value)


def fill_figures(text: str) -> str:
    """``text`` with every inline figure marker refilled by :func:`figure`."""
    return FIGURE.sub(lambda m: f"<!-- fig {m.group(1)} -->{figure(m.group(1))}<!-- /fig -->", text)


MEASURED = re.compile(r"\d+\.\d+ ?(?:%|±)")
CITED = re.compile(r"(?:paper|paper's|humans:)\s*$")


def hand_typed(text: str) -> list[str]:
    """The measured-looking figures of a page typed outside a table block, an inline figure
    marker or code (each line once): a decimal with a percent sign or a ± interval. A figure
    cited from a paper (``paper 98.7``, written without a percent sign) or from Lake et al.
    (``humans: 4.5%``) is not measured here and is allowed."""
    text = re.sub(r"<!-- BEGIN (\w+) -->.*?<!-- END \1 -->", "", text, flags=re.S)
    text = FIGURE.sub("", re.sub(r"```.*?```|`[^`]*`", "", text, flags=re.S))
    found = []
    for m in MEASURED.finditer(text):
        before = text[max(0, m.start() - 12) : m.start()]
        if not CITED.search(before):
            line = text.count("\n", 0, m.start())
            found.append(text.split("\n")[line].strip())
    return list(dict.fromkeys(found))


TABLES = {
    "headline": headline_table,
    "index_headline": lambda: headline_table("results/omniglot.md"),
    "demo": demo_table,
    "usage_demo": demo_table,
    "sinusoid": sinusoid_table,
    "inner_optimizers": inner_optimizers_table,
    "omniglot": omniglot_table,
    "speed": speed_table,
    "batching": batching_table,
    "autocast": autocast_table,
    "step_variants": step_variants_table,
    "features": features_table,
    "easyfsl": easyfsl_table,
    "embed_speed": embed_speed_table,
    "episode_speed": episode_speed_table,
    "miniimagenet_speed": miniimagenet_speed_table,
    "downsample_speed": downsample_speed_table,
    "first_order_gap": first_order_gap_table,
    "movielens_headline": movielens_headline,
    **{f"movielens_{s}": (lambda s=s: movielens_table(s)) for s in SCENARIOS},
    "movielens_user_cold_other": lambda: movielens_table("user_cold", "other"),
    "rl_navigation": rl_navigation_table,
    "rl_navigation_velocity": lambda: rl_navigation_table("rl_navigation_velocity"),
    "rl_navigation_rl2": lambda: rl_navigation_table("rl_navigation_rl2"),
    "rl_halfcheetah_dir": lambda: rl_locomotion_table("dir"),
    "rl_halfcheetah_vel": lambda: rl_locomotion_table("vel"),
    "rl_speed": rl_speed_table,
    "scaling": scaling_table,
}
"""Block name → the function that renders its table."""

RESULTS_DOCS = ROOT / "docs" / "results"
PAGES = {
    "headline": ROOT / "README.md",
    "index_headline": ROOT / "docs" / "index.md",
    "demo": ROOT / "README.md",
    "usage_demo": ROOT / "docs" / "usage.md",
    "sinusoid": RESULTS_DOCS / "sinusoid.md",
    "inner_optimizers": RESULTS_DOCS / "sinusoid.md",
    "omniglot": RESULTS_DOCS / "omniglot.md",
    "first_order_gap": RESULTS_DOCS / "omniglot.md",
    "downsample_speed": RESULTS_DOCS / "downsampling.md",
    "speed": RESULTS_DOCS / "speed.md",
    "batching": ROOT / "docs" / "design.md",
    "autocast": RESULTS_DOCS / "speed.md",
    "step_variants": RESULTS_DOCS / "speed.md",
    "easyfsl": RESULTS_DOCS / "speed.md",
    "episode_speed": RESULTS_DOCS / "speed.md",
    "embed_speed": RESULTS_DOCS / "speed.md",
    "features": RESULTS_DOCS / "features.md",
    "miniimagenet_speed": RESULTS_DOCS / "miniimagenet.md",
    "movielens_headline": ROOT / "README.md",
    **{f"movielens_{s}": RESULTS_DOCS / "movielens.md" for s in SCENARIOS},
    "movielens_user_cold_other": RESULTS_DOCS / "movielens.md",
    "rl_navigation": RESULTS_DOCS / "rl.md",
    "rl_navigation_velocity": RESULTS_DOCS / "rl.md",
    "rl_navigation_rl2": RESULTS_DOCS / "rl.md",
    "rl_halfcheetah_dir": RESULTS_DOCS / "rl.md",
    "rl_halfcheetah_vel": RESULTS_DOCS / "rl.md",
    "rl_speed": RESULTS_DOCS / "rl.md",
    "scaling": ROOT / "README.md",
}
"""Block name → the page whose ``<!-- BEGIN name -->`` block holds its table."""


def render(table: Callable[[], str]) -> str:
    """One table, or the line that says which benchmark script would fill it."""
    try:
        return table()
    except NoResults as missing:
        return str(missing)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def update(pages: dict[str, Path] | None = None) -> list[Path]:
    """Fill every block of ``pages`` (default :data:`PAGES`); returns the files that changed.

    A page is written only when its text changes, so a second run leaves every file as it is.
    """
    pages = PAGES if pages is None else pages
    changed = []
    for path in dict.fromkeys(pages.values()):
        old = path.read_text()
        text = old
        for name in [n for n, p in pages.items() if p == path]:
            text = replace(text, name, render(TABLES[name]), _shown(path))
        text = fill_figures(text)
        if text != old:
            path.write_text(text)
            changed.append(path)
    return changed


def main() -> None:
    changed = update()
    for path in dict.fromkeys(PAGES.values()):
        print(f"{'updated' if path in changed else 'unchanged'} {_shown(path)}")


if __name__ == "__main__":
    main()
