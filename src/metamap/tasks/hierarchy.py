"""Class hierarchies for Meta-Dataset episodes: which classes may share an episode.

Reference: Triantafillou et al., "Meta-Dataset", ICLR 2020, §3.2 and Appendix; the authors'
``meta_dataset/data/sampling.py`` (``EpisodeDescriptionSampler.sample_class_ids``). Two datasets
are sampled through a hierarchy there, and both procedures are here:

* ``bilevel`` (Omniglot, classes grouped by alphabet): pick a group uniformly at random, then
  ``N ~ U{min_ways, …, min(max_ways, |group|)}``, then ``N`` of the group's classes uniformly.
  Every group must hold at least ``min_ways`` classes (the reference raises otherwise).
* ``dag`` (ImageNet, classes grouped by the WordNet node that spans them): only groups with
  ``min_ways ≤ |group| ≤ max_group`` (392 in the reference) are eligible; pick one uniformly and
  take all its classes, a uniform subset of ``max_ways`` of them if it has more. Groups may
  overlap (a node and its ancestors).

A hierarchy is data, not code: :meth:`ClassHierarchy.from_class_names` groups ``Alphabet/char``
names by alphabet; for ImageNet, pass the leaves spanned by each WordNet node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from metamap.errors import TaskShapeError

__all__ = ["MAX_SPANNING_LEAVES", "ClassHierarchy"]

MAX_SPANNING_LEAVES = 392
"""The reference's ``MAX_SPANNING_LEAVES_ELIGIBLE``: larger ImageNet nodes are never sampled."""


@dataclass(frozen=True)
class ClassHierarchy:
    """Groups of one domain's class ids (``0 … C-1``) and how episodes use them (see module)."""

    groups: tuple[tuple[int, ...], ...]
    mode: Literal["bilevel", "dag"] = "bilevel"
    names: tuple[str, ...] = ()
    max_group: int = MAX_SPANNING_LEAVES

    @classmethod
    def from_class_names(
        cls, class_names: Sequence[str], sep: str = "/", depth: int = 1
    ) -> ClassHierarchy:
        """A ``bilevel`` hierarchy grouping classes by the first ``depth`` parts of their names
        (``'Latin/character07'`` → group ``'Latin'``), groups in order of first appearance."""
        index: dict[str, list[int]] = {}
        for c, name in enumerate(class_names):
            parts = name.split(sep)
            if len(parts) <= depth:
                raise TaskShapeError(
                    f"class name {name!r} has no group part before {sep!r}; name classes "
                    f"'group{sep}class' or build the ClassHierarchy from explicit groups"
                )
            index.setdefault(sep.join(parts[:depth]), []).append(c)
        return cls(tuple(tuple(g) for g in index.values()), "bilevel", tuple(index))

    def eligible(self, num_classes: int, min_ways: int, domain: str) -> tuple[int, ...]:
        """Indices of the groups episodes are drawn from; raises for a malformed hierarchy."""
        if not self.groups:
            raise TaskShapeError(f"domain {domain!r}: the class hierarchy has no groups")
        for i, g in enumerate(self.groups):
            if not g or len(set(g)) != len(g) or not all(0 <= c < num_classes for c in g):
                raise TaskShapeError(
                    f"domain {domain!r}: group {self._name(i)} must list distinct class ids in "
                    f"[0, {num_classes}), got {list(g)[:8]}"
                )
        if self.mode == "bilevel":
            for i, g in enumerate(self.groups):
                if len(g) < min_ways:
                    raise TaskShapeError(
                        f"domain {domain!r}: group {self._name(i)} has {len(g)} classes, fewer "
                        f"than min_ways={min_ways}; merge it into another group or lower min_ways"
                    )
            return tuple(range(len(self.groups)))
        ok = tuple(i for i, g in enumerate(self.groups) if min_ways <= len(g) <= self.max_group)
        if not ok:
            raise TaskShapeError(
                f"domain {domain!r}: no group spans between min_ways={min_ways} and "
                f"max_group={self.max_group} classes, so no episode can be drawn"
            )
        return ok

    def choose(
        self, eligible: Sequence[int], min_ways: int, max_ways: int, generator: torch.Generator
    ) -> tuple[int, Tensor]:
        """One episode's group and its classes (int64 class ids, in random order)."""
        g = generator
        group = eligible[int(torch.randint(0, len(eligible), (1,), generator=g))]
        members = torch.as_tensor(self.groups[group], dtype=torch.int64)
        if self.mode == "bilevel":
            ways = int(torch.randint(min_ways, min(max_ways, len(members)) + 1, (1,), generator=g))
        else:
            ways = min(max_ways, len(members))
        keys = torch.rand(len(members), generator=g, dtype=torch.float64)
        return group, members[keys.topk(ways).indices]

    def _name(self, i: int) -> str:
        return repr(self.names[i]) if i < len(self.names) else str(i)
