"""MovieLens 100K and 1M ratings (Harper & Konstan, "The MovieLens Datasets: History and Context",
ACM Transactions on Interactive Intelligent Systems 5(4):19, 2015), parsed once into the cache.

:func:`load_movielens` returns a :class:`MovieLens`: ``R`` ratings by ``U`` users of ``I`` movies
with ``G`` genres (100K: 100,000 / 943 / 1,682 / 19 incl. ``"unknown"``; 1M: 1,000,209 / 6,040 /
3,883 listed in ``movies.dat`` of which 3,706 are rated / 18). Ratings, in the order of the file:
``user``, ``item`` ``(R,)`` int64 positions into ``user_ids (U,)`` / ``item_ids (I,)`` (original
ids, ascending), ``rating (R,)`` float32 stars 1..5, ``timestamp (R,)`` int64 unix seconds. Users:
``gender``, ``age``, ``occupation``, ``zip_prefix`` ``(U,)`` int64 codes, 0 unknown (an
unrecognised value is unknown too), mapped by :func:`gender_code`, :func:`age_group` (1M: its
age codes), ``occupation_names`` (code ``c``: ``occupation_names[c - 1]``) and :func:`zip_prefix`,
which also encode a user who is not in the files. Movies: ``titles`` (``I`` strings, latin-1),
``genres (I, G)`` bool, ``year (I,)`` int64.

**Where the data come from.** ``root`` (else ``$METAMAP_MOVIELENS``) is the extracted folder
(``u.data``, ``u.user``, ``u.item``, ``u.genre``, ``u.occupation``; or ``ratings.dat``,
``users.dat``, ``movies.dat``), a folder holding ``ml-100k/`` / ``ml-1m/``, the official zip or a
folder holding it. A zip is checked against GroupLens' MD5 (``verify=False`` skips that) and
extracted (safely) into a temporary folder only when the cache is built. With no root,
``download=True`` fetches the zip into ``<cache>/downloads`` (a zip already there is used). The
MovieLens licence forbids redistribution: metamap ships no copy.

**Cache.** The parsed arrays go to ``<cache>/movielens-<variant>-<key>.npz`` (``np.savez``, read
with ``allow_pickle=False``) plus a ``.json`` sidecar of the strings, both written atomically; the
key hashes the source (the zip's sha256, or the files' names, sizes and times) and a format
version. An unreadable cache is rebuilt.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from metamap.data.archive import extract_archive
from metamap.data.cache import cache_key, file_checksum, folder_fingerprint, resolve_cache_dir
from metamap.data.download import download_url, verify_file
from metamap.errors import DataError
from metamap.fileio import atomic_write

__all__ = [
    "AGE_GROUPS",
    "GENRES_1M",
    "MAX_ITEM_ID",
    "MOVIELENS_ENV",
    "MOVIELENS_MD5",
    "MOVIELENS_URLS",
    "OCCUPATIONS_1M",
    "MovieLens",
    "Variant",
    "age_group",
    "gender_code",
    "load_movielens",
    "zip_prefix",
]

log = logging.getLogger(__name__)

MOVIELENS_ENV = "METAMAP_MOVIELENS"
Variant = Literal["100k", "1m"]
MAX_ITEM_ID: dict[str, int] = {"100k": 1682, "1m": 3952}
"""The largest movie id of each official archive."""
AGE_GROUPS = ("under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
"""The 1M age groups, codes 1..7 (0: unknown); 100K's exact ages are mapped to them."""
GENRES_1M = (
    *("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary"),
    *("Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi"),
    *("Thriller", "War", "Western"),
)
"""The 18 genres of ``movies.dat``, in the order of the 1M README."""
OCCUPATIONS_1M = (
    *("other", "academic/educator", "artist", "clerical/admin", "college/grad student"),
    *("customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker"),
    *("K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist"),
    *("self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"),
)
"""The 21 occupations of ``users.dat`` (its codes 0-20, in the order of the 1M README; code 0 is
"other" or not specified)."""
MOVIELENS_URLS = {
    v: f"https://files.grouplens.org/datasets/movielens/ml-{v}.zip" for v in MAX_ITEM_ID
}
MOVIELENS_MD5 = {
    "100k": "0e33842e24a9c977be4e0107933c0723",
    "1m": "c4d9eecfca2ab87c1945afe126590906",
}
"""MD5 of the official zips, as GroupLens publishes them."""

