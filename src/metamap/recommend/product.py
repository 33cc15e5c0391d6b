"""A new user's top items from a few ratings: the cold-start mapping g_φ(D^tr) as a product.

:class:`Recommender` rebuilds a cold-start run (``task.family: movielens``) from its checkpoint,
reads the movie catalogue from the run's data (``task.root``, ``$METAMAP_MOVIELENS``, or
``root=``), adapts the meta-learned model to the ratings given (the support set, exactly as in
evaluation) and ranks every movie the user has not rated by predicted stars. Movies held out of
training (the item-cold scenarios) are scored as unknown items, as in evaluation.

**The user.** The model was trained on rows that hold the user's demographics; a new user may give
them as ``user=`` (a mapping of any of :data:`USER_KEYS`), mapped to the codes exactly as the
MovieLens loader maps a users file's row (:mod:`metamap.data.movielens`):

* ``gender``: ``F`` or ``M``;
* ``age``: an age in years (1-120; 100K's exact ages, put in the loader's age groups) or the
  name of a group of :data:`~metamap.data.movielens.AGE_GROUPS` (``"25-34"``);
* ``occupation``: a name of the dataset's occupation list (``u.occupation``; 1M's README list);
* ``zip``: the zip code as text (``"55455"``): its first digit; one that starts with a letter
  (a non-US postal code) is unknown, as in the data.

Case does not matter for gender and occupation; a key left out (or given as ``None``) stays
unknown (code 0), as every feature of a user who gives none.

Bad input is refused before any work, naming what is wrong: no ratings, an unknown movie id, the
same movie twice, stars outside the scale, a malformed CSV line, an unknown user key or value (with
the accepted ones), a checkpoint of another kind of run, a step count below 0.

**Divergence.** A gradient-based model's inner loop of large steps can diverge for some users
(MeLU trained with Reptile, 5 steps of α = 0.1, did for an item-cold validation user): the
predictions then hold NaN or infinite values, which neither rank nor clip to a meaningful score.
They are never returned: the recommender raises
:class:`~metamap.errors.NonFiniteAdaptationError`, saying how many predictions were affected and
what to try (fewer inner steps, ``steps=``; a smaller step size when training).
"""

from __future__ import annotations

import csv
import math
import operator
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from metamap.core.learner import Learner
from metamap.data.movielens import AGE_GROUPS, MovieLens, age_group, gender_code, zip_prefix
from metamap.errors import (
    CheckpointError,
    ConfigError,
    MetamapError,
    NonFiniteAdaptationError,
)
from metamap.tasks.users import ColdStartTask, encode_items
from metamap.train.config import parse_config
from metamap.train.protocol import learner_from_checkpoint

__all__ = ["USER_KEYS", "Recommendation", "Recommender", "User", "read_ratings_csv"]

Ratings = Mapping[int, float] | Sequence[tuple[int, float]]
"""A user's ratings: ``{movie id: stars}`` or ``[(movie id, stars), ...]``."""
User = Mapping[str, object]
"""A new user's demographics, e.g. ``{"gender": "F", "age": 25, "occupation": "student"}``."""
USER_KEYS = ("gender", "age", "occupation", "zip")
"""The keys of :data:`User`, in the order of the rows' columns."""
_MAX_AGE = 120
_ZIP = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*")


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
        what = "is not a file" if p.exists() else "does not exist"
        raise MetamapError(f"ratings file {str(p)!r} {what}; give a CSV of item_id,rating")
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


