"""A new user's top items from a few ratings: the cold-start mapping g_φ(D^tr) as a product.

:class:`Recommender` rebuilds a cold-start run (``task.family: movielens``) from its checkpoint,
reads the movie catalogue from the run's data (``task.root``, ``$METAMAP_MOVIELENS``, or
``root=``), adapts the meta-learned model to the ratings given (the support set, exactly as in
evaluation) and ranks every movie the user has not rated by predicted stars. Movies held out of
training (the item-cold scenarios) are scored as unknown items, as in evaluation.

Bad input is refused before any work, naming what is wrong: no ratings, an unknown movie id, the
same movie twice, stars outside the scale, a malformed CSV line, a checkpoint of another kind of
run.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from metamap.core.learner import Learner
from metamap.data.movielens import MovieLens
from metamap.errors import CheckpointError, ConfigError, MetamapError
from metamap.tasks.users import ColdStartTask, encode_items
from metamap.train.config import parse_config
from metamap.train.protocol import learner_from_checkpoint

__all__ = ["Recommendation", "Recommender", "read_ratings_csv"]

Ratings = Mapping[int, float] | Sequence[tuple[int, float]]
"""A user's ratings: ``{movie id: stars}`` or ``[(movie id, stars), ...]``."""


_SPLIT_KEYS = (
    "variant",
    "scenario",
    "folds",
    "fold",
    "split_seed",
    "min_ratings",
    "max_ratings",
)
"""The ``task`` settings that decide which movies the run trained on (``known_items``)."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended movie: its id, title and predicted stars."""

    item_id: int
    title: str
    score: float


_HEADERS = ("item_id", "item", "itemid", "movie_id", "movie", "movieid")


