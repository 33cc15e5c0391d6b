"""Variable-way, variable-shot, multi-domain episodes: the Meta-Dataset episode protocol.

Reference: Triantafillou, Zhu, Dumoulin, Lamblin, Evci, Xu, Goroshin, Gelada, Swersky, Manzagol
& Larochelle, "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few Examples",
ICLR 2020, §3.2 "Sampling of episodes" and Appendix (the procedure is also that of the authors'
code, ``meta_dataset/data/sampling.py``, whose defaults are the constants below). For an episode:

0. **Domain.** Pick one of the datasets (domains), uniformly or with the given ``weights``
   (the paper trains on several sources by picking each episode's source uniformly at random).
1. **Ways.** ``N ~ U{min_ways, …, min(max_ways, |C_d|)}`` (integers, both ends included), with
   ``min_ways = 5`` and ``max_ways = 50``; then ``N`` distinct classes uniformly at random. A
   domain given a :class:`~metamap.tasks.hierarchy.ClassHierarchy` draws its classes through it
   instead, as the paper does for Omniglot (within one alphabet: ``bilevel``) and ImageNet (the
   leaves of one WordNet node: ``dag``).
2. **Query size (per class, equal for all classes):**
   ``q = min(10, min_{c ∈ C} ⌊0.5 · |Im(c)|⌋)``.
3. **Support size:** ``|S| = min(500, Σ_{c ∈ C} ⌈β · min(100, |Im(c)| − q)⌉)``, with
   ``β ~ U(0, 1]`` once per episode (drawn as ``1 − U[0, 1)``).
4. **Shots per class (class imbalance):** with ``α_c ~ U[log 0.5, log 2)`` per class,
   ``R_c = exp(α_c) · |Im(c)| / Σ_{c'} exp(α_{c'}) · |Im(c')|`` and
   ``k_c = min(⌊R_c · (|S| − N)⌋ + 1, |Im(c)| − q)``: at least one support image per class,
   roughly in proportion to the class's size, perturbed by up to a factor of 2 either way.
5. **Images:** ``q + k_c`` distinct images of each class uniformly at random; the first ``q`` are
   its queries, the next ``k_c`` its support.

Note that ``Σ_c k_c`` is the *realised* support size; it can be smaller than ``|S|`` (the floors,
and the cap ``|Im(c)| − q``) or slightly larger (the ``+1`` per class), as in the paper.

Labels ``0 … N-1`` go to the chosen classes in random order; both sets are label-major (all of
label 0, then label 1, …). Because ways and shots vary, episodes cannot be stacked: the sampler
returns one :class:`~metamap.tasks.Task` per episode (``support_x: (Σ k_c, C, H, W)`` float32 in
``[0, 1]`` or normalised, ``support_y: (Σ k_c,)`` int64, ``query_x: (N·q, C, H, W)``,
``query_y: (N·q,)``). All domains must share ``C × H × W`` (resize when decoding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from metamap.data.dataset import ImageClassDataset
from metamap.errors import TaskShapeError
from metamap.tasks.distribution import make_generator
from metamap.tasks.hierarchy import ClassHierarchy
from metamap.tasks.pixels import (
    Normalize,
    class_index_table,
    images_as_tensor,
    normalization,
    to_float,
)
from metamap.tasks.task import Task

__all__ = ["MetaDatasetEpisode", "MetaDatasetSampler"]

MIN_WAYS = 5
MAX_WAYS = 50
MAX_QUERY = 10
MAX_SUPPORT = 500
MAX_SUPPORT_PER_CLASS = 100
LOG_WEIGHT_RANGE = (math.log(0.5), math.log(2.0))


@dataclass(frozen=True)
class MetaDatasetEpisode:
    """The composition of one episode — indices and the random draws behind them, no pixels.

    ``classes[j]`` (domain class id) gets label ``j``; ``shots[j]`` is its ``k_c``;
    ``support_rows``/``query_rows`` are row indices into the domain's images, label-major.
    ``beta``, ``log_weights`` (the ``α_c``) and ``support_size`` (``|S|``) are kept so that the
    formulas can be checked; ``group`` is the hierarchy group the classes came from, if any.
    """

    domain: int
    classes: Tensor
    queries: int
    support_size: int
    beta: float
    log_weights: Tensor
    shots: Tensor
    support_rows: Tensor
    query_rows: Tensor
    group: int | None = None

    @property
    def ways(self) -> int:
        return int(self.classes.numel())


class MetaDatasetSampler:
    """Meta-Dataset episodes (see the module docstring) over one or more domains.

    Args:
        domains: one :class:`ImageClassDataset` or several, all with the same ``C × H × W``.
        weights: optional non-negative weight per domain (default: uniform).
        min_ways, max_ways, max_query, max_support, max_support_per_class, log_weight_range: the
            protocol's constants (defaults: the paper's 5, 50, 10, 500, 100, ``(log ½, log 2)``).
        normalize: optional ``(mean, std)`` per channel for pixels in ``[0, 1]``.
        in_memory: copy each domain's images into RAM (see
            :func:`metamap.tasks.pixels.images_as_tensor`).
        hierarchies: optional :class:`ClassHierarchy` (or ``None``) per domain: draw that
            domain's classes through it (Omniglot alphabets, ImageNet's WordNet nodes).

    Every domain needs at least ``min_ways`` classes and every class at least 2 images (one
    query and one support image); construction fails naming the offender otherwise.
    """

    def __init__(
        self,
        domains: ImageClassDataset | Sequence[ImageClassDataset],
        weights: Sequence[float] | None = None,
        *,
        min_ways: int = MIN_WAYS,
        max_ways: int = MAX_WAYS,
        max_query: int = MAX_QUERY,
        max_support: int = MAX_SUPPORT,
        max_support_per_class: int = MAX_SUPPORT_PER_CLASS,
        log_weight_range: tuple[float, float] = LOG_WEIGHT_RANGE,
        normalize: Normalize | None = None,
        in_memory: bool | None = None,
        hierarchies: Sequence[ClassHierarchy | None] | None = None,
    ) -> None:
        doms = [domains] if isinstance(domains, ImageClassDataset) else list(domains)
        if not doms:
            raise TaskShapeError("MetaDatasetSampler needs at least one domain (dataset)")
        for i, d in enumerate(doms):
            if not isinstance(d, ImageClassDataset):
                raise TaskShapeError(
                    f"domain {i} must be an ImageClassDataset, got {type(d).__name__}"
                )
        shape = doms[0].image_shape
        for d in doms[1:]:
            if d.image_shape != shape:
                raise TaskShapeError(
                    f"all domains must have images of the same C×H×W: {doms[0].name!r} has "
                    f"{shape}, {d.name!r} has {d.image_shape}; resize them when decoding"
                )
        if min_ways < 2:
            raise TaskShapeError(f"min_ways must be at least 2, got {min_ways}")
        if max_ways < min_ways:
            raise TaskShapeError(f"max_ways ({max_ways}) must be at least min_ways ({min_ways})")
        if max_query < 1:
            raise TaskShapeError(f"max_query must be at least 1, got {max_query}")
        if max_support_per_class < 1:
            raise TaskShapeError(
                f"max_support_per_class must be at least 1, got {max_support_per_class}"
            )
        lo, hi = (float(v) for v in log_weight_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise TaskShapeError(f"log_weight_range must be (low, high), got {log_weight_range}")
        widest = max(min(max_ways, d.num_classes) for d in doms)
        if max_support < widest:
            raise TaskShapeError(
                f"max_support ({max_support}) must be at least the largest number of ways "
                f"({widest}), so that every class gets a support image"
            )
        tables: list[tuple[Tensor, Tensor]] = []
        for d in doms:
            if d.num_classes < min_ways:
                raise TaskShapeError(
                    f"domain {d.name!r} has {d.num_classes} classes, fewer than min_ways="
                    f"{min_ways}; lower min_ways or leave the domain out"
                )
            table, counts = class_index_table(d.labels, d.num_classes)
            if int(counts.min()) < 2:
                c = int(torch.argmin(counts))
                raise TaskShapeError(
                    f"domain {d.name!r}: class {d.class_names[c]!r} (class {c}) holds "
                    f"{int(counts[c])} image(s); every class needs at least 2 (a query and a "
                    "support image) — leave such classes out of the dataset"
                )
            tables.append((table, counts))
        if weights is None:
            self._weights: Tensor | None = None
        else:
            w = torch.as_tensor([float(v) for v in weights], dtype=torch.float64)
            if w.numel() != len(doms):
                raise TaskShapeError(f"{w.numel()} weights for {len(doms)} domains")
            if not bool(torch.all(torch.isfinite(w) & (w >= 0))) or float(w.sum()) <= 0:
                raise TaskShapeError(
                    f"domain weights must be non-negative with a positive sum, got {list(weights)}"
                )
            self._weights = w / w.sum()
        hier = [None] * len(doms) if hierarchies is None else list(hierarchies)
        if len(hier) != len(doms):
            raise TaskShapeError(f"{len(hier)} hierarchies for {len(doms)} domains; give one each")
        self._eligible = [
            None if h is None else h.eligible(d.num_classes, min_ways, d.name)
            for h, d in zip(hier, doms, strict=True)
        ]
        self.hierarchies = hier
        self.domains = doms
        self.min_ways, self.max_ways = int(min_ways), int(max_ways)
        self.max_query, self.max_support = int(max_query), int(max_support)
        self.max_support_per_class = int(max_support_per_class)
        self.log_weight_range = (lo, hi)
        self.image_shape = shape
        self._tables = tables
        self._images = [images_as_tensor(d.images, in_memory) for d in doms]
        self._norm = normalization(normalize, shape[0])

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    # ------------------------------------------------------------------ composition

    def sample_episode(
        self, generator: torch.Generator, domain: int | None = None
    ) -> MetaDatasetEpisode:
        """Draw one episode's composition (steps 0–5 of the module docstring).

        ``domain`` fixes the domain instead of drawing it (for per-domain evaluation).
        """
        g = generator
        if domain is None:
            if self._weights is None:
                d = int(torch.randint(0, self.num_domains, (1,), generator=g))
            else:
                d = int(torch.multinomial(self._weights, 1, generator=g))
        else:
            if not 0 <= domain < self.num_domains:
                raise TaskShapeError(f"domain must be in [0, {self.num_domains}), got {domain}")
            d = int(domain)
        table, counts = self._tables[d]
        num_classes = counts.numel()
        # 1. ways ~ U{min_ways, …, min(max_ways, |C|)}, then that many distinct classes
        #    (or through the domain's class hierarchy).
        hierarchy, eligible = self.hierarchies[d], self._eligible[d]
        group = None
        if hierarchy is not None and eligible is not None:
            group, classes = hierarchy.choose(eligible, self.min_ways, self.max_ways, g)
            ways = classes.numel()
        else:
            hi_ways = min(self.max_ways, num_classes)
            ways = int(torch.randint(self.min_ways, hi_ways + 1, (1,), generator=g))
            keys = torch.rand(num_classes, generator=g, dtype=torch.float64)
            classes = keys.topk(ways).indices
        size = counts[classes]
        # 2. q = min(max_query, min_c ⌊|Im(c)| / 2⌋).
        q = min(self.max_query, int((size // 2).min()))
        remaining = size - q
        # 3. |S| = min(max_support, Σ_c ⌈β · min(max_support_per_class, |Im(c)| − q)⌉), β ~ U(0,1].
        beta = 1.0 - float(torch.rand(1, generator=g, dtype=torch.float64))
        contrib = remaining.clamp(max=self.max_support_per_class).to(torch.float64)
        support_size = min(self.max_support, int(torch.ceil(beta * contrib).sum()))
        # 4. α_c ~ U[lo, hi); R_c ∝ exp(α_c)·|Im(c)|; k_c = min(⌊R_c·(|S| − N)⌋ + 1, |Im(c)| − q).
        lo, hi = self.log_weight_range
        alpha = lo + (hi - lo) * torch.rand(ways, generator=g, dtype=torch.float64)
        unnorm = torch.exp(alpha) * size.to(torch.float64)
        share = unnorm / unnorm.sum()
        shots = torch.minimum(
            torch.floor(share * (support_size - ways)).to(torch.int64) + 1, remaining
        )
        # 5. q + k_c distinct images per class in random order: first q queries, then k_c support.
        image_keys = torch.rand(ways, table.shape[1], generator=g, dtype=torch.float64)
        slot = torch.arange(table.shape[1])
        image_keys.masked_fill_(slot.unsqueeze(0) >= size.unsqueeze(1), -1.0)
        order = torch.sort(image_keys, dim=1, descending=True, stable=True).indices
        rows = table[classes.unsqueeze(1), order]
        query_rows = rows[:, :q].reshape(-1)
        rest = rows[:, q:]
        support_rows = rest[slot[: rest.shape[1]].unsqueeze(0) < shots.unsqueeze(1)]
        return MetaDatasetEpisode(
            domain=d,
            classes=classes,
            queries=q,
            support_size=support_size,
            beta=beta,
            log_weights=alpha,
            shots=shots,
            support_rows=support_rows,
            query_rows=query_rows,
            group=group,
        )

    # ------------------------------------------------------------------ tasks

    def task_from_episode(self, episode: MetaDatasetEpisode) -> Task:
        """Materialise an episode: one gather per set from the domain's uint8 images."""
        images = self._images[episode.domain]
        sx = torch.empty((episode.support_rows.numel(), *self.image_shape), dtype=torch.float32)
        qx = torch.empty((episode.query_rows.numel(), *self.image_shape), dtype=torch.float32)
        to_float(sx, images.index_select(0, episode.support_rows), self._norm)
        to_float(qx, images.index_select(0, episode.query_rows), self._norm)
        labels = torch.arange(episode.ways)
        params = {
            "domain": float(episode.domain),
            "ways": float(episode.ways),
            "queries_per_class": float(episode.queries),
            "support_size": float(episode.support_size),
            "beta": episode.beta,
        }
        return Task(
            sx,
            labels.repeat_interleave(episode.shots),
            qx,
            labels.repeat_interleave(episode.queries),
            params=params,
        )

    def sample_task(self, generator: torch.Generator, domain: int | None = None) -> Task:
        """One episode as a :class:`Task` (``params`` records domain, ways, q, |S| and β)."""
        return self.task_from_episode(self.sample_episode(generator, domain))

    def sample(self, batch_size: int, generator: torch.Generator) -> list[Task]:
        """``batch_size`` i.i.d. episodes (their shapes differ, so a list, not a TaskBatch)."""
        if batch_size < 1:
            raise TaskShapeError(f"batch_size must be at least 1, got {batch_size}")
        return [self.sample_task(generator) for _ in range(batch_size)]

    def fixed_episodes(
        self, n: int, seed: int, domain: int | None = None
    ) -> list[MetaDatasetEpisode]:
        """A fixed evaluation set's compositions: the same for the same ``(n, seed, domain)``.

        Drawn sequentially from ``make_generator(seed)``, so the first ``m`` of ``n`` episodes
        are the set for ``m``. With ``domain`` every episode comes from that domain (the paper
        evaluates each test dataset separately, 600 episodes each).
        """
        if n < 1:
            raise TaskShapeError(f"n must be at least 1, got {n}")
        g = make_generator(seed)
        return [self.sample_episode(g, domain) for _ in range(n)]

    def fixed_tasks(self, n: int, seed: int, domain: int | None = None) -> list[Task]:
        """:meth:`fixed_episodes` materialised (use the episodes to materialise lazily)."""
        return [self.task_from_episode(e) for e in self.fixed_episodes(n, seed, domain)]

    def __repr__(self) -> str:
        names = ", ".join(repr(d.name) for d in self.domains)
        return (
            f"MetaDatasetSampler([{names}], ways={self.min_ways}..{self.max_ways}, "
            f"max_query={self.max_query}, max_support={self.max_support})"
        )
