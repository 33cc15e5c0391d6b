"""benchmarks/make_tables.py: every results block of README.md and docs/ has a renderer and a page,
the committed tables are what the real results files generate (a second run changes nothing), and
an empty results folder renders a line naming a benchmark script that exists (not a traceback)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- BEGIN (\w+) -->\n(.*?)<!-- END \1 -->", re.S)


def load_make_tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_tables", ROOT / "benchmarks" / "make_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def real_tables() -> ModuleType:
    """make_tables on the real benchmarks/results."""
    return load_make_tables()


@pytest.fixture()
def make_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """make_tables on an empty results folder."""
    module = load_make_tables()
    monkeypatch.setattr(module, "RESULTS", tmp_path)  # no results written yet
    return module


def documentation_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_block_has_a_renderer_and_sits_in_its_page(real_tables: ModuleType) -> None:
    assert sorted(real_tables.PAGES) == sorted(real_tables.TABLES)
    where = Counter(
        (name, page)
        for page in documentation_pages()
        for name in re.findall(r"<!-- BEGIN (\w+) -->", page.read_text())
    )
    assert all(n == 1 for n in where.values()), "a block appears twice"
    assert sorted(where) == sorted(real_tables.PAGES.items())
    assert real_tables.PAGES["headline"] == ROOT / "README.md"


def test_committed_tables_are_the_generated_ones_and_a_second_run_changes_nothing(
    real_tables: ModuleType, tmp_path: Path
) -> None:
    copies = {}
    for page in dict.fromkeys(real_tables.PAGES.values()):
        copy = tmp_path / page.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, copy)
        copies[page] = copy
    pages = {name: copies[page] for name, page in real_tables.PAGES.items()}
    changed = real_tables.update(pages)
    stale = [str(p.relative_to(tmp_path)) for p in changed]
    assert not stale, f"tables out of date in {stale}: run `python benchmarks/make_tables.py`"
    assert real_tables.update(pages) == []
    for page, copy in copies.items():
        assert copy.read_text() == page.read_text()
    for name, page in real_tables.PAGES.items():  # real results: no "run this script" lines
        body = dict(BLOCK.findall(page.read_text()))[name]
        assert "_No results yet" not in body, name
        assert body.startswith("| "), name


def test_the_headline_table_links_to_the_full_one(real_tables: ModuleType) -> None:
    table = real_tables.headline_table()
    assert "(docs/results/omniglot.md)" in table
    assert (ROOT / "docs" / "results" / "omniglot.md").is_file()
    rows = [line for line in table.split("\n") if line.startswith("| ")][1:]  # after the header
    assert rows and rows[0].startswith("| ProtoNet |")


def test_missing_results_name_the_script_that_writes_them(make_tables: ModuleType) -> None:
    for name, table in make_tables.TABLES.items():
        line = make_tables.render(table)
        m = re.fullmatch(r"_No results yet: run `python benchmarks/(\w+)\.py`\._", line)
        assert m is not None, (name, line)
        assert (ROOT / "benchmarks" / f"{m.group(1)}.py").is_file(), (name, line)


def test_a_page_without_the_block_is_refused(make_tables: ModuleType) -> None:
    with pytest.raises(SystemExit, match=re.escape("docs/x.md has no <!-- BEGIN omniglot -->")):
        make_tables.replace("# README\n", "omniglot", "| table |", "docs/x.md")
    text = "a\n<!-- BEGIN omniglot -->\nold\n<!-- END omniglot -->\nb\n"
    assert make_tables.replace(text, "omniglot", "new") == text.replace("old", "new")


def test_lakes_error_is_shown_only_for_models_that_never_saw_a_run_image(
    real_tables: ModuleType,
) -> None:
    def row(protocol: str, lake: dict[str, object]) -> dict[str, object]:
        return {"lake_one_shot": lake, "config_dump": {"data": {"protocol": protocol}}}

    checked = row("vinyals", {"error": 0.05, "seen_run_images": 0})
    assert real_tables.lake_unseen(checked) and "5.0%" in real_tables._lake_cell(checked)
    seen = row("metadataset", {"error": 0.03, "seen_run_images": 312})
    assert real_tables._lake_cell(seen) == " | – (saw run images) | "
    # Older results have no pixel check: the split decides (the Vinyals split holds run images).
    assert not real_tables.lake_unseen(row("vinyals", {"error": 0.03}))
    assert real_tables.lake_unseen(row("metadataset", {"error": 0.1}))
    assert real_tables._lake_cell(row("vinyals", {"error": None})) == " | n/a | "
    # a model that cannot take the runs (a fixed 5-way head) is n/a, whatever else it counted
    five_way = {"error": None, "reason": "support labels must lie in [0, 5)", "seen_run_images": 9}
    assert real_tables._lake_cell(row("vinyals", five_way)) == " | n/a | "


def test_movielens_notes_name_diverged_training_and_diverged_adaptations(
    real_tables: ModuleType,
) -> None:
    def method(splits: list[dict[str, int]], diverged: dict[str, int] | None) -> dict[str, object]:
        m: dict[str, object] = {
            "splits": splits,
            "cells": {"support 5": {"mae": {"n": 40}}, "support all": {"mae": {"n": 40}}},
        }
        if diverged is not None:  # results from before the count have none
            m["diverged_users"] = diverged
        return m

    quiet = {"methods": {"a": method([{"fold": 0, "seed": 0}], None)}}
    assert real_tables._diverged(quiet) == ""
    loud = {
        "methods": {
            "MeLU (Reptile)": method(
                [{"fold": 0, "seed": 0, "diverged_at": 120}], {"support 5": 2, "support all": 0}
            ),
            "b": method([{"fold": 0, "seed": 0}], {"support 5": 0, "support all": 0}),
        }
    }
    text = real_tables._diverged(loud)
    assert "Training diverged (a non-finite loss) for MeLU (Reptile) in 1 of 1 splits" in text
    assert "adaptations that diverged" in text and "MeLU (Reptile) support 5: 2 of 40 users" in text
    assert "support all" not in text and " b " not in text
    counted = {"methods": {"b": method([{"fold": 0, "seed": 0}], {"support 5": 0})}}
    assert real_tables._diverged(counted) == (
        " No test-time adaptation diverged (NaN or infinite predictions; counted per user)."
    )  # counted and none: said, unlike results from before the count (quiet)


def test_an_inline_figure_is_read_from_its_result_file(make_tables: ModuleType) -> None:
    result = {
        "scores": {"5w1s": {"mean": 0.98904, "ci95": 0.00142}},
        "validation": [{"step": 500, "accuracy": 0.9123}, {"step": 1000, "accuracy": 0.95}],
        "train_seconds": 3825.8,
        "steps_trained": 8500,
        "rows": [{"loss": {"mean": 3.8589}}],
    }
    (make_tables.RESULTS / "experiments").mkdir()
    (make_tables.RESULTS / "experiments" / "run.json").write_text(json.dumps(result))
    assert make_tables.figure("experiments/run:scores.5w1s:pm") == "98.90 ± 0.14"
    assert make_tables.figure("experiments/run:validation@500:pct1") == "91.2"
    assert make_tables.figure("experiments/run:train_seconds:min") == "64"
    assert make_tables.figure("experiments/run:steps_trained:int") == "8,500"
    assert make_tables.figure("experiments/run:rows.0.loss.mean:num2") == "3.86"
    stale = "It scores <!-- fig experiments/run:scores.5w1s:pct -->97.00<!-- /fig -->%."
    assert make_tables.fill_figures(stale) == stale.replace("97.00", "98.90")
    for spec, why in [
        ("experiments/gone:scores.5w1s:pm", "no results file"),
        ("experiments/run:scores.20w1s:pm", "has no scores.20w1s"),
        ("experiments/run:validation@700:pct", "has no validation@700"),
        ("experiments/run:rows.3.loss:num2", "has no rows.3.loss"),
        ("experiments/run:steps_trained:hex", "format 'hex' is not one of"),
        ("experiments/run:steps_trained", "write it as FILE:PATH:FORMAT"),
    ]:
        with pytest.raises(SystemExit, match=re.escape(why)):
            make_tables.figure(spec)


def test_no_page_types_a_measured_figure_by_hand(real_tables: ModuleType) -> None:
    """Outside its tables and inline figure markers a page states no measured figure (a decimal
    with % or ±): a hand-typed figure goes stale when its result is re-made."""
    typed = "Validation rose to 97.8% at 4,000; it scores 98.29 ± 0.17 against the paper's 98.7%."
    assert real_tables.hand_typed(typed) == [typed]
    for page in documentation_pages():
        assert real_tables.hand_typed(page.read_text()) == [], page.relative_to(ROOT)
        if real_tables.FIGURE.search(page.read_text()):  # make_tables refills it
            assert page in real_tables.PAGES.values(), page.relative_to(ROOT)
        # A marker that opens a line is a block of its own to Markdown: it splits the paragraph.
        assert not re.search(r"^\s*<!-- fig ", page.read_text(), re.M), page.relative_to(ROOT)


def test_a_resumed_movielens_grid_states_no_wall_time_of_the_whole(
    real_tables: ModuleType,
) -> None:
    """A grid whose jobs an earlier invocation did was timed only for its last part: its
    wall clock is not the grid's, so the table says so instead of quoting it."""
    fresh = {
        "cpu_seconds": 1950.0,
        "process_cpu_seconds": 2000.0,
        "wall_seconds": 990.0,
        "workers": 2,
        "jobs": 150,
        "jobs_resumed": 0,
        "methods": ["a", "b"],
        "folds": [0, 1],
        "seeds": [0],
    }
    line = real_tables._grid_times({"": fresh})
    assert "32.5 min of job time" in line and "16.5 min of wall time on 2 workers" in line
    assert "33.3 min of CPU counted by the OS for all its processes;" in line
    shared = {**fresh, "process_cpu_seconds": 960.0}  # half a core a job: other work ran too
    assert "16.0 min of CPU counted by the OS for all its processes: they shared the CPU" in (
        real_tables._grid_times({"": shared})
    )
    resumed = {**fresh, "wall_seconds": 3.1, "jobs_resumed": 150}
    line = real_tables._grid_times({"": resumed})
    assert "wall time on" not in line and "counted by the OS" not in line
    assert "no wall time of the whole: 150 of its 150 jobs were done by earlier" in line


