"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015, Science 350:1332): decoded once, split 3 ways.

1,623 handwritten characters from 50 alphabets, each drawn by 20 people: 32,460 PNGs of 105×105,
1-bit. The official archives are ``images_background.zip`` (30 alphabets, 964 characters) and
``images_evaluation.zip`` (20 alphabets, 659 characters) from github.com/brendenlake/omniglot.

**Preprocessing** (fixed, part of the cache key): each image is converted to 8-bit grey, resized
to 28×28 (Vinyals et al. 2016; Finn et al. 2017) with a Lanczos filter, i.e. antialiased, and
*inverted*, ``pixel = 255 - value``, so that the background is 0 and the strokes are bright — the
convention of the Prototypical Networks (``1 - x``) and MAML code. Note that Pillow resizes mode
``"1"`` images with nearest-neighbour whatever filter is asked for, so code that resizes the raw
PNGs gets binary 28×28 images; converting to grey first, as here, gives the antialiased images the
papers describe. All 32,460 images are decoded once into a ~25 MB cache (:mod:`metamap.data.cache`)
and every split is a selection of it.

**Splits** (:func:`omniglot`):

* ``protocol="vinyals"`` (Vinyals et al. 2016, as distributed with Prototypical Networks, Snell et
  al. 2017): class lists ``train``/``val``/``trainval``/``test`` (1,028 / 172 / 1,200 / 423
  characters), each line ``<Alphabet>/character<NN>/rot<DDD>``; a *class* is a character at one
  rotation, so there are 4×as many classes (4,112 / 688 / 4,800 / 1,692). The lists are not
  shipped with metamap. They are read from ``splits_root`` if given (your own lists: not
  checked), else from ``<root>/splits/vinyals`` or ``<cache>/omniglot/splits/vinyals``, checked
  against :data:`VINYALS_SHA256` (``verify=False`` skips that); with ``download=True`` a missing
  list is fetched from the Prototypical Networks repository at a pinned commit
  (:data:`VINYALS_URLS`) and checked against the same pins.
* ``protocol="maml"`` (Finn et al. 2017, after Santoro et al. 2016): a seeded random permutation of
  all 1,623 characters into 1,100 train, 100 val (together ``trainval``) and 423 test characters.
  MAML's own code shuffled ``os.listdir`` order with Python's ``random.seed(1)``, which is not
  reproducible across file systems; here the characters are in sorted order (background alphabets,
  then evaluation alphabets) and permuted by ``numpy.random.default_rng(seed)``. Rotations are off
  by default; ``rotations=True`` adds the 90/180/270° rotations as extra classes (the augmentation
  of Santoro et al. and MAML).