_FILES = {
    "100k": ("u.data", "u.user", "u.item", "u.genre", "u.occupation"),
    "1m": ("ratings.dat", "users.dat", "movies.dat"),
}
_FORMAT_VERSION = 2  # 2: the occupation names
_ARRAYS = (
    *("user_ids", "item_ids", "user", "item", "rating", "timestamp", "gender", "age"),
    *("occupation", "zip_prefix", "genres", "year"),
)
_GENDER = {"F": 1, "M": 2}
_AGE_1M = {1: 1, 18: 2, 25: 3, 35: 4, 45: 5, 50: 6, 56: 7}
_AGE_STARTS = (18, 25, 35, 45, 50, 56)
_YEAR_1M = re.compile(r"\((\d{4})\)\s*$")
_YEAR_100K = re.compile(r"\d{1,2}-[A-Za-z]{3}-(\d{4})")


@dataclass(frozen=True, eq=False, repr=False)
class MovieLens:
    """MovieLens ratings with user and movie side information (shapes: see the module)."""

    variant: str
    user_ids: Tensor
    item_ids: Tensor
    titles: tuple[str, ...]
    genre_names: tuple[str, ...]
    occupation_names: tuple[str, ...]
    """The name of each occupation code ``c >= 1`` is ``occupation_names[c - 1]`` (100K: the lines
    of ``u.occupation``; 1M: :data:`OCCUPATIONS_1M`)."""
    user: Tensor
    item: Tensor
    rating: Tensor
    timestamp: Tensor
    gender: Tensor
    age: Tensor
    occupation: Tensor
    zip_prefix: Tensor
    genres: Tensor
    year: Tensor
    scale: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        u, i, r, g = self.num_users, self.num_items, self.num_ratings, len(self.genre_names)
        want: dict[str, tuple[int, ...]] = dict.fromkeys(("item", "rating", "timestamp"), (r,))
        want |= dict.fromkeys(("gender", "age", "occupation", "zip_prefix"), (u,))
        want |= {"year": (i,), "genres": (i, g), "item_ids": (i,)}
        bad = [k for k, s in want.items() if tuple(getattr(self, k).shape) != s]
        if bad or len(self.titles) != i or self.user_ids.dim() != 1 or self.user.dim() != 1:
            raise ValueError(f"MovieLens: inconsistent shapes of {bad or ['titles/user_ids']}")
        if u and int(self.occupation.max()) > len(self.occupation_names):
            raise ValueError("MovieLens: an occupation code has no name in occupation_names")

    def __repr__(self) -> str:
        return (
            f"MovieLens({self.variant}: {self.num_users} users, {self.num_items} items, "
            f"{self.num_ratings} ratings)"
        )

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_ratings(self) -> int:
        return len(self.user)

    def occupation_code(self, name: str) -> int:
        """The code of the occupation ``name`` as the loader gives it (0: not in the list)."""
        return {s: k for k, s in enumerate(self.occupation_names, 1)}.get(name, 0)

    def item_positions(self, ids: Tensor | Sequence[int]) -> Tensor:
        """The positions in ``item_ids`` of the original movie ids ``ids`` (same shape)."""
        q = torch.as_tensor(ids, dtype=torch.int64)
        if self.num_items == 0:
            unknown = q.flatten()
        else:
            pos = torch.searchsorted(self.item_ids, q).clamp_(max=self.num_items - 1)
            unknown = q[self.item_ids[pos] != q]
        if unknown.numel():
            few = np.unique(unknown.numpy()).tolist()
            raise DataError(
                f"MovieLens {self.variant}: unknown movie ids {few[:5]}"
                + (f" and {len(few) - 5} more" if len(few) > 5 else "")
                + "; the ids are those of the movies file (u.item / movies.dat)"
            )
        return pos

    def user_ratings(self) -> list[Tensor]:
        """Per user position, the indices of its ratings, sorted by (timestamp, item id)."""
        user = self.user.numpy()
        order = np.lexsort((self.item.numpy(), self.timestamp.numpy(), user)).astype(np.int64)
        counts = np.bincount(user, minlength=self.num_users).tolist()
        return list(torch.split(torch.from_numpy(order), counts))


