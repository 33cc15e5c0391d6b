"""Bad config input is refused with one clear line, before any work starts (no traceback)."""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from metamap.cli import main
from metamap.errors import ConfigError
from metamap.tasks.distribution import make_generator
from metamap.train import apply_overrides, load_config, parse_config
from metamap.train.config import MAX_CONFIG_BYTES, MAX_CONFIG_VALUES, MAX_SEED
from metamap.train.trainer import VAL_SEED_OFFSET


def _refused(path: Path | None, overrides: Sequence[str] = ()) -> str:
    """The one-line message ``load_config`` refuses ``path`` and ``overrides`` with."""
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    message = str(e.value)
    assert "\n" not in message, message
    return message


def _cli_refuses(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``metamap train path`` exits 2 with one error line, and creates no run folder."""
    run = tmp_path / "run"
    assert main(["train", str(path), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metamap: error:") and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert not run.exists()


def _laughs(levels: int = 9) -> list[str]:
    """The classic alias bomb ("billion laughs"), one ``key: value`` entry per level: 9**levels
    strings from a few hundred bytes of YAML."""
    entries = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        entries.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return entries


@pytest.mark.parametrize(
    ("content", "offset"),
    [
        (b"name: caf\xe9\n", 9),  # Latin-1
        ("train: {steps: 5}\n".encode("utf-16"), 0),  # Notepad's "Unicode"
    ],
)
def test_a_config_file_that_is_not_utf8_names_the_file_and_the_byte(
    content: bytes, offset: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(content)
    message = _refused(path)
    assert str(path) in message and "is not UTF-8" in message
    assert f"at byte offset {offset}" in message and "save it as UTF-8" in message
    _cli_refuses(path, tmp_path, capsys)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("train: {steps: 5}\n".encode("utf-8-sig"))
    assert load_config(path).train.steps == 5


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "null\n", "---\n", "~\n"])
def test_an_empty_config_file_is_refused_not_trained_with_the_defaults(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(content)
    message = _refused(path)
    assert f"config file {str(path)!r} is empty" in message and "configs/" in message
    _cli_refuses(path, tmp_path, capsys)


def test_an_explicit_empty_mapping_and_the_python_defaults_still_mean_the_defaults(
    tmp_path: Path,
) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text("{}\n")
    assert load_config(path) == load_config(None) == parse_config({})


BOMB = f"YAML aliases (*name) expand to more than {MAX_CONFIG_VALUES:,} values"


@pytest.mark.parametrize(
    ("content", "needle", "seconds"),
    [
        # The bounds tell "refused before expanding" (milliseconds) from expanding 9**9 values
        # (many minutes and gigabytes), with room for a machine loaded by other jobs.
        ("\n".join(_laughs()) + "\n", BOMB, 10.0),  # 9**9 values: never expanded
        ("model: {hidden: " + "[" * 60 + "]" * 60 + "}\n", "nested more than 32 levels", 10.0),
        # deeper than PyYAML's recursion (whose scanner is quadratic in the depth: slower)
        ("model: {hidden: " + "[" * 1200 + "]" * 1200 + "}\n", "nested too deeply", 10.0),
    ],
)
def test_an_alias_bomb_or_a_deep_nesting_is_refused_at_once(
    content: str,
    needle: str,
    seconds: float,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(content)
    start = time.perf_counter()
    message = _refused(path)
    assert time.perf_counter() - start < seconds
    assert str(path) in message and needle in message
    _cli_refuses(path, tmp_path, capsys)


def test_a_config_file_over_1_mib_is_refused_naming_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("name: run\n" + "#" * MAX_CONFIG_BYTES + "\n")
    size = path.stat().st_size
    message = _refused(path)
    assert str(path) in message and f"is {size:,} bytes" in message and "1 MiB" in message
    _cli_refuses(path, tmp_path, capsys)


def test_a_yaml_syntax_error_is_one_line_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  steps: [1,\n")
    message = _refused(path)
    assert str(path) in message and "not valid YAML" in message and "line 3" in message
    _cli_refuses(path, tmp_path, capsys)


@pytest.mark.parametrize(
    ("override", "key", "got"),
    [
        (f"seed={2**64}", "'seed'", str(2**64)),
        (f"seed={MAX_SEED + 1}", "'seed'", str(MAX_SEED + 1)),
        ("seed=-1", "'seed'", "-1"),
        (f"eval.seed={2**100}", "'eval.seed'", str(2**100)),
        ("eval.seed=-5", "'eval.seed'", "-5"),
    ],
)
def test_a_seed_outside_0_to_2_63_is_refused_with_the_range(
    override: str, key: str, got: str
) -> None:
    message = _refused(None, [override])
    assert f"{key}: a seed must be a whole number from 0 to 2**63 - 1" in message
    assert f"got {got}" in message


def test_every_seed_a_run_derives_from_an_allowed_seed_is_valid_for_torch() -> None:
    cfg = load_config(None, [f"seed={MAX_SEED}", f"eval.seed={MAX_SEED}"])
    assert cfg.seed == cfg.eval.seed == MAX_SEED
    assert load_config(None, ["seed=0", "eval.seed=0"]).eval.seed == 0
    for derived in (MAX_SEED + 1, MAX_SEED + VAL_SEED_OFFSET):  # fixed_tasks' noise, validation
        make_generator(derived)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.steps=true"], "'train.steps': expected an integer, got true (a boolean)"),
        (["train.meta_batch=no"], "'train.meta_batch': expected an integer, got false (a boolean)"),
        (["train.steps='7'"], "'train.steps': expected an integer, got '7' (text"),
        (["train.steps=2.5"], "'train.steps': expected an integer, got 2.5"),
        (["train.lr=true"], "'train.lr': expected a number, got true (a boolean)"),
        (["train.threads=yes"], "'train.threads': expected an integer, got true (a boolean)"),
        (["learner.inner_lr=true"], "'learner.inner_lr': expected a number, got true"),
        (
            ["learner.inner_steps=2", "learner.inner_lr=[0.1, true]"],
            "'learner.inner_lr.1': expected a number, got true (a boolean)",
        ),
        (["model.hidden=[40, true]"], "'model.hidden.1': expected an integer, got true"),
        (["eval.seed=true"], "'eval.seed': expected an integer, got true (a boolean)"),
        (
            ["data.name=folder", "data.split_fractions=[0.6, true, 0.2]"],
            "'data.split_fractions.1': expected a number",
        ),
        (
            ["task.family=episodes", "model.name=conv4", "data.channels=true"],
            "'data.channels': expected one of 1, 3, got true (a boolean)",
        ),
    ],
)
def test_a_boolean_or_text_where_a_number_is_expected_is_refused(
    overrides: list[str], expected: str
) -> None:
    assert expected in _refused(None, overrides)


def test_a_boolean_in_a_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bool.yaml"
    path.write_text("train:\n  steps: yes\n")
    assert "'train.steps': expected an integer, got true (a boolean)" in _refused(path)


def test_lax_numbers_that_configs_rely_on_stay_accepted() -> None:
    cfg = load_config(
        None,
        [
            "train.lr=1e-3",  # PyYAML reads this as the string '1e-3'
            "train.weight_decay=0",  # an integer for a float
            "data.name=folder",
            "data.split_fractions=[0.5, 0.25, 0.25]",  # a list for a tuple
            "learner.inner_lr=[1, 0.5]",
            "learner.inner_steps=2",
            "train.steps=7.0",  # a whole float for an integer
        ],
    )
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.weight_decay == 0.0
    assert cfg.data.model_dump()["split_fractions"] == (0.5, 0.25, 0.25)
    assert cfg.learner.inner_lr == [1.0, 0.5]
    assert cfg.train.steps == 7


@pytest.mark.parametrize("key", ["eval.shots", "eval.steps"])
def test_an_empty_list_of_shots_or_steps_is_refused(key: str) -> None:
    message = _refused(None, [f"{key}=[]"])
    assert f"'{key}': give at least one value, e.g. [" in message


def test_several_problems_are_one_line_separated_by_semicolons() -> None:
    message = _refused(None, ["train.stepz=5", "model.hidden=[0]", "learner.name=mamal"])
    assert message.startswith("invalid configuration: ")
    parts = message.removeprefix("invalid configuration: ").split("; ")
    assert any(p.startswith("unknown key 'train.stepz'") for p in parts)
    assert any(p.startswith("'model.hidden.0'") for p in parts)
    assert any(p.startswith("'learner.name'") for p in parts)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train..steps=1", "has an empty part"),
        (".steps=1", "has an empty part"),
        ("train.=1", "has an empty part"),
        ("model.hidden={" + ", ".join(_laughs()) + "}", BOMB),
        ("name=" + "x" * (MAX_CONFIG_BYTES + 1), f"{MAX_CONFIG_BYTES + 1:,} characters"),
        ("train.steps=[1,", "not valid YAML"),
    ],
)
def test_bad_overrides_are_refused_in_one_short_line(override: str, needle: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        apply_overrides({}, [override])
    assert time.perf_counter() - start < 10  # never expanded (expanding: hours)
    message = str(e.value)
    assert message.startswith("override '") and needle in message
    assert "\n" not in message and len(message) < 400


def test_a_bomb_handed_to_the_python_api_is_refused_without_expanding_it() -> None:
    bomb: Any = ["lol"] * 10
    for _ in range(9):
        bomb = [bomb] * 10  # 10**10 values, shared
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="YAML aliases"):
        parse_config({"model": {"hidden": bomb}})
    with pytest.raises(ConfigError, match="YAML aliases"):
        apply_overrides({"model": {"hidden": bomb}}, [])
    assert time.perf_counter() - start < 10  # never expanded (expanding: hours)
