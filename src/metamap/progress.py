"""Progress bars that keep a batch job's log small.

Every bar metamap shows (training, evaluation, embedding, decoding a dataset, a download) is a
``tqdm`` bar on stderr. On a terminal it is redrawn in place, as often as tqdm likes. When stderr
is not a terminal — a log file of a batch job (``nohup``, Slurm, CI) — each redraw is *appended*,
so there it is redrawn at most every :data:`LOG_INTERVAL_S` seconds: a day of training adds a few
thousand lines, not hundreds of thousands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar, overload

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "interactive", "progress_bar"]

T = TypeVar("T")

LOG_INTERVAL_S = 30.0
"""Seconds between redraws of a bar whose stderr is not a terminal."""


def interactive() -> bool:
    """Whether stderr is a terminal (a closed or replaced stream counts as not)."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


@overload
def progress_bar(iterable: Iterable[T], **kwargs: Any) -> tqdm[T]: ...


@overload
def progress_bar(iterable: None = None, **kwargs: Any) -> tqdm[Any]: ...


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm[Any]:
    """``tqdm(iterable, **kwargs)``, redrawn at most every :data:`LOG_INTERVAL_S` seconds
    when stderr is not a terminal (unless ``mininterval`` is given)."""
    if not interactive():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", max(LOG_INTERVAL_S, kwargs["mininterval"]))
    return tqdm(iterable, **kwargs)
