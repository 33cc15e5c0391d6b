"""benchmarks/make_tables.py: every README results block has a renderer, and an empty results
folder renders a line naming a benchmark script that exists (not a traceback)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def make_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_tables", ROOT / "benchmarks" / "make_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)  # no results written yet
    return module


def test_readme_blocks_and_renderers_agree(make_tables: ModuleType) -> None:
    blocks = re.findall(r"<!-- BEGIN (\w+) -->", (ROOT / "README.md").read_text())
    assert sorted(blocks) == sorted(make_tables.TABLES)


def test_missing_results_name_the_script_that_writes_them(make_tables: ModuleType) -> None:
    for name, table in make_tables.TABLES.items():
        line = make_tables.render(table)
        m = re.fullmatch(r"_No results yet: run `python benchmarks/(\w+)\.py`\._", line)
        assert m is not None, (name, line)
        assert (ROOT / "benchmarks" / f"{m.group(1)}.py").is_file(), (name, line)


def test_a_readme_without_the_block_is_refused(make_tables: ModuleType) -> None:
    with pytest.raises(SystemExit, match="no <!-- BEGIN omniglot -->"):
        make_tables.replace("# README\n", "omniglot", "| table |")
    text = "a\n<!-- BEGIN omniglot -->\nold\n<!-- END omniglot -->\nb\n"
    assert make_tables.replace(text, "omniglot", "new") == text.replace("old", "new")
