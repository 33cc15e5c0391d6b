"""Reading a run configuration: YAML (``safe_load``) files and ``section.key=value`` overrides.

Every field can be overridden as ``section.field=value`` (the value is parsed as YAML). Unknown
keys and ill-typed values are rejected with a :class:`~metamap.errors.ConfigError` naming them,
in one line, before any work starts. So are files that are not UTF-8, empty, bigger than
:data:`MAX_CONFIG_BYTES` or whose YAML aliases expand to more than :data:`MAX_CONFIG_VALUES`
values; booleans, text or fractions where a number or an integer is expected (the YAML string
``1e-3`` stays a valid float); seeds outside ``0 … 2**63 - 1``; and empty ``eval.shots`` or
``eval.steps``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError

from metamap.data import DATASETS
from metamap.errors import ConfigError
from metamap.learners import LEARNERS
from metamap.models import MODELS
from metamap.section import Section, show
from metamap.tasks import TASKS
from metamap.train.config.messages import format_errors, is_number
from metamap.train.config.schema import REGISTERED_SECTIONS, RunConfig

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUES",
    "apply_overrides",
    "load_config",
    "parse_config",
]


MAX_CONFIG_BYTES = 1 << 20
"""The largest config file (and override value) read: 1 MiB. Real configs are under 4 KiB."""
MAX_CONFIG_VALUES = 100_000
"""The most values (mappings, lists and scalars, every use of a YAML alias counted) a config
may hold: a "billion laughs" file of nested aliases is refused before it is expanded."""
_MAX_DEPTH = 32
"""The deepest nesting of mappings and lists a config may have (real configs: 4 levels)."""


class _Expander:
    """Copies loaded YAML into fresh dicts and lists, counting every value as it goes.

    YAML aliases (``*name``) load as shared references, so a small file can stand for billions
    of values (the "billion laughs"): the copy stops, with a :class:`ConfigError`, at
    :data:`MAX_CONFIG_VALUES` values in all (over every :meth:`copy` of one expander) or at a
    nesting deeper than any config's, before memory or time is spent expanding it.
    """

    def __init__(self) -> None:
        self.values = 0

    def copy(self, value: Any, where: str, depth: int = 0) -> Any:
        """A fresh, alias-free copy of ``value`` (tuples become lists), ``where`` naming it."""
        self.values += 1
        if self.values > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"{where}: YAML aliases (*name) expand to more than {MAX_CONFIG_VALUES:,} values, "
                "far more than any run configuration has; write the settings out without "
                "nested aliases (see configs/ for examples)"
            )
        if depth > _MAX_DEPTH:
            raise ConfigError(
                f"{where} is nested more than {_MAX_DEPTH} levels deep; a run configuration "
                "has sections of settings (see configs/ for examples)"
            )
        if isinstance(value, dict):
            return {k: self.copy(v, where, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.copy(v, where, depth + 1) for v in value]
        return value


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A PyYAML error as one line: the problem, where it is, and while doing what."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({e.context})" if e.context else ""
        return " ".join(f"{e.problem}{at}{context}".split())
    return " ".join(str(e).split())


def _safe_load(text: str, what: str) -> Any:
    """``yaml.safe_load(text)``, its errors a one-line :class:`ConfigError` naming ``what``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} is not valid YAML: {_yaml_problem(e)}") from None
    except RecursionError:
        raise ConfigError(
            f"{what} is nested too deeply to be a run configuration (see configs/ for examples)"
        ) from None


_SYNCED: dict[str, tuple[type[Section], ...]] = {
    "data": tuple(DATASETS.values()),
    "model": tuple(MODELS.values()),
    "learner": tuple(LEARNERS.values()),
    "task": tuple(TASKS.values()),
}
"""The registered sections :class:`RunConfig`'s unions were last built from, by config key."""


def _sync_registries() -> None:
    """Rebuild :class:`RunConfig`'s ``data``, ``model`` and ``learner`` unions when a section has
    been registered since (a plug-in imported after :mod:`metamap.train`), so every registered
    learner, network and dataset can be named in a config without changing this module."""
    registries: dict[str, Mapping[str, type[Section]]] = {
        "data": DATASETS,
        "model": MODELS,
        "learner": LEARNERS,
        "task": TASKS,
    }
    current = {key: tuple(r.values()) for key, r in registries.items()}
    if current == _SYNCED:
        return
    fields = RunConfig.model_fields
    for key, members in current.items():
        fields[key].annotation = functools.reduce(operator.or_, members)
    domain: Any = functools.reduce(operator.or_, current["data"])
    fields["extra_domains"].annotation = list[Annotated[domain, Field(discriminator="name")]]
    RunConfig.model_rebuild(force=True)
    _SYNCED.update(current)