def _age(value: object) -> tuple[int, str] | None:
    """The age-group code of an age in years (an integer or its digits) or of a group's name,
    and how to show it; ``None`` if it is neither."""
    if isinstance(value, str):
        text = value.strip()
        names = [g.lower() for g in AGE_GROUPS]
        if text.lower() in names:
            code = names.index(text.lower()) + 1
            return code, AGE_GROUPS[code - 1]
        if not (text.isascii() and text.isdigit()):
            return None
        years = int(text)
    elif isinstance(value, bool):
        return None
    else:
        try:
            years = operator.index(cast(Any, value))  # an int, or a numpy integer
        except TypeError:
            return None
    if not 1 <= years <= _MAX_AGE:
        return None
    code = age_group(years)
    return code, f"{years} ({AGE_GROUPS[code - 1]})"


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

    def user_codes(self, user: User | None) -> Tensor:
        """The codes ``(4,)`` int64 of gender, age group, occupation and zip prefix of a new
        user's demographics (see the module), as the rows hold them; all 0 (unknown) for
        ``None``. Raises :class:`MetamapError` naming an unknown key or value and what is
        accepted."""
        return self._user(user)[0]

    def describe_user(self, user: User | None) -> str:
        """The demographics as they are used: ``gender=F, age=25 (25-34), occupation=student``
        (``""`` if none is given)."""
        return self._user(user)[1]

    def _user(self, user: User | None) -> tuple[Tensor, str]:
        codes = torch.zeros(len(USER_KEYS), dtype=torch.int64)
        if user is None:
            return codes, ""
        if not isinstance(user, Mapping):
            raise MetamapError(
                f"user {user!r}: give the user's demographics as a mapping such as "
                "{'gender': 'F', 'age': 25, 'occupation': 'student', 'zip': '55455'}"
            )
        shown: list[str] = []
        for key, value in user.items():
            if key not in USER_KEYS:
                raise MetamapError(
                    f"unknown user key {key!r} (value {value!r}); the keys are "
                    + ", ".join(USER_KEYS)
                )
            if value is None:
                continue
            code, text, accepted = self._user_value(key, value)
            if code is None:
                raise MetamapError(f"user {key} {value!r} is not accepted; give {accepted}")
            codes[USER_KEYS.index(key)] = code
            shown.append(f"{key}={text}")
        return codes, ", ".join(shown)

    def _user_value(self, key: str, value: object) -> tuple[int | None, str, str]:
        """The code of ``value`` for ``key`` (``None`` if refused), how to show it, and what
        the key accepts."""
        text = value.strip() if isinstance(value, str) else None
        if key == "gender":
            code = gender_code(text.upper()) if text is not None else 0
            return code or None, str(text).upper(), "'F' or 'M'"
        if key == "age":
            age = _age(value)
            groups = ", ".join(repr(g) for g in AGE_GROUPS)
            accepted = f"an age in years, 1-{_MAX_AGE}, or an age group: {groups}"
            return (None, "", accepted) if age is None else (*age, accepted)
        if key == "occupation":
            names = self.data.occupation_names
            accepted = (
                "one of the occupations of MovieLens-"
                + self.data.variant.upper()
                + ": "
                + ", ".join(repr(n) for n in names)
                if names
                else "nothing: this copy of the data lists no occupations"
            )
            if text is None:
                return None, "", accepted
            folded = {n.lower(): n for n in reversed(names)}  # the first of names equal but case
            name = text if text in names else folded.get(text.lower(), "")
            return self.data.occupation_code(name) or None, name, accepted
        accepted = (
            "the zip or postal code as text, e.g. '55455' (its first digit is used; one that "
            "starts with a letter counts as unknown, as in the data)"
        )
        if text is None or not _ZIP.fullmatch(text):
            return None, "", accepted
        code = zip_prefix(text)
        return code, text if code else f"{text} (unknown: no leading digit)", accepted

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

    def rows(self, item_ids: Sequence[int], user: User | None = None) -> Tensor:
        """The model's input rows ``(N, F)`` int64 for the movies ``item_ids`` and a new user
        with the demographics ``user``, encoded as in training (unknown features are 0)."""
        codes = self.user_codes(user)
        items = self.data.item_positions(item_ids)
        return encode_items(self.data, items, None, self.known_items, codes)

    def _scores(
        self, items: Tensor, stars: Tensor, candidates: Tensor, user: Tensor, steps: int | None
    ) -> Tensor:
        """The model's predictions ``(C,)`` for the movies at positions ``candidates`` after
        adapting (``steps`` inner steps; ``None``: as trained) to the ratings ``stars`` of the
        movies at positions ``items`` by a user with the demographic codes ``user``, not yet
        clipped to the rating scale (the order among those predicted beyond it is the model's).
        Raises :class:`NonFiniteAdaptationError` if any is NaN or infinite."""
        p = next(self.learner.named_parameters())[1]
        support = encode_items(self.data, items, None, self.known_items, user)
        state = self.learner.adapt(support.to(p.device), stars.to(p), steps)
        with torch.no_grad():
            x = encode_items(self.data, candidates, None, self.known_items, user).to(p.device)
            out = self.learner.predict(state, x).flatten().cpu()
        bad = int((~torch.isfinite(out)).sum())
        if bad:
            took = "its trained number of" if steps is None else f"{steps}"
            raise NonFiniteAdaptationError(
                f"the model's adaptation to these {len(items)} ratings diverged: {bad} of "
                f"{out.numel()} predicted scores are NaN or infinite after {took} inner steps, "
                "so no ranking can be given. Adapt with fewer inner steps (steps=, or --steps "
                "on the command line; 0 uses the meta-learned model unadapted), or train the "
                "model with a smaller inner step size (learner.inner_lr)"
            )
        return out

    def predict(
        self,
        ratings: Ratings,
        item_ids: Sequence[int],
        user: User | None = None,
        steps: int | None = None,
    ) -> Tensor:
        """Predicted stars ``(len(item_ids),)`` of the given movies for the user who gave
        ``ratings`` (and the demographics ``user``, see the module), clipped to the rating
        scale; ``steps``: inner steps of adaptation (default: as trained)."""
        self._check_steps(steps)
        codes = self.user_codes(user)
        items, stars = self._support(ratings)
        scores = self._scores(items, stars, self.data.item_positions(item_ids), codes, steps)
        return scores.clamp(*self.data.scale)

    def recommend(
        self,
        ratings: Ratings,
        top: int = 10,
        user: User | None = None,
        steps: int | None = None,
    ) -> list[Recommendation]:
        """The ``top`` movies the user has not rated, by predicted stars (ties: lower id);
        ``user``: the user's demographics, if given (see the module); ``steps``: inner steps of
        adaptation (default: as trained).

        They are ranked by the model's predictions before clipping, so that movies predicted
        beyond the top of the scale keep their order; ``score`` is clipped to the scale, as
        :meth:`predict` gives it."""
        if top < 1:
            raise MetamapError(f"top must be at least 1, got {top}")
        self._check_steps(steps)
        codes = self.user_codes(user)
        items, stars = self._support(ratings)
        rated = set(items.tolist())
        candidates = [i for i in range(self.data.num_items) if i not in rated]
        ids = self.data.item_ids[candidates].tolist()
        raw = self._scores(items, stars, torch.tensor(candidates), codes, steps)
        order = sorted(range(len(ids)), key=lambda k: (-float(raw[k]), ids[k]))[:top]
        scores = raw.clamp(*self.data.scale)
        return [
            Recommendation(ids[k], self.data.titles[candidates[k]], float(scores[k])) for k in order
        ]

    def _check_steps(self, steps: int | None) -> None:
        if steps is None:
            return
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise MetamapError(
                f"steps must be a whole number of inner steps, 0 or more, got {steps!r}"
            )
        if not self.learner.inner_steps:
            raise MetamapError(
                f"this model adapts in closed form (learner {type(self.learner).__name__}), "
                "without inner steps: drop steps= (--steps)"
            )
