"""Progress bars: redrawn in place on a terminal, rarely when stderr is a log file."""

from __future__ import annotations

import io
import sys

import pytest

from metamap.progress import LOG_INTERVAL_S, interactive, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        super().isatty()  # raises ValueError once closed, as a file does
        return True


def _draws(stream: io.StringIO) -> int:
    return stream.getvalue().count("\r")


def test_a_log_file_gets_a_redraw_at_most_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert not interactive()
    with progress_bar(total=100_000, desc="train") as bar:
        assert bar.mininterval == LOG_INTERVAL_S
        for _ in range(100_000):
            bar.update()
    assert _draws(log) <= 3, log.getvalue()  # the first, the last, and the closing one
    assert "100000/100000" in log.getvalue()


def test_a_terminal_is_redrawn_as_tqdm_does(monkeypatch: pytest.MonkeyPatch) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert interactive()
    bar = progress_bar(range(3), mininterval=0)
    assert list(bar) == [0, 1, 2] and bar.mininterval == 0
    assert _draws(term) >= 4
    assert progress_bar(total=1).mininterval == 0.1  # tqdm's default
    # an explicit interval is kept for a log file too
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(total=1, mininterval=5).mininterval == 5


def test_a_closed_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = _Terminal()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    assert not interactive()
