"""The code of the documentation runs: every ``metamap: …`` snippet of docs/migration.md, and the
README's Python quick-start (with fewer steps), each in a fresh namespace and an empty working
directory, on the CPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MIGRATION = ROOT / "docs" / "migration.md"
README = ROOT / "README.md"

SNIPPET = re.compile(r'^```python title="(metamap[^"]*)"\n(.*?)^```$', re.M | re.S)
"""A fenced block titled ``metamap…``: the snippets that must run (the other libraries' are not)."""

QUICKSTART_SHORTER = {"range(2000)": "range(20)", "fixed_tasks(600,": "fixed_tasks(30,"}
"""The README quick-start, as written, trains 2,000 meta-iterations and evaluates 600 tasks;
the test runs the same code with fewer of both (each replacement must apply exactly once)."""


def migration_snippets() -> dict[str, str]:
    found = SNIPPET.findall(MIGRATION.read_text())
    titles = [t for t, _ in found]
    assert len(titles) == len(set(titles)), f"snippet titles must be unique: {titles}"
    return dict(found)


def readme_quickstart() -> str:
    text = README.read_text()
    section = text.split("## Python quick-start", 1)[1]
    m = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert m is not None, "README.md: no python block under '## Python quick-start'"
    code = m.group(1)
    for old, new in QUICKSTART_SHORTER.items():
        assert code.count(old) == 1, f"README quick-start: expected one {old!r}"
        code = code.replace(old, new)
    return code


def run(title: str, code: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(cwd)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, f"<{title}>", "exec"), {"__name__": "__snippet__"})
    except Exception as e:
        pytest.fail(f"snippet {title!r} raised {type(e).__name__}: {e}")
    finally:
        torch.set_num_threads(threads)


def test_the_migration_page_has_the_snippets_it_promises() -> None:
    titles = list(migration_snippets())
    assert len(titles) >= 7, titles
    text = MIGRATION.read_text()
    for api in (
        "l2l.algorithms.MAML",
        "maml.clone()",
        "learner.adapt(",
        "l2l.data.TaskDataset",
        "NWays",
        "KShots",
        "higher.innerloop_ctx",
        "diffopt.step(",
        "torchopt.MetaAdam",
        "torchmeta.datasets.helpers import omniglot",
        "BatchMetaDataLoader",
        "MetaModule",
        "PrototypicalNetworks(backbone)",
        "TaskSampler",
        "process_support_set(",
    ):
        assert api in text, api


@pytest.mark.parametrize("title", list(migration_snippets()))
def test_migration_snippet_runs(
    title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(title, migration_snippets()[title], tmp_path, monkeypatch)


def test_readme_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("README quick-start", readme_quickstart(), tmp_path, monkeypatch)
