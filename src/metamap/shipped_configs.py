"""The configs shipped with metamap: the published protocols of ``configs/`` in a checkout,
installed with the package as ``metamap/configs/<group>/<name>.yaml``.

A shipped config is named by its path under that folder without ``.yaml``, e.g.
``omniglot/protonet-5w1s``; ``metamap configs`` lists them, ``metamap configs NAME`` prints one
and ``metamap train NAME`` trains it (when ``NAME`` is not a file).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from metamap.errors import ConfigError

__all__ = ["ShippedConfig", "shipped_config", "shipped_configs", "shipped_configs_dir"]

SUMMARY_CHARS = 72
"""The longest one-line description :func:`shipped_configs` gives (longer ones end in ``…``)."""


@dataclass(frozen=True)
class ShippedConfig:
    """One shipped YAML config: its name (``group/stem``), file and one-line description."""

    name: str
    path: Path
    description: str


def shipped_configs_dir() -> Path:
    """The folder the shipped configs are installed in (``metamap/configs``)."""
    return Path(str(files("metamap").joinpath("configs")))


def shipped_configs() -> list[ShippedConfig]:
    """Every shipped config, sorted by name."""
    root = shipped_configs_dir()
    paths = sorted(root.rglob("*.yaml")) if root.is_dir() else []
    return [
        ShippedConfig(p.relative_to(root).with_suffix("").as_posix(), p, _summary(p)) for p in paths
    ]


def shipped_config(name: str) -> ShippedConfig:
    """The shipped config called ``name`` (``omniglot/protonet-5w1s``; a ``.yaml`` suffix and a
    leading ``configs/`` are accepted), or a :class:`ConfigError` naming the closest ones."""
    key = (
        name.strip()
        .replace("\\", "/")
        .removeprefix("./")
        .removeprefix("configs/")
        .removesuffix(".yaml")
    )
    known = {c.name: c for c in shipped_configs()}
    if key in known:
        return known[key]
    same_stem = [n for n in known if key and n.rsplit("/", 1)[-1] == key]
    close = same_stem + [
        n for n in difflib.get_close_matches(key, known, n=3, cutoff=0.6) if n not in same_stem
    ]
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(f"no shipped config is called {name!r}; {hint}`metamap configs` lists them")


def _summary(path: Path) -> str:
    """The first phrase of a config's leading comment: up to its first ``:``, ``;`` or sentence
    end outside brackets, shortened to :data:`SUMMARY_CHARS` (``""`` without a comment)."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text:
            if lines:
                break
            continue
        lines.append(text)
    text = " ".join(lines)
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        after = text[i + 1 : i + 2]
        if depth == 0 and ch in ":;." and after in ("", " "):
            text = text[:i]
            break
    if len(text) > SUMMARY_CHARS:
        text = text[: SUMMARY_CHARS - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text