* ``protocol="lake"``: the original ``background`` (964 characters) / ``evaluation`` (659) sets.
* ``protocol="metadataset"`` (Triantafillou et al. 2020, Meta-Dataset's Omniglot): split by
  *alphabet*, so that an episode drawn within one alphabet (``task.hierarchy``) has all of that
  alphabet's characters: ``test`` is the 20 evaluation alphabets (659 characters), ``val`` the 5
  smallest background alphabets (:data:`METADATASET_VAL_ALPHABETS`, 81 characters), ``train``
  the other 25 (883), ``trainval`` all 30. No rotations by default.

**Rotations.** Images are stored once, unrotated. An :class:`OmniglotSplit` lists its *episode
classes* with ``class_base[c]`` (the character, an index into ``class_names``/``labels``) and
``class_rotations[c] = k``: class ``c`` is character ``class_base[c]`` rotated by ``k × 90°``
**counter-clockwise**, i.e. ``np.rot90(img, k, axes=(-2, -1))`` (= ``torch.rot90(x, k, (-2, -1))``
= PIL ``Image.rotate(90 * k)``). That is what ``rot090`` means in the Vinyals lists: the
Prototypical Networks code applies ``Image.rotate(90)`` (counter-clockwise) to the raw image.
(That code then also transposes every image, which changes no class; metamap does not transpose.)
Rotating the 28×28 image equals rotating before resizing up to small interpolation
differences (Pillow's resampling grid is not exactly mirror-symmetric: a few pixels differ).

Lake et al.'s 20 within-alphabet one-shot runs are read by :mod:`metamap.data.omniglot_runs`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from metamap.data.archive import extract_archive
from metamap.data.cache import (
    CachePlan,
    cache_key,
    cached_images,
    folder_fingerprint,
    resolve_cache_dir,
)
from metamap.data.dataset import ImageClassDataset
from metamap.data.download import download_url, verify_file
from metamap.data.images import (
    Resample,
    decode_images,
    image_names,
    parse_size,
)
from metamap.data.registry import DatasetSection, register_dataset
from metamap.errors import DataError

__all__ = [
    "METADATASET_VAL_ALPHABETS",
    "OMNIGLOT_ENV",
    "OMNIGLOT_MD5",
    "OMNIGLOT_SETS",
    "OMNIGLOT_SHA256",
    "OMNIGLOT_URLS",
    "VINYALS_SHA256",
    "VINYALS_URLS",
    "OmniglotData",
    "OmniglotProtocol",
    "OmniglotSplit",
    "omniglot",
    "omniglot_images",
    "omniglot_root",
]

OMNIGLOT_ENV = "METAMAP_OMNIGLOT"
OMNIGLOT_SETS = ("images_background", "images_evaluation")
_BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
OMNIGLOT_URLS = {name: f"{_BASE_URL}{name}.zip" for name in OMNIGLOT_SETS}
OMNIGLOT_SHA256: dict[str, str | None] = dict.fromkeys(OMNIGLOT_SETS)
"""sha256 of the official zips: ``None`` (none is published; the sha256 of a download is
logged). The zips are pinned by :data:`OMNIGLOT_MD5` instead, and the content is checked too
(official layout, every image must decode)."""
OMNIGLOT_MD5: dict[str, str] = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
"""MD5 of the official zips, as torchvision and most Omniglot loaders pin them."""

_VINYALS_BASE = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/"
    "c9bb4d258267c11cb6e23f0a19242d24ca98ad8a/data/omniglot/splits/vinyals/"
)
VINYALS_URLS = {s: f"{_VINYALS_BASE}{s}.txt" for s in ("train", "val", "trainval", "test")}
"""The Vinyals split lists as distributed with Prototypical Networks (Snell et al. 2017), at a
pinned commit so that :data:`VINYALS_SHA256` holds."""
VINYALS_SHA256 = {
    "train": "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0",
    "val": "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a",
    "trainval": "5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a",
    "test": "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204",
}
"""sha256 of each list at that commit (4,112 / 688 / 4,800 / 1,692 lines)."""

OmniglotProtocol = Literal["vinyals", "maml", "lake", "metadataset"]
_SPLITS: dict[str, tuple[str, ...]] = {
    "vinyals": ("train", "val", "trainval", "test"),
    "maml": ("train", "val", "trainval", "test"),
    "lake": ("background", "evaluation"),
    "metadataset": ("train", "val", "trainval", "test"),
}
METADATASET_VAL_ALPHABETS = (
    "Alphabet_of_the_Magi",
    "Blackfoot_(Canadian_Aboriginal_Syllabics)",
    "Inuktitut_(Canadian_Aboriginal_Syllabics)",
    "Ojibwe_(Canadian_Aboriginal_Syllabics)",
    "Tagalog",
)
"""Meta-Dataset's validation alphabets: the 5 background alphabets with the fewest characters
(14, 14, 16, 17 and 20), as its Omniglot conversion holds them out."""
MAML_TRAIN, MAML_VAL = 1100, 100
_ROT = re.compile(r"rot(\d{3})")


def _howto(where: str) -> str:
    return (
        f"Omniglot not found {where}. Either pass download=True (in a config: data.download: "
        f"true) to fetch {OMNIGLOT_URLS['images_background']} and "
        f"{OMNIGLOT_URLS['images_evaluation']} into the cache folder and extract them there, or "
        "download those two zips yourself and pass root=<folder holding them> (in a config: "
        f"data.root; or set {OMNIGLOT_ENV}), or point root= / data.root / {OMNIGLOT_ENV} at an "
        "extracted copy laid out as <root>/images_background/<Alphabet>/character<NN>/*.png "
        "and <root>/images_evaluation/<Alphabet>/character<NN>/*.png"
    )


def _has_sets(folder: Path) -> bool:
    return all((folder / s).is_dir() for s in OMNIGLOT_SETS)


def _extract_sets(zips: dict[str, Path], dest: Path, *, verify: bool) -> None:
    """Extract the zips of the sets not yet in ``dest``; ``verify``: check them against
    :data:`OMNIGLOT_SHA256`/:data:`OMNIGLOT_MD5` first (all of them, before extracting any)."""
    needed = {name: z for name, z in zips.items() if not (dest / name).is_dir()}
    if verify:
        for name, zip_path in needed.items():
            verify_file(zip_path, OMNIGLOT_SHA256[name], OMNIGLOT_MD5[name], what="Omniglot zip")
    dest.mkdir(parents=True, exist_ok=True)
    for name, zip_path in needed.items():
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        try:
            extract_archive(zip_path, tmp)
            if not (tmp / name).is_dir():
                raise DataError(
                    f"{zip_path} does not hold a top-level folder {name}/ as the official "
                    "Omniglot zip does; download it again"
                )
            os.replace(tmp / name, dest / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def omniglot_root(
    root: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    verify: bool = True,
) -> Path:
    """The folder holding ``images_background/`` and ``images_evaluation/``.

    Looked up in ``root``, else ``$METAMAP_OMNIGLOT``, else ``<cache>/omniglot``. A folder that
    holds the two official zips instead is extracted (safely) into ``<cache>/omniglot``, after
    checking them against the pinned checksums (:data:`OMNIGLOT_MD5`; ``verify=False`` skips
    that, for your own modified zips). With ``download=True`` and no data found, the zips are
    downloaded into ``<cache>/downloads`` (always checked). An extracted folder is not checked.
    """
    cache = resolve_cache_dir(cache_dir)
    extracted = cache / "omniglot"
    if root is not None:
        candidate, where = Path(root).expanduser(), f"at root={str(root)!r}"
    elif os.environ.get(OMNIGLOT_ENV):
        candidate = Path(os.environ[OMNIGLOT_ENV]).expanduser()
        where = f"at {OMNIGLOT_ENV}={str(candidate)!r}"
    else:
        candidate, where = extracted, f"(no root= given, {OMNIGLOT_ENV} unset, not in {extracted})"
    if _has_sets(candidate):
        return candidate
    zips = {s: candidate / f"{s}.zip" for s in OMNIGLOT_SETS}
    if not all(z.is_file() for z in zips.values()):
        zips = {s: cache / "downloads" / f"{s}.zip" for s in OMNIGLOT_SETS}
    found = all(z.is_file() for z in zips.values())
    if not found:
        if not download:
            raise DataError(_howto(where))
        for s, z in zips.items():  # checked by download_url
            download_url(OMNIGLOT_URLS[s], z, OMNIGLOT_SHA256[s], md5=OMNIGLOT_MD5[s])
    target = candidate if candidate == extracted else extracted
    _extract_sets(zips, target, verify=verify and found)
    return target


def _scan(root: Path) -> tuple[list[str], list[str], list[list[str]]]:
    """(class names, their set, their image paths relative to root), sorted set/alphabet/char."""
    names: list[str] = []
    sets: list[str] = []
    files: list[list[str]] = []
    for s in OMNIGLOT_SETS:
        alphabets = sorted(p.name for p in (root / s).iterdir() if p.is_dir())
        if not alphabets:
            raise DataError(
                f"{root / s} holds no alphabet folders; expected "
                f"{root / s}/<Alphabet>/character<NN>/*.png"
            )
        for alphabet in alphabets:
            for char in sorted(p.name for p in (root / s / alphabet).iterdir() if p.is_dir()):
                rel = f"{s}/{alphabet}/{char}"
                imgs = image_names(root / rel)
                if not imgs:
                    raise DataError(f"Omniglot character folder {root / rel} holds no images")
                names.append(f"{alphabet}/{char}")
                sets.append(s)
                files.append([f"{rel}/{name}" for name in imgs])
    if len(set(names)) != len(names):
        raise DataError(f"{root}: an alphabet appears in both {OMNIGLOT_SETS}")
    return names, sets, files


def omniglot_images(
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int | Sequence[int] = 28,
    resample: Resample = "lanczos",
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    progress: bool = False,
    verify: bool = True,
) -> ImageClassDataset:
    """All Omniglot images (32,460 for the real data), one class per character, decoded once.

    Classes are ``"<Alphabet>/character<NN>"``: the background alphabets (sorted), then the
    evaluation alphabets. Images: ``(N, 1, H, W)`` uint8, background 0, strokes bright.
    ``verify``: see :func:`omniglot_root`.
    """
    data_root = omniglot_root(root, cache_dir=cache_dir, download=download, verify=verify)
    names, sets, files = _scan(data_root)
    rel = [f for fs in files for f in fs]
    flat = [os.path.join(data_root, f) for f in rel]
    hw = parse_size(image_size)
    key = cache_key(
        source=folder_fingerprint(data_root, flat),
        loader="omniglot",
        size=hw,
        mode="L",
        resample=resample,
        invert=True,
    )

    def plan() -> CachePlan:
        def fill(out: npt.NDArray[np.uint8]) -> None:
            decode_images(
                flat,
                out,
                hw,
                "L",
                resample=resample,
                invert=True,
                progress=progress,
                desc="omniglot",
            )

        return CachePlan(
            labels=np.repeat(np.arange(len(files), dtype=np.int64), [len(f) for f in files]),
            class_names=names,
            sources=rel,
            image_shape=(1, *hw),
            fill=fill,
            meta={"class_sets": sets, "root": str(data_root.resolve())},
        )

    dataset = cached_images("omniglot", key, plan, cache_dir).dataset
    return replace(dataset, inverted=True)  # bright strokes on black


@dataclass(frozen=True, kw_only=True)
class OmniglotSplit(ImageClassDataset):
    """An Omniglot split: unrotated characters plus the (character, rotation) episode classes.

    The :class:`ImageClassDataset` fields describe the stored characters: ``class_names[i]`` is
    ``"<Alphabet>/character<NN>"`` and ``labels`` index them, so a sampler unaware of rotations
    sees plain characters. Episode class ``c`` (``0 <= c < num_episode_classes``) is character
    ``class_base[c]`` rotated by ``class_rotations[c] × 90°`` counter-clockwise
    (``np.rot90(x, k, axes=(-2, -1))``); :meth:`episode_class_images` returns its images.
    """

    class_base: npt.NDArray[np.int64]
    class_rotations: npt.NDArray[np.int64]
    episode_class_names: tuple[str, ...]
    protocol: str
    split: str

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.class_base.shape
        if self.class_rotations.shape != n or len(self.episode_class_names) != n[0]:
            raise ValueError(f"{self.name}: class_base, class_rotations and names differ in length")
        if n[0] and (self.class_base.min() < 0 or self.class_base.max() >= self.num_classes):
            raise ValueError(f"{self.name}: class_base must lie in [0, {self.num_classes})")
        if n[0] and (self.class_rotations.min() < 0 or self.class_rotations.max() > 3):
            raise ValueError(f"{self.name}: class_rotations must lie in [0, 3]")

    def episode_classes(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The (character, rotation) episode classes: ``(class_rotations, class_base)``."""
        return self.class_rotations, self.class_base

    @property
    def num_episode_classes(self) -> int:
        """How many (character, rotation) classes episodes are drawn from."""
        return int(self.class_base.shape[0])

    def episode_class_images(self, c: int) -> npt.NDArray[np.uint8]:
        """Images of episode class ``c``: its character's images, rotated (a new array)."""
        idx = np.flatnonzero(self.labels == self.class_base[c])
        k = int(self.class_rotations[c])
        return np.ascontiguousarray(np.rot90(self.images[idx], k, axes=(-2, -1)))


_TAKE_LISTS = (
    "take data/omniglot/splits/vinyals/{train,val,trainval,test}.txt from "
    "github.com/jakesnell/prototypical-networks and pass splits_root=<that folder> (in a config: "
    "data.splits_root)"
)


def _vinyals_list(
    split: str,
    data_root: Path,
    splits_root: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    download: bool,
    verify: bool,
) -> Path:
    """The Vinyals list of ``split``: in ``splits_root`` if given (not checked: your own lists),
    else beside the data or in the cache (sha256-checked if ``verify``), else
    (``download=True``) fetched into the cache and sha256-checked."""
    name = f"{split}.txt"
    if splits_root is not None:
        path = Path(splits_root).expanduser() / name
        if not path.is_file():
            raise DataError(
                f"Vinyals split list {path} not found. It is not shipped with metamap: "
                f"{_TAKE_LISTS}, or leave splits_root unset and pass download=True (in a config: "
                "data.download: true)"
            )
        return path
    cached = resolve_cache_dir(cache_dir) / "omniglot" / "splits" / "vinyals"
    for folder in (data_root / "splits" / "vinyals", cached):
        if (folder / name).is_file():
            if verify:
                verify_file(folder / name, VINYALS_SHA256[split], what="Vinyals split list")
            return folder / name
    if download:
        return download_url(VINYALS_URLS[split], cached / name, VINYALS_SHA256[split])
    raise DataError(
        f"Vinyals split list {name} not found in {data_root / 'splits' / 'vinyals'} or {cached}. "
        "It is not shipped with metamap. Pass download=True (in a config: data.download: true) "
        f"to fetch it from {VINYALS_URLS[split]} (sha256-checked), or {_TAKE_LISTS}, or use "
        "protocol='maml' (data.protocol: maml), which needs no lists"
    )


def _read_vinyals(path: Path, known: dict[str, int]) -> list[tuple[int, int, str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        char, _, rot = line.rpartition("/")
        m = _ROT.fullmatch(rot)
        if m is None or int(m.group(1)) % 90 or int(m.group(1)) >= 360:
            raise DataError(
                f"{path}:{n}: {line!r} is not '<Alphabet>/character<NN>/rot<000|090|180|270>'"
            )
        if char not in known:
            raise DataError(f"{path}:{n}: character {char!r} is not in the Omniglot data")
        rows.append((known[char], int(m.group(1)) // 90, line))
    if not rows:
        raise DataError(f"Vinyals split list {path} is empty")
    return rows


def omniglot(
    split: str = "train",
    protocol: OmniglotProtocol = "vinyals",
    *,
    root: str | os.PathLike[str] | None = None,
    splits_root: str | os.PathLike[str] | None = None,
    rotations: bool | None = None,
    seed: int = 1,
    image_size: int | Sequence[int] = 28,
    resample: Resample = "lanczos",
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    progress: bool = False,
    verify: bool = True,
) -> OmniglotSplit:
    """One split of Omniglot under a protocol (see the module docstring).

    ``split``: ``train``/``val``/``trainval``/``test`` (``vinyals``, ``maml``, ``metadataset``)
    or ``background``/``evaluation`` (``lake``). ``rotations``: ``None`` keeps the protocol's
    default (``vinyals``: the rotations its lists name; the others: none); ``True`` makes
    every character at 0/90/180/270° a class; ``False`` keeps each character once, unrotated.
    ``seed`` only matters for ``maml``. ``download=True`` fetches what is missing: the official
    zips (:func:`omniglot_root`) and, for ``vinyals`` without ``splits_root``, the split list.
    ``verify=False`` uses zips and split lists found on disk without checking them against their
    pinned checksums: for your own modified copies (downloads are always checked).
    """
    if protocol not in _SPLITS:
        raise ValueError(f"protocol must be one of {sorted(_SPLITS)}, got {protocol!r}")
    if split not in _SPLITS[protocol]:
        raise ValueError(f"split of protocol {protocol!r} must be one of {_SPLITS[protocol]}")
    data_root = omniglot_root(root, cache_dir=cache_dir, download=download, verify=verify)
    if protocol == "vinyals":  # found (or fetched) before the images are decoded
        list_path = _vinyals_list(split, data_root, splits_root, cache_dir, download, verify)
    full = omniglot_images(
        data_root,
        image_size=image_size,
        resample=resample,
        cache_dir=cache_dir,
        download=download,
        progress=progress,
        verify=verify,
    )
    names = list(full.class_names)
    rows: list[tuple[int, int, str]]
    if protocol == "vinyals":
        rows = _read_vinyals(list_path, {n: i for i, n in enumerate(names)})
    else:
        if protocol == "maml":
            if len(names) <= MAML_TRAIN + MAML_VAL:
                raise DataError(
                    f"the MAML split needs more than {MAML_TRAIN + MAML_VAL} characters; the "
                    f"Omniglot data found has {len(names)}. Is it complete?"
                )
            perm = np.random.default_rng(seed).permutation(len(names))
            parts = {
                "train": perm[:MAML_TRAIN],
                "val": perm[MAML_TRAIN : MAML_TRAIN + MAML_VAL],
                "trainval": perm[: MAML_TRAIN + MAML_VAL],
                "test": perm[MAML_TRAIN + MAML_VAL :],
            }
            chars = np.sort(parts[split]).tolist()
        elif protocol == "metadataset":
            chars = _metadataset_characters(full, split)
        else:
            sets = _class_sets(full)
            want = "images_background" if split == "background" else "images_evaluation"
            chars = [i for i, s in enumerate(sets) if s == want]
        rows = [(c, 0, f"{names[c]}/rot000") for c in chars]
    if rotations is True:
        chars = sorted({c for c, _, _ in rows})
        rows = [(c, k, f"{names[c]}/rot{90 * k:03d}") for c in chars for k in range(4)]
    elif rotations is False:
        seen: dict[int, None] = {}
        for c, _, _ in rows:
            seen.setdefault(c)
        rows = [(c, 0, f"{names[c]}/rot000") for c in seen]
    return _select(full, rows, protocol, split)


def _metadataset_characters(full: ImageClassDataset, split: str) -> list[int]:
    """The characters of a split of the ``metadataset`` protocol (alphabet-level, see module)."""
    sets = _class_sets(full)
    alphabet = [name.split("/", 1)[0] for name in full.class_names]
    background = {a for a, s in zip(alphabet, sets, strict=True) if s == "images_background"}
    missing = sorted(set(METADATASET_VAL_ALPHABETS) - background)
    if missing:
        raise DataError(
            f"the Meta-Dataset split holds out background alphabets the Omniglot data found "
            f"lacks: {', '.join(missing)}. Is it complete (images_background.zip, 30 alphabets)?"
        )
    if split == "test":
        return [c for c, s in enumerate(sets) if s == "images_evaluation"]
    chars = [c for c, s in enumerate(sets) if s == "images_background"]
    if split == "trainval":
        return chars
    validation = split == "val"
    return [c for c in chars if (alphabet[c] in METADATASET_VAL_ALPHABETS) == validation]


def _class_sets(full: ImageClassDataset) -> list[str]:
    """Which official set (``images_background``/``images_evaluation``) each character is in."""
    sets = [""] * full.num_classes
    for source, label in zip(full.sources, full.labels.tolist(), strict=True):
        sets[label] = source.split("/", 1)[0]
    return sets


def _select(
    full: ImageClassDataset, rows: list[tuple[int, int, str]], protocol: str, split: str
) -> OmniglotSplit:
    base_chars = sorted({c for c, _, _ in rows})
    position = {c: i for i, c in enumerate(base_chars)}
    per_class = full.class_indices()
    idx = np.concatenate([per_class[c] for c in base_chars])
    images = np.asarray(full.images[idx])
    images.setflags(write=False)
    labels = np.concatenate(
        [np.full(len(per_class[c]), position[c], dtype=np.int64) for c in base_chars]
    )
    return OmniglotSplit(
        images=images,
        labels=labels,
        class_names=tuple(full.class_names[c] for c in base_chars),
        sources=tuple(full.sources[i] for i in idx.tolist()) if full.sources else (),
        name=f"omniglot-{protocol}-{split}",
        inverted=full.inverted,
        class_base=np.asarray([position[c] for c, _, _ in rows], dtype=np.int64),
        class_rotations=np.asarray([k for _, k, _ in rows], dtype=np.int64),
        episode_class_names=tuple(name for _, _, name in rows),
        protocol=protocol,
        split=split,
    )


@register_dataset
class OmniglotData(DatasetSection):
    """``data.name: omniglot``: :func:`omniglot` under ``protocol``, grey images of any size."""

    name: Literal["omniglot"] = "omniglot"
    protocol: Literal["vinyals", "maml", "metadataset"] = "vinyals"
    """The class split: ``vinyals`` (ProtoNets: 1,028 / 172 / 423 characters, each in 4
    rotations; ``trainval`` is the first two, 1,200), ``maml`` (seeded 1,100 / 100 / 423
    characters) or ``metadataset`` (by alphabet: 25 / 5 / 20 alphabets, 883 / 81 / 659
    characters)."""

    colour: ClassVar[bool | None] = False
    hierarchical: ClassVar[bool] = True

    loader = staticmethod(omniglot)
    keywords = (
        "protocol",
        "root",
        "splits_root",
        "image_size",
        "cache_dir",
        "download",
        "verify",
        "progress",
    )

    def preprocessing(self) -> dict[str, Any]:
        return {**super().preprocessing(), "invert": True}  # bright strokes on black

    def split_note(self) -> str:
        return f" ({self.protocol} split)"
