"""The base of every config section: strict about numbers, closed to unknown keys (a utility
like :mod:`metamap.errors`, importable from any layer).

Each part of metamap that is configured (a learner, a problem, the run's sections) declares its
section as a subclass of :class:`Section`, a pydantic model that refuses unknown keys and, beyond
pydantic's lax checks, booleans where numbers are expected and text or fractions for integers
(YAML turns a stray ``yes`` into ``True`` silently). No data or file code here.
"""

from __future__ import annotations

import reprlib
import types
from collections.abc import Mapping, MutableMapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "OWN_ERROR",
    "Section",
    "as_yaml",
    "clip",
    "own_error",
    "register",
    "registered_name",
    "show",
    "split_section",
]

OWN_ERROR = "metamap_config"
"""The pydantic error type of this module's own checks; its ``ctx`` holds ``key`` (the path below
the error's location, may be empty) and ``detail`` (the whole message after the key)."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 60


def show(value: Any) -> str:
    """A short one-line ``repr`` of ``value``, however big, nested or self-similar it is."""
    return _REPR.repr(value)


def clip(text: str, limit: int = 80) -> str:
    """``text`` on one line (control characters escaped), cut to about ``limit`` characters."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_yaml(value: Any) -> str:
    """``value`` as it would be written in YAML (``true``, ``'many'``, ``2.5``), kept short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return show(value)


def own_error(detail: str, key: str = "") -> PydanticCustomError:
    """A validation error the config loader prints as ``'<location>.<key>': <detail>``."""
    return PydanticCustomError(OWN_ERROR, "{detail}", {"detail": detail, "key": key})


def _strict_problem(value: Any, tp: Any, key: str) -> tuple[str, str] | None:
    """Why ``value`` is refused for a field of type ``tp`` beyond pydantic's lax checks.

    Pydantic (lax mode) takes ``True`` for ``1``, ``"7"`` for ``7`` and ``true`` for the literal
    ``1``; YAML turns a stray ``yes`` or ``true`` into such a boolean silently. Returns ``(key,
    detail)`` for the first refused number (``key`` extended into lists: ``hidden.1``), ``None``
    when the value is fine, and ``(key, "")`` when its shape does not fit ``tp`` at all (a list
    for a number: left to pydantic's own message, and to the other members of a union).
    Text stays valid for floats: PyYAML reads ``1e-3`` as the string ``'1e-3'``.
    """
    origin = get_origin(tp)
    if origin is Annotated:
        return _strict_problem(value, get_args(tp)[0], key)
    if origin in (Union, types.UnionType):
        problems = [_strict_problem(value, member, key) for member in get_args(tp)]
        if any(p is None for p in problems):
            return None
        return next((p for p in problems if p and p[1]), (key, ""))
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return (key, "")
        args = [a for a in get_args(tp) if a is not Ellipsis]
        kinds = args if origin is tuple and len(args) > 1 else args * len(value)
        for i, (item, kind) in enumerate(zip(value, kinds, strict=False)):
            problem = _strict_problem(item, kind, f"{key}.{i}")
            if problem and problem[1]:
                return problem
        return None
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
            shown = ", ".join(as_yaml(c) for c in choices)
            return (key, f"expected one of {shown}, got {as_yaml(value)} (a boolean)")
        return None
    if tp is int:
        if isinstance(value, bool):
            return (key, f"expected an integer, got {as_yaml(value)} (a boolean)")
        if isinstance(value, str):
            return (key, f"expected an integer, got {as_yaml(value)} (text; write digits only)")
        if isinstance(value, float) and not value.is_integer():
            return (key, f"expected an integer, got {as_yaml(value)}")
        return None if isinstance(value, int | float) else (key, "")
    if tp is float:
        if isinstance(value, bool):
            return (key, f"expected a number, got {as_yaml(value)} (a boolean)")
        return None if isinstance(value, int | float | str) else (key, "")
    if tp is type(None):
        return None if value is None else (key, "")
    return None  # text, booleans, sections (checked by their own validator): pydantic's job


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    unused_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields a section inherits but refuses to be set (MAML++: ``inner_optimizer``): an error
    that lists the sections having a setting leaves this one out."""

    @model_validator(mode="before")
    @classmethod
    def _strict_numbers(cls, data: Any) -> Any:
        """Refuse booleans where numbers are expected, and text or fractions for integers."""
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if field is None:
                    continue  # unknown keys: pydantic names them
                problem = _strict_problem(value, field.annotation, key)
                if problem and problem[1]:
                    raise own_error(problem[1], problem[0])
        return data


T = TypeVar("T", bound="Section")


def register(
    registry: MutableMapping[str, Any], section: type[T], kind: str, key: str = "name"
) -> type[T]:
    """Add ``section`` to ``registry`` under its :func:`registered_name` (a learner's, a
    model's; ``key``: the field that holds it); the same name twice is a programming error."""
    name = registered_name(section, key)
    if name in registry and registry[name] is not section:
        raise TypeError(f"{kind} {name!r} is registered twice")
    registry[name] = section
    return section


def registered_name(section: type[Section], key: str = "name") -> str:
    """The one name a registered section's ``name`` field (or ``key``) is fixed to
    (``Literal["maml"]``)."""
    fields: dict[str, Any] = dict(section.__pydantic_fields__)
    names = get_args(fields[key].annotation)
    if len(names) != 1 or not isinstance(names[0], str):
        raise TypeError(f"{section.__name__}.{key} must be a Literal of one name")
    return names[0]


def _same(a: Any, b: Any) -> bool:
    """Equal, with booleans equal only to booleans (``True == 1`` in Python)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def split_section(
    data: Mapping[str, Any],
    registry: Mapping[str, type[Section]],
    legacy_defaults: Mapping[str, Any],
    *,
    where: str,
    default_name: str,
    keep: bool,
    key: str = "name",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(section, aside)``: a section of a run config (``where``: "learner", "model") split into
    the fields of the registered section its ``name`` picks and the fields of the others, as
    the one flat section of older configs held them all (``legacy_defaults``, their defaults).

    Another section's field at its old default is dropped. Otherwise it is kept ``aside`` when
    ``keep`` and it was one of the flat section's (a stored config: it still counts for the
    fingerprint, so the run resumes), and refused otherwise, naming the sections that have it.
    Unknown keys are left for the section's own check to name.
    """
    name = data.get(key, default_name)
    section = registry.get(name) if isinstance(name, str) else None
    if section is None:  # the discriminated union names the choices
        return dict(data), {}
    own: dict[str, Any] = {key: name}
    aside: dict[str, Any] = {}
    for field, value in data.items():
        owners = [
            n
            for n, s in registry.items()
            if field in s.__pydantic_fields__ and field not in s.unused_fields
        ]
        if field in section.__pydantic_fields__ or not owners:
            own[field] = value
        elif field in legacy_defaults and _same(value, legacy_defaults[field]):
            continue
        elif keep and field in legacy_defaults:
            aside[field] = value
        else:
            raise ValueError(
                f"{where}.{field} ({as_yaml(value)}) is a setting of {', '.join(owners)}; "
                f"{where} {name!r} has no such setting: remove it"
            )
    return own, aside
