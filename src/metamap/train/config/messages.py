"""Pydantic's validation errors of a run configuration as one line a user can act on.

Each problem names its key (``train.steps``), what is wrong and, where it can, what would be
right: the closest known key for a misspelt one, the registered names for an unknown learner,
network, dataset or task family, how to quote a number meant as text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from metamap.section import OWN_ERROR, Section, clip, show
from metamap.train.config.schema import REGISTERED_SECTIONS, RunConfig

__all__ = ["format_errors", "is_number"]


_MAX_PARTS = 8
"""The most problems one :class:`ConfigError` lists (a hostile file could have thousands)."""


def format_errors(e: ValidationError) -> str:
    """Pydantic's errors as one line: ``invalid configuration: <problem>; <problem>``."""
    parts = []
    errors = _one_union_member(e.errors())
    for err in errors[:_MAX_PARTS]:
        loc = [str(p) for p in err["loc"]]
        none: tuple[str, str, Mapping[str, type[Section]] | None] = ("", "", None)
        kind, key, registry = REGISTERED_SECTIONS.get(loc[0], none) if loc else none
        at = 2 if loc[:1] == ["extra_domains"] else 1  # after the list's index
        if registry is not None and len(loc) > at and loc[at] in registry:
            del loc[at]  # the union member pydantic tried: the section's own name
        where = clip(".".join(loc) or "<root>")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == OWN_ERROR:
            ctx = err.get("ctx") or {}
            key = str(ctx.get("key", ""))
            where = clip(".".join([*loc, key] if key else loc) or "<root>")
            parts.append(f"'{where}': {ctx.get('detail', msg)}")
        elif err["type"] == "union_tag_invalid" and registry is not None:  # an unknown name
            tag = (err.get("ctx") or {}).get("tag")
            parts.append(
                f"'{where}.{key}' {tag!r} is not a {kind}; choose one of "
                f"{', '.join(sorted(registry))}"
            )
        elif err["type"] == "extra_forbidden":
            near = _near_key(loc)
            hint = f"did you mean '{near}'?" if near else "check the spelling;"
            parts.append(f"unknown key '{where}' ({hint} see configs/ for examples)")
        elif not loc:  # a check across sections: its input is the whole config
            parts.append(msg)
        elif isinstance(err.get("input"), Mapping):  # a section's own check: not its whole input
            parts.append(f"'{where}': {msg}")
        elif err["type"] == "string_type" and is_number(err.get("input")):  # YAML read a number
            got = show(err.get("input"))
            parts.append(f"'{where}': {msg} (got the number {got}; quote it as text: \"{got}\")")
        else:
            parts.append(f"'{where}': {msg} (got {show(err.get('input'))})")
    if len(errors) > _MAX_PARTS:
        parts.append(f"and {len(errors) - _MAX_PARTS} more")
    return "invalid configuration: " + "; ".join(" ".join(p.split()) for p in parts)


_MEMBER = re.compile(r"(?:int|float|str|bool|[a-z]+(?:-[a-z]+)+|[a-z]+\[.*\])(?:\[.*\])?")
"""How pydantic names a member of a type union in an error's location (``constrained-float``,
``list[constrained-float]``); a config key has neither a hyphen nor brackets."""


def _one_union_member(errors: Sequence[Any]) -> list[Any]:
    """Each value that fits no member of a type union (``inner_lr: float | list[float]``)
    reported once, against the member of its own shape: a list against the list member, else
    against the others; pydantic reports it against every member, naming each in the
    location."""
    member_at: list[int | None] = []
    given_list: dict[tuple[Any, ...], bool] = {}
    for err in errors:
        loc = err["loc"]
        tags = (i for i, p in enumerate(loc) if isinstance(p, str) and _MEMBER.fullmatch(p))
        at = next(tags, None)
        member_at.append(at)
        if at is not None and len(loc) == at + 1:  # the value itself, not an item of it
            key = tuple(loc[:at])
            given_list[key] = given_list.get(key, False) or isinstance(err["input"], list | tuple)
    out = []
    for err, at in zip(errors, member_at, strict=True):
        if at is None:
            out.append(err)
            continue
        loc = err["loc"]
        listed = loc[at].startswith(("list[", "tuple["))
        if given_list.get(tuple(loc[:at]), listed) == listed:
            out.append({**err, "loc": (*loc[:at], *loc[at + 1 :])})
    return out


def _near_key(loc: Sequence[str]) -> str | None:
    """The key the unknown one at ``loc`` most likely misspells (``train.stpes``:
    ``train.steps``), among its section's keys (of every registered section, for ``model``,
    ``learner``, ``data`` and ``task``, whose member is unknown here), else the same key of
    another section (``train.ways``, or ``ways`` at the top: ``task.ways``); ``None`` if there
    is none."""
    near = _near_in_section(loc)
    if near is not None or len(loc) > 2 or loc[0] == "extra_domains":
        return near
    name = loc[-1]
    for other in ("data", "task", "model", "learner", "train", "eval"):
        if other != loc[0] and _near_in_section([other, name]) == f"{other}.{name}":
            return f"{other}.{name}"
    return None


def _near_in_section(loc: Sequence[str]) -> str | None:
    *path, name = loc
    at = 2 if path[:1] == ["extra_domains"] else 1
    if len(path) > at:  # inside a nested setting (data.augment.…): not worth a guess
        return None
    section: Any = RunConfig
    if path:
        registry = REGISTERED_SECTIONS.get(path[0], ("", "", None))[2]
        field = RunConfig.model_fields.get(path[0])
        if registry is not None:
            keys = {k for member in registry.values() for k in member.model_fields}
            return _closest(name, keys, path)
        section = field.annotation if field is not None else None
        if not (isinstance(section, type) and issubclass(section, Section)):
            return None
    return _closest(name, set(section.model_fields), path)


def _closest(name: str, keys: set[str], path: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(name, sorted(keys), n=1, cutoff=0.75)
    return ".".join([*path, found[0]]) if found else None


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or a float (not a bool), as YAML reads ``2024`` or ``1.5``."""
    return isinstance(value, int | float) and not isinstance(value, bool)