def test_times_are_cpu_time_where_counted_and_labelled_clocks_where_not(
    real_tables: ModuleType,
) -> None:
    """A result that counted CPU time is timed by it (other work on the machine does not inflate
    it); an older one keeps its clock figures, called job time."""
    grid = {"cpu_seconds": 1950.0, "wall_seconds": 990.0, "workers": 2, "jobs": 150,
            "methods": ["a"], "folds": [0], "seeds": [0]}  # fmt: skip
    assert real_tables._grid_cost(grid) == "32.5 min of job time"
    counted = {**grid, "job_cpu_seconds": 990.0}
    assert real_tables._grid_cost(counted) == "16.5 min of CPU in its jobs (32.5 min of job time)"
    assert "16.5 min of CPU in its jobs" in real_tables._grid_times({"": counted})
    assert real_tables._train_time({"train_seconds": 600.0}) == 600.0
    method = {"train_seconds": 600.0, "train_cpu_seconds": 290.0}
    assert real_tables._train_time(method) == 290.0
    row = {"device": "cpu", "train_seconds": 7200.0}
    assert real_tables._cpu_minutes(row) == ""  # trained before the count
    assert real_tables._cpu_minutes({**row, "train_cpu_seconds": 3600.0}) == " (60 CPU min)"
    gpu = {"device": "cuda", "train_seconds": 600.0, "train_cpu_seconds": 590.0}
    assert real_tables._cpu_minutes(gpu) == ""  # a GPU row's cost is not its host's CPU