@dataclass(frozen=True)
class _Source:
    """The folder the files are read from, how messages name them, and what to do about it."""

    folder: Path
    label: str  # the folder with a trailing separator, or "<zip> member ml-1m/"
    fix: str

    def error(self, name: str, line: int | None, problem: str) -> DataError:
        where = f"{self.label}{name}" + (f", line {line}" if line else "")
        return DataError(f"{where}: {problem}. {self.fix}")

    def lines(self, name: str) -> list[tuple[int, str]]:
        """The non-blank lines (number, text) of a latin-1 file."""
        try:
            text = (self.folder / name).read_bytes().decode("latin-1")
        except FileNotFoundError:
            raise self.error(name, None, "missing") from None
        except OSError as e:
            raise self.error(name, None, f"cannot be read ({e})") from e
        return [(n, s.rstrip("\r")) for n, s in enumerate(text.split("\n"), 1) if s.strip()]

    def fields(self, name: str, n: int, line: str, sep: str | None, count: int) -> list[str]:
        parts = line.split(sep)
        if len(parts) != count:
            raise self.error(name, n, f"{len(parts)} fields where {count} are expected: {line!r}")
        return parts

    def integer(self, name: str, n: int, value: str, what: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise self.error(name, n, f"the {what} {value!r} is not an integer") from None

    def new_id(self, name: str, n: int, value: str, seen: dict[int, int], top: int = 0) -> int:
        """An id of the users/items file: positive, new (``seen``: id -> line), at most ``top``."""
        i = self.integer(name, n, value, "id")
        if i < 1:
            raise self.error(name, n, f"the id {i} is not positive")
        if i in seen:
            raise self.error(name, n, f"the id {i} was already listed on line {seen[i]}")
        if top and i > top:
            problem = f"the movie id {i} is above {top}, the largest of the official archive"
            raise self.error(name, n, f"{problem}: this is not the official archive")
        seen[i] = n
        return i


def gender_code(letter: str) -> int:
    """The gender code of a users file's letter: ``F`` 1, ``M`` 2, anything else 0 (unknown)."""
    return _GENDER.get(letter, 0)


def age_group(years: int) -> int:
    """The age-group code 1..7 (:data:`AGE_GROUPS`) of an age in years, 0 (unknown) if not
    positive: 100K's exact ages. The 1M file's age codes 1, 18, 25, ... are the groups' first
    years, so they get their own group from this function too."""
    return int(np.searchsorted(_AGE_STARTS, years, side="right")) + 1 if years > 0 else 0


def zip_prefix(code: str) -> int:
    """The zip-prefix code of a zip code: its first digit + 1, 0 (unknown) if it does not start
    with a digit (a non-US postal code)."""
    return int(code[0]) + 1 if code[:1].isdigit() and code[:1].isascii() else 0


def _ratings(src: _Source, name: str, sep: str) -> tuple[npt.NDArray[np.int64], list[int]]:
    """The ``(R, 4)`` table ``user item rating timestamp`` and the line number of each row."""
    lines = src.lines(name)
    numbers = [n for n, _ in lines]
    body = "\n".join(s for _, s in lines)
    try:  # fast path: numpy reads 4 tab-separated integers a line, or refuses
        if not lines or (sep != "\t" and "\t" in body):
            raise ValueError("empty, or a tab in a '::' file")
        text = io.StringIO(body.replace(sep, "\t"))
        table = np.loadtxt(text, np.int64, comments=None, delimiter="\t", ndmin=2)
        if table.shape != (len(lines), 4):
            raise ValueError(f"shape {table.shape}")
    except ValueError:  # find the bad line and name it (or accept what the slow path reads)
        rows = []
        for n, line in lines:
            f = src.fields(name, n, line, sep if sep != "\t" else None, 4)
            try:
                rows.append([int(x) for x in f])
            except ValueError:
                problem = f"the fields 'user item rating timestamp' must be integers: {line!r}"
                raise src.error(name, n, problem) from None
        table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    bad = np.flatnonzero((table[:, 2] < 1) | (table[:, 2] > 5))
    if bad.size:
        raise src.error(name, numbers[bad[0]], f"the rating {table[bad[0], 2]} is not 1..5")
    return table, numbers


def _parse_100k(src: _Source) -> MovieLens:
    genres: dict[int, str] = {}
    for n, line in src.lines("u.genre"):
        g, index = src.fields("u.genre", n, line, "|", 2)
        genres[src.integer("u.genre", n, index, "genre index")] = g
    if sorted(genres) != list(range(len(genres))):
        raise src.error("u.genre", None, f"the genre indices {sorted(genres)} are not 0..G-1")
    jobs = tuple(s.strip() for _, s in src.lines("u.occupation"))
    code = {s: k for k, s in enumerate(jobs, 1)}
    users: dict[int, list[int]] = {}
    seen: dict[int, int] = {}
    for n, line in src.lines("u.user"):
        uid, age, gender, job, zip_code = src.fields("u.user", n, line, "|", 5)
        years = src.integer("u.user", n, age, "age")
        users[src.new_id("u.user", n, uid, seen)] = [
            gender_code(gender),
            age_group(years),
            code.get(job, 0),
            zip_prefix(zip_code),
        ]
    items: dict[int, tuple[str, int, list[bool]]] = {}
    seen = {}
    for n, line in src.lines("u.item"):
        f = src.fields("u.item", n, line, "|", 5 + len(genres))
        flags = [src.integer("u.item", n, x, "genre flag") for x in f[5:]]
        if not set(flags) <= {0, 1}:
            raise src.error("u.item", n, f"genre flags must be 0 or 1, got {f[5:]}")
        m = _YEAR_100K.fullmatch(f[2].strip())
        iid = src.new_id("u.item", n, f[0], seen, MAX_ITEM_ID["100k"])
        items[iid] = (f[1], int(m[1]) if m else 0, [x == 1 for x in flags])
    names = tuple(genres[k] for k in range(len(genres)))
    return _assemble("100k", src, _ratings(src, "u.data", "\t"), users, items, names, jobs)


def _parse_1m(src: _Source) -> MovieLens:
    users: dict[int, list[int]] = {}
    seen: dict[int, int] = {}
    for n, line in src.lines("users.dat"):
        uid, gender, age, job, zip_code = src.fields("users.dat", n, line, "::", 5)
        code = src.integer("users.dat", n, job, "occupation")
        users[src.new_id("users.dat", n, uid, seen)] = [
            gender_code(gender),
            _AGE_1M.get(src.integer("users.dat", n, age, "age"), 0),
            code + 1 if 0 <= code < len(OCCUPATIONS_1M) else 0,
            zip_prefix(zip_code),
        ]
    column = {g: k for k, g in enumerate(GENRES_1M)}
    items: dict[int, tuple[str, int, list[bool]]] = {}
    seen = {}
    for n, line in src.lines("movies.dat"):
        head, _, tail = line.partition("::")
        title, sep, names = tail.rpartition("::")
        if not sep:
            raise src.error("movies.dat", n, f"expected 'MovieID::Title::Genres', got {line!r}")
        flags = [False] * len(GENRES_1M)
        for g in filter(None, names.strip().split("|")):
            if g not in column:
                raise src.error("movies.dat", n, f"unknown genre {g!r} (known: {GENRES_1M})")
            flags[column[g]] = True
        m = _YEAR_1M.search(title)
        iid = src.new_id("movies.dat", n, head, seen, MAX_ITEM_ID["1m"])
        items[iid] = (title, int(m[1]) if m else 0, flags)
    ratings = _ratings(src, "ratings.dat", "::")
    return _assemble("1m", src, ratings, users, items, GENRES_1M, OCCUPATIONS_1M)


def _assemble(
    variant: str,
    src: _Source,
    ratings: tuple[npt.NDArray[np.int64], list[int]],
    users: dict[int, list[int]],
    items: dict[int, tuple[str, int, list[bool]]],
    genre_names: tuple[str, ...],
    occupation_names: tuple[str, ...],
) -> MovieLens:
    """Map the ratings' ids to positions, checking that every id is known and no pair repeats."""
    table, numbers = ratings
    ratings_file, users_file, items_file = _FILES[variant][:3]
    ids = {"user": np.array(sorted(users), dtype=np.int64)}
    ids["item"] = np.array(sorted(items), dtype=np.int64)
    pos = {}
    for col, (what, listed) in enumerate((("user", users_file), ("item", items_file))):
        known = ids[what]
        p = np.searchsorted(known, table[:, col]).clip(max=max(len(known) - 1, 0))
        bad = np.flatnonzero(known[p] != table[:, col]) if len(known) else np.arange(len(p))
        if bad.size:
            problem = f"the {what} id {table[bad[0], col]} is not in {listed}"
            raise src.error(ratings_file, numbers[bad[0]], problem)
        pos[what] = p.astype(np.int64)
    pair = pos["user"] * max(len(ids["item"]), 1) + pos["item"]
    _, first, counts = np.unique(pair, return_index=True, return_counts=True)
    if (counts > 1).any():
        a = first[np.flatnonzero(counts > 1)[0]]
        b = np.flatnonzero(pair == pair[a])[1]
        problem = f"user {table[b, 0]} rates movie {table[b, 1]} again (first on line {numbers[a]})"
        raise src.error(ratings_file, numbers[b], problem)
    demo = np.array([users[u] for u in ids["user"].tolist()], dtype=np.int64).reshape(-1, 4)
    rows = [items[i] for i in ids["item"].tolist()]
    genres = np.array([r[2] for r in rows], dtype=bool).reshape(len(rows), len(genre_names))
    t = torch.from_numpy
    return MovieLens(
        variant=variant,
        user_ids=t(ids["user"]),
        item_ids=t(ids["item"]),
        titles=tuple(r[0] for r in rows),
        genre_names=tuple(genre_names),
        occupation_names=tuple(occupation_names),
        user=t(pos["user"]),
        item=t(pos["item"]),
        rating=t(table[:, 2].astype(np.float32)),
        timestamp=t(table[:, 3].copy()),
        gender=t(demo[:, 0].copy()),
        age=t(demo[:, 1].copy()),
        occupation=t(demo[:, 2].copy()),
        zip_prefix=t(demo[:, 3].copy()),
        genres=t(genres),
        year=t(np.array([r[1] for r in rows], dtype=np.int64)),
    )


_PARSERS = {"100k": _parse_100k, "1m": _parse_1m}


def _find(
    variant: str, root: str | os.PathLike[str] | None, download: bool, cache: Path
) -> tuple[Path, bool]:
    """The folder holding the files, or the zip (downloaded into the cache if asked); and
    whether it was just downloaded (so already checked)."""
    sub, zip_name, url = f"ml-{variant}", f"ml-{variant}.zip", MOVIELENS_URLS[variant]
    if root is None and os.environ.get(MOVIELENS_ENV):
        root, where = os.environ[MOVIELENS_ENV], f"${MOVIELENS_ENV}={os.environ[MOVIELENS_ENV]!r}"
    else:
        where = f"root={str(root)!r}"
    if root is None:
        zip_path = cache / "downloads" / zip_name
        if not zip_path.is_file():
            if not download:
                raise DataError(
                    f"MovieLens {variant} not found: no root= given and ${MOVIELENS_ENV} unset. "
                    f"Pass download=True (in a config: task.download: true) to fetch {url} into "
                    f"{zip_path.parent}, or download it from https://grouplens.org/datasets/"
                    f"movielens/ and set the data root (root=, task.root or ${MOVIELENS_ENV}) to "
                    f"the zip, the folder holding it or the extracted {sub}/ folder. The MovieLens "
                    "licence forbids redistribution, so metamap ships no copy"
                )
            return download_url(url, zip_path, md5=MOVIELENS_MD5[variant]), True
        return zip_path, False
    path = Path(root).expanduser()
    if path.is_file():
        return path, False
    if path.is_dir():
        for folder in (path, path / sub):
            if any((folder / f).is_file() for f in _FILES[variant]):
                return folder, False
        if (path / zip_name).is_file():
            return path / zip_name, False
    raise DataError(
        f"MovieLens {variant} not found at {where}: expected the files {list(_FILES[variant])} "
        f"there or in {sub}/ below it, or {zip_name} (the official zip, {url}), or a path to that "
        "zip. Fix the path, or drop it and pass download=True"
    )


def _read_cache(npz: Path, sidecar: Path) -> MovieLens | None:
    if not npz.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')!r}")
        with np.load(npz, allow_pickle=False) as z:
            arrays: dict[str, Any] = {k: torch.from_numpy(z[k]) for k in _ARRAYS}
        titles, names = tuple(meta["titles"]), tuple(meta["genre_names"])
        jobs = tuple(meta["occupation_names"])
        if not all(isinstance(s, str) for s in titles + names + jobs):
            raise ValueError("titles, genre and occupation names must be strings")
        return MovieLens(
            variant=meta["variant"],
            titles=titles,
            genre_names=names,
            occupation_names=jobs,
            **arrays,
        )
    except Exception as e:  # any unreadable cache is rebuilt, never fatal
        log.warning("the MovieLens cache %s cannot be read (%s); rebuilding it", npz, e)
        return None


def _write_cache(data: MovieLens, npz: Path, sidecar: Path) -> None:
    arrays = {k: getattr(data, k).numpy() for k in _ARRAYS}
    meta = {"format": _FORMAT_VERSION, "variant": data.variant, "titles": list(data.titles)}
    meta["genre_names"] = list(data.genre_names)
    meta["occupation_names"] = list(data.occupation_names)
    try:
        atomic_write(sidecar, lambda f: f.write(json.dumps(meta).encode()))
        atomic_write(npz, lambda f: np.savez(f, **arrays))
    except OSError as e:  # a read-only cache only costs parsing again next time
        log.warning("cannot write the MovieLens cache %s (%s)", npz, e)


def load_movielens(
    variant: Variant = "100k",
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MovieLens:
    """MovieLens ``variant`` from ``root`` (else ``$METAMAP_MOVIELENS``, else the downloaded zip
    with ``download=True``), parsed once into the cache (see the module). ``verify``: check an
    official zip found on disk against :data:`MOVIELENS_MD5` (``False``: for your own copy).

    Raises :class:`DataError` naming the file (and line) of missing, corrupt or inconsistent data.
    """
    if variant not in _FILES:
        raise ValueError(f"variant must be one of {sorted(_FILES)}, got {variant!r}")
    cache = resolve_cache_dir(cache_dir)
    source, downloaded = _find(variant, root, download, cache)
    url = MOVIELENS_URLS[variant]
    fix = f"Re-extract the official ml-{variant}.zip ({url}), or pass the zip as root"
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise DataError(
                f"{source} is not a zip file. If it is the MovieLens zip, it is truncated or "
                f"corrupt: delete it and download it again ({url}, or download=True with no "
                f"root); otherwise point the root at the zip or at the extracted ml-{variant}/"
            )
        if verify and not downloaded:
            verify_file(
                source, md5=MOVIELENS_MD5[variant], what=f"MovieLens {variant} zip", cache_dir=cache
            )
        checksum = file_checksum(source, cache)
    else:
        src = _Source(source, f"{source}{os.sep}", fix)
        for name in _FILES[variant]:
            if not (source / name).is_file():
                raise src.error(name, None, "missing")
        checksum = folder_fingerprint(source, [source / f for f in _FILES[variant]])
    key = cache_key(source=checksum, loader="movielens", variant=variant, format=_FORMAT_VERSION)
    npz = cache / f"movielens-{variant}-{key[:20]}.npz"
    sidecar = npz.with_suffix(".json")
    data = _read_cache(npz, sidecar)
    if data is not None:
        return data
    if source.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".movielens-", dir=cache))
        try:
            try:
                extract_archive(source, tmp)
            except zlib.error as e:  # a corrupt deflate stream (extract_archive lets it through)
                raise DataError(
                    f"cannot extract {source} ({e}): the zip is corrupt. Delete it and download "
                    f"it again ({url}, or download=True with no root)"
                ) from e
            fix = f"The zip is not the official one: delete it and download {url} again"
            src = _Source(tmp / f"ml-{variant}", f"{source} member ml-{variant}/", fix)
            data = _PARSERS[variant](src)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        data = _PARSERS[variant](src)
    _write_cache(data, npz, sidecar)
    return data
