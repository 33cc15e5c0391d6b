"""The dependency picture is what the code does: ``cli → train/features → learners → models``,
``learners → core``, ``train → tasks → data``, ``train → rl → learners → models``
(reinforcement learning: rollouts, returns, baselines, the policy learners; it may also use core
and tasks); the library never imports its command line.

Checked twice: statically, on every ``import`` of every module (top-level and inside
functions), and at run time, on what ``sys.modules`` holds after importing a package alone.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "metamap"

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "section": set(),
    "fileio": {"errors"},
    "progress": set(),
    "core": {"errors"},
    "models": {"errors", "section"},
    "learners": {"core", "models", "errors", "section"},
    "data": {"errors", "fileio", "progress", "section"},
    "tasks": {"core", "data", "errors", "section"},
    "recsys": {"core", "errors"},
    "rl": {"core", "tasks", "models", "learners", "errors", "section"},
    "train": {
        "core",
        "learners",
        "models",
        "tasks",
        "data",
        "recsys",
        "rl",
        "errors",
        "fileio",
        "progress",
        "section",
    },
    "recommend": {"core", "learners", "models", "tasks", "data", "recsys", "train", "errors"},
    "features": {
        "core",
        "learners",
        "models",
        "tasks",
        "data",
        "train",
        "errors",
        "fileio",
        "progress",
    },
    "viz": {"core", "learners", "tasks", "train", "features", "recsys", "rl", "errors"},
    "defaults": set(),
    "shipped_configs": {"errors"},
}
"""What each part of the library may import (besides itself); ``cli`` and ``cli_features``
(the command line) may import anything, and nothing imports them."""


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "metamap" or m.startswith("metamap.")}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, p))
    return out


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_every_import_follows_the_dependency_picture(module: str, path: Path) -> None:
    part = _part(module)
    if part in ("cli", "cli_features", "__init__", "__main__"):  # the command line
        return
    wrong = []
    for imported in _imports(path):
        target = _part(imported) if imported != "metamap" else "__init__"
        if target == part:
            continue
        if target in ("cli", "cli_features") or target not in ALLOWED[part]:
            wrong.append(imported)
    assert not wrong, f"{module} imports {wrong}; {part} may import only {sorted(ALLOWED[part])}"


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m for m in json.loads(out.stdout) if m.startswith("metamap")}


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import metamap.learners", {"data", "tasks", "train", "fileio", "features", "cli"}),
        ("import metamap.core", {"data", "tasks", "train", "learners", "models", "cli"}),
        ("import metamap.models", {"data", "tasks", "train", "learners", "core", "cli"}),
        ("import metamap.rl", {"data", "tasks", "train", "features", "cli"}),
        ("import metamap.train", {"cli", "cli_features", "features"}),
        ("import metamap.features", {"cli", "cli_features"}),
        ("import metamap", {"data", "tasks", "train", "learners", "models", "cli"}),
    ],
)
def test_importing_a_package_loads_only_what_it_depends_on(
    statement: str, forbidden: set[str]
) -> None:
    loaded = {_part(m) for m in _loaded_after(statement)}
    assert not loaded & forbidden, f"{statement} loaded {sorted(loaded & forbidden)}"
