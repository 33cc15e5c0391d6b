"""N-way K-shot episodes drawn from a labelled image dataset (few-shot classification).

An episode (a :class:`~metamap.tasks.Task`) is built by

1. drawing ``ways`` distinct classes uniformly at random (without replacement);
2. drawing ``queries + shots`` distinct images uniformly at random from each chosen class;
3. giving the chosen classes the labels ``0 … ways-1`` in a uniformly random order (a fresh
   permutation every episode, so a label says nothing about the class it stands for).

Layout of a batch of ``B`` episodes (:class:`~metamap.tasks.TaskBatch`):

* ``support_x``: ``(B, ways*shots, C, H, W)`` float32, ``support_y``: ``(B, ways*shots)`` int64;
* ``query_x``: ``(B, ways*queries, C, H, W)`` float32, ``query_y``: ``(B, ways*queries)`` int64.

Both sets are ordered **label-major**: ``support_y[b] == [0]*shots + [1]*shots + … +
[ways-1]*shots`` and ``query_y[b] == [0]*queries + … + [ways-1]*queries``; the images within one
label are in random order. Learners must not rely on this order (it is there so that per-class
means are a reshape away); shuffle if a method is order-sensitive. Pixels are the dataset's uint8
values divided by 255, so in ``[0, 1]``, then optionally normalised per channel,
``(x - mean) / std``.

**Rotations as extra classes** (the standard Omniglot set-up of Vinyals et al. 2016): with
``class_base`` and ``class_rotations``, sampler class ``c`` consists of the images of dataset
class ``class_base[c]``, each rotated by ``class_rotations[c] × 90°`` with
``torch.rot90(x, k, dims=(-2, -1))`` — that is **counter-clockwise** as the image is displayed
(row 0 at the top). ``class_base`` alone selects (and orders) a subset of the dataset's classes,
e.g. a split; ``class_rotations`` alone rotates every dataset class.

**Speed.** The images stay uint8 in one tensor — a copy of the dataset array in RAM when it is
small enough, otherwise a zero-copy view of its memmap; with rotations, a pool of the
pre-rotated images of every sampler class (built once, 75 MB for Omniglot's 4,800 training
classes; rotated on the fly instead when it would not fit). A padded ``(classes, max images)``
index table is built once. A batch of episodes is then a handful of vectorised operations:
classes by rejection of ``randint`` rows or random keys + ``topk``, images by random keys +
``topk``, one ``index_select`` gathers all ``B·ways·(shots+queries)`` images, and one
conversion per set makes the float32 tensors. ``benchmarks/episode_speed.py`` measures
episodes per second.

**Randomness** comes only from the ``torch.Generator`` passed in; the global RNG is never
touched. For a given generator state the episodes do not depend on the machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from metamap.data.dataset import ImageClassDataset
from metamap.errors import TaskShapeError
from metamap.tasks.distribution import check_counts, make_generator
from metamap.tasks.pixels import (
    IN_MEMORY_LIMIT_BYTES,
    Normalize,
    class_index_table,
    images_as_tensor,
    normalization,
    rotate_groups,
    to_float,
)
from metamap.tasks.task import TaskBatch

__all__ = ["EpisodePlan", "EpisodeSampler"]

SUBSET_HINT = " (class_base selects a subset of classes)"
"""How a Python caller leaves classes out, ending the too-few-images error (a config's caller
names its own way)."""

_PLAN_BLOCK = 64
"""Fixed evaluation plans are drawn in blocks of this many episodes, so that the first ``n``
episodes of a plan do not depend on how many were asked for."""


def _as_int_tensor(values: Any, what: str) -> Tensor:
    arr = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values)
    if arr.ndim != 1:
        raise TaskShapeError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TaskShapeError(f"{what} must hold integers, got dtype {arr.dtype}")
    return torch.from_numpy(arr.astype(np.int64))


def _distinct_acceptance(ways: int, num_classes: int) -> float:
    """Probability that ``ways`` i.i.d. uniform class ids out of ``num_classes`` are distinct."""
    p = 1.0
    for i in range(ways):
        p *= max(num_classes - i, 0) / num_classes
    return p


@dataclass(frozen=True)
class EpisodePlan:
    """Which classes and images make up each of ``n`` episodes — indices only, no pixels.

    * ``classes``: ``(n, ways)`` int64 sampler class ids; ``classes[e, j]`` is the class that gets
      label ``j`` in episode ``e``. The order of a row is uniformly random, so the label
      permutation of each episode is folded into it.
    * ``images``: ``(n, ways, queries + shots)`` int64 row indices into the dataset's images;
      ``images[e, j, :queries]`` are label ``j``'s query images, ``images[e, j, queries:]`` its
      support images (in that order in the materialised tensors).

    Plans are cheap (``8·n·ways·(1 + shots + queries)`` bytes), so a large fixed evaluation set
    is kept as a plan and materialised in chunks with
    :meth:`EpisodeSampler.episodes_from_plan`.
    """

    classes: Tensor
    images: Tensor
    shots: int
    queries: int

    def __post_init__(self) -> None:
        c, i = self.classes, self.images
        if c.dim() != 2 or i.dim() != 3 or c.shape != i.shape[:2]:
            raise TaskShapeError(
                f"an episode plan needs classes (n, ways) and images (n, ways, queries + shots); "
                f"got {tuple(c.shape)} and {tuple(i.shape)}"
            )
        if i.shape[2] != self.shots + self.queries:
            raise TaskShapeError(
                f"plan images hold {i.shape[2]} images per class, but shots + queries = "
                f"{self.shots} + {self.queries}"
            )

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    @property
    def ways(self) -> int:
        return int(self.classes.shape[1])


class EpisodeSampler:
    """N-way K-shot episodes from an :class:`ImageClassDataset` (a ``TaskDistribution``).

    Args:
        dataset: the labelled uint8 images.
        ways: classes per episode (at least 2, at most the number of sampler classes).
        shots: support images per class.
        queries: query images per class.
        class_rotations: optional ``(num_classes,)`` ints in ``{0, 1, 2, 3}``: sampler class
            ``c`` is rotated by ``class_rotations[c] × 90°`` counter-clockwise
            (``torch.rot90(x, k, dims=(-2, -1))``). Odd ``k`` needs square images.
        class_base: optional ``(num_classes,)`` dataset class ids: sampler class ``c`` uses the
            images of dataset class ``class_base[c]``. Defaults to ``0 … dataset.num_classes-1``.
            The pairs ``(class_base[c], class_rotations[c])`` must be distinct.
        normalize: optional ``(mean, std)`` per channel for pixels in ``[0, 1]``.
        in_memory: copy the images into RAM (see :func:`images_as_tensor`).

    Every sampler class must hold at least ``shots + queries`` images; otherwise construction
    fails naming the smallest class (select a subset of classes with ``class_base``).
    """

    def __init__(
        self,
        dataset: ImageClassDataset,
        ways: int,
        shots: int,
        queries: int,
        class_rotations: Sequence[int] | npt.NDArray[np.integer[Any]] | Tensor | None = None,
        class_base: Sequence[int] | npt.NDArray[np.integer[Any]] | Tensor | None = None,
        normalize: Normalize | None = None,
        in_memory: bool | None = None,
    ) -> None:
        if not isinstance(dataset, ImageClassDataset):
            raise TaskShapeError(
                f"EpisodeSampler needs an ImageClassDataset, got {type(dataset).__name__}"
            )
        name = dataset.name
        if ways < 2:
            raise TaskShapeError(f"{name}: ways must be at least 2, got {ways}")
        check_counts(shots, queries)
        c, h, w = dataset.image_shape
        base, rot = self._class_map(dataset, class_rotations, class_base)
        if bool(torch.any(rot % 2 == 1)) and h != w:
            raise TaskShapeError(
                f"{name}: rotating by 90° or 270° needs square images, got {h}×{w}; "
                "use rotations 0 and 2 only, or resize the images"
            )
        num = int(base.numel())
        if ways > num:
            where = "the dataset has" if class_base is None else "the sampler has"
            extra = "" if class_base is None else " (those named by class_base)"
            raise TaskShapeError(
                f"{name}: ways={ways} but {where} {num} classes{extra}; lower ways"
            )

        table, counts = class_index_table(dataset.labels, dataset.num_classes)
        self._table = table[base].contiguous()
        self._counts = counts[base].contiguous()
        self.dataset = dataset
        self._base, self._rot = base, rot
        self._labels = torch.from_numpy(np.ascontiguousarray(dataset.labels, dtype=np.int64))
        self._check_class_sizes(shots + queries)

        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        self.image_shape = (c, h, w)
        self._norm = normalization(normalize, c)
        self._rotations = [k for k in (1, 2, 3) if bool(torch.any(rot == k))]
        self._full = bool(torch.all(self._counts == self._table.shape[1]))
        self._pad = torch.arange(self._table.shape[1]).unsqueeze(0) >= self._counts.unsqueeze(1)
        self._rejection = _distinct_acceptance(self.ways, num) >= 0.5
        # With rotations, the images are pre-rotated into a pool indexed by (class, slot).
        self._pool_start: Tensor | None = None
        self._slot_of_row = torch.empty(0, dtype=torch.int64)
        pool_bytes = int(self._counts.sum()) * c * h * w
        if self._rotations and (
            in_memory or (in_memory is None and pool_bytes <= IN_MEMORY_LIMIT_BYTES)
        ):
            source = images_as_tensor(dataset.images, in_memory=False)
            self._images = self._build_pool(source, table, counts)
        else:
            self._images = images_as_tensor(dataset.images, in_memory)

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def _class_map(
        dataset: ImageClassDataset, class_rotations: Any, class_base: Any
    ) -> tuple[Tensor, Tensor]:
        name, n_data = dataset.name, dataset.num_classes
        if class_base is None:
            base = torch.arange(n_data)
        else:
            base = _as_int_tensor(class_base, "class_base")
            if base.numel() and (int(base.min()) < 0 or int(base.max()) >= n_data):
                raise TaskShapeError(
                    f"{name}: class_base must hold dataset class ids in [0, {n_data}), got "
                    f"values from {int(base.min())} to {int(base.max())}"
                )
        if class_rotations is None:
            rot = torch.zeros_like(base)
        else:
            rot = _as_int_tensor(class_rotations, "class_rotations")
            if rot.shape != base.shape:
                what = "class_base" if class_base is not None else "the dataset's class count"
                raise TaskShapeError(
                    f"{name}: class_rotations has {rot.numel()} entries but {what} gives "
                    f"{base.numel()} classes; give one rotation per class"
                )
            if rot.numel() and (int(rot.min()) < 0 or int(rot.max()) > 3):
                bad = int(rot[(rot < 0) | (rot > 3)][0])
                raise TaskShapeError(
                    f"{name}: class_rotations must be quarter turns k in {{0, 1, 2, 3}} "
                    f"(k × 90°), got {bad}"
                )
        key = base * 4 + rot
        if torch.unique(key).numel() != key.numel():
            _, inverse, cnt = torch.unique(key, return_inverse=True, return_counts=True)
            first = int(torch.nonzero(cnt[inverse] > 1)[0])
            raise TaskShapeError(
                f"{name}: sampler classes must be distinct, but (class_base, class_rotations) = "
                f"({int(base[first])}, {int(rot[first])}) appears more than once"
            )
        return base, rot

    def class_name(self, c: int) -> str:
        """A readable name of sampler class ``c`` (the dataset class, and its rotation if any)."""
        name = str(self.dataset.class_names[int(self._base[c])])
        k = int(self._rot[c])
        return f"{name} rotated {90 * k}°" if k else name

    def _check_class_sizes(self, need: int) -> None:
        counts = self._counts
        if int(counts.min()) >= need:
            return
        smallest = int(torch.argmin(counts))
        short = int((counts < need).sum())
        raise TaskShapeError(
            f"{self.dataset.name}: shots + queries = {need} but class "
            f"{self.class_name(smallest)!r} "
            f"(sampler class {smallest}) holds only {int(counts[smallest])} images — the smallest "
            f"class; {short} of the {counts.numel()} classes hold fewer than {need}. Lower shots "
            f"or queries, or leave those classes out{SUBSET_HINT}"
        )

    def _build_pool(self, source: Tensor, dataset_table: Tensor, dataset_counts: Tensor) -> Tensor:
        """Pre-rotate: every sampler class's images, rotated, in one uint8 tensor.

        Sampler class ``c``'s images are pool rows ``pool_start[c] + slot``, where ``slot`` is the
        image's position in its dataset class (:meth:`class_index_table` order). Gathering
        episodes from the pool needs no rotation at sampling time (Omniglot's 1200 × 4 training
        classes at 28×28: a 75 MB pool).
        """
        counts = self._counts
        valid = ~self._pad
        rows = self._table[valid]  # class by class, slot order
        pool = source.index_select(0, rows)
        rotate_groups(pool, self._rot.repeat_interleave(counts), self._rotations)
        self._pool_start = torch.cumsum(counts, 0) - counts
        # slot_of_row[r]: position of dataset row r in its class's row of the dataset table.
        slot = torch.zeros(len(self.dataset), dtype=torch.int64)
        in_class = torch.arange(dataset_table.shape[1]).expand_as(dataset_table)
        dataset_valid = in_class < dataset_counts.unsqueeze(1)
        slot[dataset_table[dataset_valid]] = in_class[dataset_valid]
        self._slot_of_row = slot
        return pool

    # ------------------------------------------------------------------ properties

    @property
    def num_classes(self) -> int:
        """Number of sampler classes (with rotations, each rotation counts as a class)."""
        return int(self._base.numel())

    @property
    def class_counts(self) -> Tensor:
        """``(num_classes,)`` images per sampler class."""
        return self._counts.clone()

    @property
    def class_base(self) -> Tensor:
        """``(num_classes,)`` the dataset class behind each sampler class."""
        return self._base.clone()

    @property
    def class_rotations(self) -> Tensor:
        """``(num_classes,)`` quarter turns (counter-clockwise) of each sampler class."""
        return self._rot.clone()

    # ------------------------------------------------------------------ plans

    def _draw(self, n: int, g: torch.Generator, shots: int) -> tuple[Tensor, Tensor]:
        """Classes ``(n, ways)`` and image rows ``(n, ways, queries + shots)`` for ``n`` episodes.

        Classes: a uniformly random ordered ``ways``-tuple of distinct classes (the order is the
        label order). When ``ways`` is small against the number of classes (``ways`` i.i.d.
        uniform draws are distinct with probability ≥ 1/2) by rejection — i.i.d. ``randint``
        rows, rows with a repeat redrawn whole; otherwise as the ``ways`` largest of i.i.d.
        uniform keys, one per class. Images: i.i.d. uniform keys per image slot of each chosen
        class (padding slots get -1, below any real key), the ``queries + shots`` largest give a
        uniformly random ordered subset of the class's images. float64 keys make ties (which
        would bias ``topk``) practically impossible. The draws do not depend on ``shots``, so
        with the same generator state plans for different ``shots`` share classes and queries
        and have nested support sets.
        """
        if self._rejection:
            classes = self._distinct_classes(n, g)
        else:
            keys = torch.rand(n, self.num_classes, generator=g, dtype=torch.float64)
            classes = keys.topk(self.ways, dim=1).indices
        image_keys = torch.rand(
            n, self.ways, self._table.shape[1], generator=g, dtype=torch.float64
        )
        if not self._full:
            image_keys.masked_fill_(self._pad[classes], -1.0)
        slots = image_keys.topk(self.queries + shots, dim=2).indices
        images = self._table[classes.unsqueeze(2), slots]
        return classes, images

    def _distinct_classes(self, n: int, g: torch.Generator) -> Tensor:
        classes = torch.randint(0, self.num_classes, (n, self.ways), generator=g)
        while True:
            srt = classes.sort(dim=1).values
            bad = torch.nonzero((srt[:, 1:] == srt[:, :-1]).any(dim=1)).squeeze(1)
            if not bad.numel():
                return classes
            redraw = torch.randint(0, self.num_classes, (bad.numel(), self.ways), generator=g)
            classes[bad] = redraw

    def sample_plan(self, batch_size: int, generator: torch.Generator) -> EpisodePlan:
        """The index plan of ``batch_size`` random episodes (what :meth:`sample` materialises)."""
        if batch_size < 1:
            raise TaskShapeError(f"batch_size must be at least 1, got {batch_size}")
        classes, images = self._draw(batch_size, generator, self.shots)
        return EpisodePlan(classes, images, self.shots, self.queries)

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """``batch_size`` i.i.d. episodes (see the module docstring for the layout)."""
        if batch_size < 1:
            raise TaskShapeError(f"batch_size must be at least 1, got {batch_size}")
        classes, images = self._draw(batch_size, generator, self.shots)
        return self._materialise(classes, images, self.shots, self.queries)

    def sample_labelled(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A plain supervised batch: images ``(batch_size, C, H, W)`` float32 drawn uniformly
        (with replacement) from all images of all sampler classes, and their sampler class ids
        ``(batch_size,)`` int64 in ``[0, num_classes)`` — what supervised pre-training on the
        base classes consumes (rotations count as classes, as in episodes)."""
        if batch_size < 1:
            raise TaskShapeError(f"batch_size must be at least 1, got {batch_size}")
        ends = torch.cumsum(self._counts, 0)
        flat = torch.randint(0, int(ends[-1]), (batch_size,), generator=generator)
        classes = torch.searchsorted(ends, flat, right=True)
        slots = flat - (ends[classes] - self._counts[classes])
        if self._pool_start is not None:
            x = self._images.index_select(0, self._pool_start[classes] + slots)
        else:
            x = self._images.index_select(0, self._table[classes, slots])
            if self._rotations:
                rotate_groups(x, self._rot[classes], self._rotations)
        out = torch.empty((batch_size, *self.image_shape), dtype=torch.float32)
        to_float(out, x, self._norm)
        return out, classes

    def _check_shots(self, shots: int | None) -> int:
        k = self.shots if shots is None else int(shots)
        check_counts(k, self.queries)
        self._check_class_sizes(k + self.queries)
        return k

    def fixed_episode_indices(self, n: int, seed: int, shots: int | None = None) -> EpisodePlan:
        """The plan of the fixed evaluation set ``(n, seed)``: identical on every call and machine.

        It depends only on ``seed``, the sampler's classes and ``ways``/``queries``: the first
        ``m`` episodes of a plan for ``n ≥ m`` are the plan for ``m``, and for any ``shots`` the
        classes, labels and query images are the same while the support sets are nested (the
        1-shot support is the first image of the 5-shot support of each class).
        """
        if n < 1:
            raise TaskShapeError(f"n must be at least 1, got {n}")
        k = self._check_shots(shots)
        g = make_generator(seed)
        classes, images = [], []
        for _ in range(math.ceil(n / _PLAN_BLOCK)):
            c, i = self._draw(_PLAN_BLOCK, g, k)
            classes.append(c)
            images.append(i)
        return EpisodePlan(torch.cat(classes)[:n], torch.cat(images)[:n], k, self.queries)

    def episodes_from_plan(
        self, plan: EpisodePlan, start: int = 0, stop: int | None = None
    ) -> TaskBatch:
        """Materialise episodes ``start … stop-1`` of ``plan`` as a :class:`TaskBatch`."""
        n = len(plan)
        stop = n if stop is None else stop
        if not 0 <= start < stop <= n:
            raise TaskShapeError(
                f"episode range [{start}, {stop}) is empty or outside the plan's {n} episodes"
            )
        if plan.ways != self.ways:
            raise TaskShapeError(f"the plan has {plan.ways} ways, this sampler {self.ways}")
        classes, images = plan.classes[start:stop], plan.images[start:stop]
        if int(classes.min()) < 0 or int(classes.max()) >= self.num_classes:
            raise TaskShapeError(
                f"the plan names classes outside [0, {self.num_classes}): it was made for "
                "another sampler"
            )
        if (
            int(images.min()) < 0
            or int(images.max()) >= len(self._labels)
            or not bool(torch.all(self._labels[images] == self._base[classes].unsqueeze(2)))
        ):
            raise TaskShapeError(
                "the plan's images are not images of its classes: it was made for another "
                "sampler or dataset"
            )
        return self._materialise(classes, images, plan.shots, plan.queries)

    def fixed_tasks(self, n: int, seed: int, shots: int | None = None) -> TaskBatch:
        """The fixed evaluation set ``(n, seed)`` materialised at once (see
        :meth:`fixed_episode_indices`).

        It holds ``4·n·ways·(shots+queries)·C·H·W`` bytes of pixels (600 5-way 1-shot 15-query
        Omniglot episodes: 150 MB; mini-ImageNet: 4 GB) — for large sets use
        :meth:`fixed_task_chunks` instead.
        """
        return self.episodes_from_plan(self.fixed_episode_indices(n, seed, shots))

    def fixed_task_class_names(self, seed: int, shots: int | None = None) -> list[str]:
        """The class names of the first episode of the fixed set of ``seed``."""
        plan = self.fixed_episode_indices(1, seed, shots)
        return [self.class_name(int(c)) for c in plan.classes[0]]

    def fixed_task_chunks(
        self, n: int, seed: int, chunk_size: int = 100, shots: int | None = None
    ) -> Iterator[TaskBatch]:
        """The fixed evaluation set ``(n, seed)`` in batches of at most ``chunk_size`` episodes."""
        if chunk_size < 1:
            raise TaskShapeError(f"chunk_size must be at least 1, got {chunk_size}")
        plan = self.fixed_episode_indices(n, seed, shots)
        for start in range(0, n, chunk_size):
            yield self.episodes_from_plan(plan, start, min(start + chunk_size, n))

    # ------------------------------------------------------------------ materialisation

    def _materialise(self, classes: Tensor, images: Tensor, shots: int, queries: int) -> TaskBatch:
        b, ways = classes.shape
        c, h, w = self.image_shape
        per = queries + shots
        # One gather of every image of every episode, class by class: (b*ways, per, C, H, W).
        if self._pool_start is not None:
            rows = self._pool_start[classes].unsqueeze(2) + self._slot_of_row[images]
            x = self._images.index_select(0, rows.reshape(-1)).view(b * ways, per, c, h, w)
        else:
            x = self._images.index_select(0, images.reshape(-1)).view(b * ways, per, c, h, w)
            if self._rotations:
                rotate_groups(x, self._rot[classes.reshape(-1)], self._rotations)
        # Split into support (slots queries…) and query (slots …queries) while converting to float.
        sx = torch.empty((b, ways * shots, c, h, w), dtype=torch.float32)
        qx = torch.empty((b, ways * queries, c, h, w), dtype=torch.float32)
        to_float(sx.view(b * ways, shots, c, h, w), x[:, queries:], self._norm)
        to_float(qx.view(b * ways, queries, c, h, w), x[:, :queries], self._norm)
        labels = torch.arange(ways)
        sy = labels.repeat_interleave(shots).repeat(b, 1)
        qy = labels.repeat_interleave(queries).repeat(b, 1)
        return TaskBatch(sx, sy, qx, qy)

    def __repr__(self) -> str:
        rot = f", rotations={self._rotations}" if self._rotations else ""
        return (
            f"EpisodeSampler({self.dataset.name!r}, ways={self.ways}, shots={self.shots}, "
            f"queries={self.queries}, classes={self.num_classes}{rot})"
        )
