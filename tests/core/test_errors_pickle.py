"""Every error metamap raises crosses a process boundary intact (multiprocessing pickles it)."""

from __future__ import annotations

import pickle

import pytest

from metamap import errors


@pytest.mark.parametrize("name", errors.__all__)
def test_an_error_survives_pickling(name: str) -> None:
    cls = getattr(errors, name)
    error = cls(7, float("nan"), "runs/x/last.pt") if name == "NonFiniteLossError" else cls("bad")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls and str(again) == str(error)
    if name == "NonFiniteLossError":
        assert (again.step, again.checkpoint) == (7, "runs/x/last.pt")
