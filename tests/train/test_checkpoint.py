import argparse
import os
from pathlib import Path

import pytest
import torch

from metamap.errors import CheckpointError
from metamap.train import load_checkpoint, save_checkpoint


def test_roundtrip_keeps_tensors_and_plain_values(tmp_path: Path) -> None:
    p = save_checkpoint(tmp_path / "c" / "x.pt", {"w": torch.arange(3.0), "step": 4, "s": "a"})
    state = load_checkpoint(p)
    assert torch.equal(state["w"], torch.arange(3.0))
    assert state["step"] == 4 and state["s"] == "a"
    assert not [f for f in os.listdir(p.parent) if f.endswith(".tmp")], "temp file left behind"


def test_refuses_pickled_objects(tmp_path: Path) -> None:
    p = tmp_path / "evil.pt"  # any non-allow-listed class would run code when unpickled
    torch.save(
        {"format": "metamap-checkpoint", "format_version": 1, "obj": argparse.Namespace()}, p
    )
    with pytest.raises(CheckpointError, match="refuses to unpickle") as err:
        load_checkpoint(p)
    assert "weights_only" not in str(err.value)  # never suggests the unsafe way to load it


def test_missing_corrupt_foreign_and_newer_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(tmp_path / "torn.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a metamap checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "metamap-checkpoint", "format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "new.pt")


def test_failed_write_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    p = save_checkpoint(tmp_path / "x.pt", {"step": 1})

    class Unsaveable:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(p, {"step": 2, "bad": Unsaveable()})
    assert load_checkpoint(p)["step"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["x.pt"]