def read_ratings_csv(path: str | os.PathLike[str]) -> list[tuple[int, float]]:
    """``item_id,rating`` lines (a first line naming the columns, ``item_id,rating``, is
    skipped; ``#`` comments and blank lines are ignored; a spreadsheet's byte-order mark is
    read). Raises :class:`MetamapError` naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise MetamapError(f"ratings file {str(p)!r} does not exist; give a CSV of item_id,rating")
    out: list[tuple[int, float]] = []
    with open(p, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's byte-order mark
        for n, row in enumerate(csv.reader(f), 1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if n == 1 and cells[0].lower() in _HEADERS:
                continue  # a header line
            if len(cells) != 2:
                raise MetamapError(
                    f"{p}:{n}: expected 2 columns item_id,rating, got {len(cells)}: {row!r}"
                )
            try:
                item, stars = int(cells[0]), float(cells[1])
            except ValueError:
                raise MetamapError(
                    f"{p}:{n}: item_id must be an integer and rating a number, got {row!r}"
                ) from None
            out.append((item, stars))
    if not out:
        raise MetamapError(f"ratings file {str(p)!r} holds no ratings; add item_id,rating lines")
    return out


def _rating(pair: object) -> tuple[int, float]:
    """One rating as ``(movie id, stars)`` from a pair of an integer id (or its digits) and a
    number of stars (or its text), else a :class:`MetamapError` naming it."""
    try:
        item, stars = cast(tuple[Any, Any], pair)
        i, r = int(item), float(stars)
        ok = (isinstance(item, str) or i == item) and not isinstance(item, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise MetamapError(
            f"rating {pair!r}: give each as movie id -> stars, an integer movie id and a number "
            "of stars"
        )
    return i, r


class Recommender:
    """A trained cold-start model with its catalogue: ``recommend(ratings, top)``."""

    def __init__(self, learner: Learner, data: MovieLens, known_items: Tensor) -> None:
        self.learner, self.data, self.known_items = learner, data, known_items

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], root: str | None = None, overrides: Sequence[str] = ()
    ) -> Recommender:
        """The run stored in checkpoint ``path``; ``root`` locates MovieLens if the run's
        ``task.root`` does not (default: the run's, else ``$METAMAP_MOVIELENS``)."""
        over = [*overrides, *([f"task.root={root}"] if root is not None else [])]
        cfg, learner, state = learner_from_checkpoint(Path(path), over)
        if cfg.task.problem() != "cold_start":
            raise CheckpointError(
                f"checkpoint {str(path)!r} is a {cfg.task.describe()} run "
                f"(task.family {cfg.task.family!r}); recommend needs a cold-start "
                "recommendation run (task.family movielens)"
            )
        section = cast(ColdStartTask, cfg.task)
        trained = cast(ColdStartTask, parse_config(state["config"], legacy=True).task)
        changed = [k for k in _SPLIT_KEYS if getattr(section, k) != getattr(trained, k)]
        if changed:
            shown = ", ".join(f"task.{k}={getattr(section, k)}" for k in changed)
            raise ConfigError(
                f"recommend ranks movies as the run was trained: {shown} would change which "
                "movies count as known (seen in training) from the run's "
                + ", ".join(f"task.{k}={getattr(trained, k)}" for k in changed)
                + "; drop these overrides"
            )
        data = section.load()
        learner.eval()
        return cls(learner, data, section.split(data).known_items)

    def _support(self, ratings: Ratings) -> tuple[Tensor, Tensor]:
        given = list(ratings.items()) if isinstance(ratings, Mapping) else list(ratings)
        if not given:
            raise MetamapError("no ratings given: rate at least one movie (movie id -> stars)")
        pairs = [_rating(pair) for pair in given]
        ids = [i for i, _ in pairs]
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            raise MetamapError(f"movies rated more than once: {twice[:5]}; rate each movie once")
        lo, hi = self.data.scale
        bad = [(i, r) for i, r in pairs if not (math.isfinite(r) and lo <= r <= hi)]
        if bad:
            raise MetamapError(f"ratings outside {lo:g}-{hi:g} stars: {bad[:5]}")
        known = set(self.data.item_ids.tolist())
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise MetamapError(
                f"unknown movie ids {unknown[:5]}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                + f": MovieLens-{self.data.variant.upper()} has ids {int(self.data.item_ids[0])}-"
                f"{int(self.data.item_ids[-1])} (see its movies file)"
            )
        stars = torch.tensor([float(r) for _, r in pairs])[:, None]
        return self.data.item_positions(ids), stars

    def _rows(self, items: Tensor) -> Tensor:
        return encode_items(self.data, items, None, self.known_items)

    def _scores(self, items: Tensor, stars: Tensor, candidates: Tensor) -> Tensor:
        """The model's predictions ``(C,)`` for the movies at positions ``candidates`` after
        adapting to the ratings ``stars`` of the movies at positions ``items``, not yet clipped
        to the rating scale (the order among those predicted beyond it is the model's)."""
        p = next(self.learner.named_parameters())[1]
        state = self.learner.adapt(self._rows(items).to(p.device), stars.to(p))
        with torch.no_grad():
            x = self._rows(candidates).to(p.device)
            return self.learner.predict(state, x).flatten().cpu()

    def predict(self, ratings: Ratings, item_ids: Sequence[int]) -> Tensor:
        """Predicted stars ``(len(item_ids),)`` of the given movies for the user who gave
        ``ratings``, clipped to the rating scale."""
        items, stars = self._support(ratings)
        scores = self._scores(items, stars, self.data.item_positions(item_ids))
        return scores.clamp(*self.data.scale)

    def recommend(self, ratings: Ratings, top: int = 10) -> list[Recommendation]:
        """The ``top`` movies the user has not rated, by predicted stars (ties: lower id).

        They are ranked by the model's predictions before clipping, so that movies predicted
        beyond the top of the scale keep their order; ``score`` is clipped to the scale, as
        :meth:`predict` gives it."""
        if top < 1:
            raise MetamapError(f"top must be at least 1, got {top}")
        items, stars = self._support(ratings)
        rated = set(items.tolist())
        candidates = [i for i in range(self.data.num_items) if i not in rated]
        ids = self.data.item_ids[candidates].tolist()
        raw = self._scores(items, stars, torch.tensor(candidates))
        order = sorted(range(len(ids)), key=lambda k: (-float(raw[k]), ids[k]))[:top]
        scores = raw.clamp(*self.data.scale)
        return [
            Recommendation(ids[k], self.data.titles[candidates[k]], float(scores[k])) for k in order
        ]