def parse_config(data: Mapping[str, Any], legacy: bool = False) -> RunConfig:
    """Validate a plain mapping into a :class:`RunConfig`.

    ``legacy``: the mapping is a config stored by a run (in a checkpoint or its run folder),
    perhaps by an older metamap, whose learner section held every learner's settings; those of
    other learners are kept aside for the fingerprint instead of refused.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"a configuration is a mapping of sections (section: {{key: value}}), "
            f"not {type(data).__name__}"
        )
    plain = _Expander().copy(dict(data), "the configuration")
    try:
        _sync_registries()
        return RunConfig.model_validate(plain, context={"legacy": legacy})
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a config mapping.

    A number given for a text setting is taken as written: ``data.root=2024`` names the folder
    ``2024``, and ``data.train_classes=[0, 1]`` the class folders ``0`` and ``1``.

    Returns a fresh copy: ``data`` is left as it is. Values are held to the limits of a config
    file (:data:`MAX_CONFIG_BYTES` of text, :data:`MAX_CONFIG_VALUES` values in all).
    """
    expander = _Expander()
    out = expander.copy(data, "the configuration")
    if not isinstance(out, dict):
        raise ConfigError(f"a configuration is a mapping of sections, not {type(data).__name__}")
    numbers: dict[tuple[str, ...], str] = {}  # the overrides that gave numbers, by key
    for item in overrides:
        shown = show(item)
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {shown} must look like section.key=value")
        parts = key.split(".")
        if "" in parts:
            raise ConfigError(
                f"override {shown}: the key {show(key)} has an empty part; write "
                "section.key=value with one dot between names (e.g. train.steps=100)"
            )
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"override {shown}: the value is {len(raw):,} characters, more than the "
                f"{MAX_CONFIG_BYTES:,} a config may hold; put the settings in a config file"
            )
        value = _safe_load(raw, f"override {shown}: the value") if raw else ""
        value = expander.copy(value, f"override {shown}")
        node = _section_of(out, parts, shown)
        node[parts[-1]] = value
        path = tuple(parts)
        numbers = {k: v for k, v in numbers.items() if k[: len(path)] != path}  # replaced
        if _numbers(value):
            numbers[path] = raw
    for path, raw in numbers.items():  # once every override is in: data.name may come last
        if _text_field(out, path):
            node = _section_of(out, list(path), "")
            node[path[-1]] = _as_text(node[path[-1]], raw)
    return out


def _section_of(data: dict[str, Any], parts: Sequence[str], shown: str) -> dict[str, Any]:
    """The section (created if missing) holding the config key ``parts``."""
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {shown}: {show(p)} is not a section")
        node = nxt
    return node


def _numbers(value: Any) -> bool:
    """Whether ``value`` is a number, or a list holding one."""
    return is_number(value) or (isinstance(value, list) and any(is_number(v) for v in value))


_TEXT: tuple[Any, ...] = (str, str | None, list[str], list[str] | None)
"""The annotations of text settings: a number given there on the command line is its text."""


def _text_field(data: Mapping[str, Any], parts: Sequence[str]) -> bool:
    """Whether the config key ``parts`` is a text setting (:data:`_TEXT`) of the sections
    ``data`` chooses (``data.name`` picks the dataset's section, and so on)."""
    model: type[Section] = RunConfig
    node: Any = data
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i == len(parts) - 1:
            return field.annotation in _TEXT
        node = node.get(part) if isinstance(node, Mapping) else None
        inner: Any = field.annotation
        if model is RunConfig and part in REGISTERED_SECTIONS and part != "extra_domains":
            _, key, registry = REGISTERED_SECTIONS[part]
            name = node.get(key) if isinstance(node, Mapping) else None
            name = getattr(getattr(RunConfig(), part), key) if name is None else name
            inner = registry.get(name) if isinstance(name, str) else None
        if not (isinstance(inner, type) and issubclass(inner, Section)):
            return False
        model = inner
    return False


def _as_text(value: Any, raw: str) -> Any:
    """``value`` with the numbers in it as the override ``raw`` spelled them (``2024``, a
    folder's name, not the number; ``007`` and ``1.10`` as written)."""
    text = yaml.load(raw, Loader=yaml.BaseLoader)  # every scalar as its text
    if isinstance(value, list) and isinstance(text, list) and len(text) == len(value):
        return [t if is_number(v) else v for v, t in zip(value, text, strict=True)]
    return text if is_number(value) and isinstance(text, str) else value


def _read_config_file(p: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds, or a one-line :class:`ConfigError` saying why not."""
    name = repr(str(p))
    examples = "see configs/ for examples (e.g. configs/sinusoid/maml.yaml)"
    if p.is_dir():
        raise ConfigError(f"config file {name} is a folder, not a YAML file; {examples}")
    if not p.is_file():
        raise ConfigError(f"config file {name} does not exist; {examples}")
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config file {name}: {e.strerror or e}") from None
    if max(size, len(raw)) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {name} is {max(size, len(raw)):,} bytes, more than the "
            f"{MAX_CONFIG_BYTES:,} (1 MiB) a config may have; is it the right file? {examples}"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at byte offset "
            f"{e.start:,}); save it as UTF-8"
        ) from None
    loaded = _safe_load(text, f"config file {name}")
    if loaded is None:
        raise ConfigError(
            f"config file {name} is empty (no settings, only comments or null); write the "
            f"settings to change, e.g. 'train: {{steps: 1000}}', or start from a file in "
            f"configs/ (e.g. configs/sinusoid/maml.yaml)"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {name} must hold a mapping at the top level (section: {{key: value}} "
            f"lines), not a {type(loaded).__name__}; {examples}"
        )
    out: dict[str, Any] = _Expander().copy(loaded, f"config file {name}")
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Every mistake in the file or the overrides is refused here, before any work starts, with a
    one-line :class:`ConfigError` naming the file or key and how to fix it.
    """
    data = {} if path is None else _read_config_file(Path(path))
    return parse_config(apply_overrides(data, overrides))