def test_inner_rules_are_judged_task_by_task(make_tables: ModuleType, tmp_path: Path) -> None:
    """The line under the inner-update table says better / worse / not told apart from each
    variant's paired interval, and flags a rule that is worse after 10 steps than after 5 only
    where the per-task differences say so."""
    real = json.loads((ROOT / "benchmarks" / "results" / "inner_optimizers.json").read_text())
    rows = real["variants"]
    control, adam = rows["maml-sgd"], rows["maml-adam"]
    adam["vs_control"]["5-shot"]["5"] = {"mean": -0.5, "ci95": 0.1, "n": 600}  # better
    rows["maml-momentum"]["vs_control"]["5-shot"]["5"] = {"mean": 0.05, "ci95": 0.1, "n": 600}
    five = control["scores"]["5-shot"]["5"]["values"]
    control["scores"]["5-shot"]["10"]["values"] = [v + 1.0 for v in five]  # every task worse
    (tmp_path / "inner_optimizers.json").write_text(json.dumps(real))
    line = make_tables.inner_optimizers_table().split("\n\n")[1]
    assert "better than plain steps: MAML (Adam; 0.01)" in line
    assert "not told from plain steps: MAML (SGD, momentum 0.9; 0.01)" in line
    worse_later = line.split("Worse after 10 steps than after 5")[1]
    assert "MAML (SGD; 0.01)" in worse_later
    assert "Reptile (SGD; 0.01)" not in worse_later  # its 10-step scores are its own
