"""The MovieLens loader: the real 100K (shared copy, skipped if absent) and small generated
archives in the official 100K / 1M formats (tmp_path only: the licence forbids redistribution).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import metamap.data.movielens as ml
from metamap.data.movielens import (
    AGE_GROUPS,
    GENRES_1M,
    MAX_ITEM_ID,
    MOVIELENS_ENV,
    MOVIELENS_MD5,
    MOVIELENS_URLS,
    OCCUPATIONS_1M,
    MovieLens,
    age_group,
    gender_code,
    load_movielens,
    zip_prefix,
)
from metamap.errors import DataError

SHARED = Path(os.environ.get("METAMAP_SHARED_DATA", Path(__file__).parents[2] / "../shared/data"))
REAL_100K = SHARED / "ml-100k"


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MOVIELENS_ENV, raising=False)


# --- generated data in the official formats ----------------------------------------------------

FILES_1M = {
    "users.dat": [
        "1::F::1::10::48067",
        "2::M::56::16::70072",
        "3::M::25::15::55117",
        "4::X::99::42::T8H1N",  # unknown gender / age / occupation, Canadian postcode
    ],
    "movies.dat": [
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "2::Café (1995)::Drama",
        "5::No Year Here::",
        "3952::Contender, The (2000)::Drama|Thriller",
    ],
    "ratings.dat": [
        "1::3952::4::978300760",
        "1::2::3::978302109",
        "2::1::4::978300000",
        "2::3952::1::978300000",
        "3::2::2::978200000",
        "1::1::5::978300760",
        "4::5::5::978000000",
    ],
}

GENRES_100K = ["unknown", *GENRES_1M]
FILES_100K = {
    "u.genre": [f"{g}|{k}" for k, g in enumerate(GENRES_100K)] + [""],
    "u.occupation": ["administrator", "artist", "doctor"],
    "u.user": ["1|24|M|artist|85711", "2|53|F|doctor|94043", "3|17|M|none|K7L5J"],
    "u.item": [
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join("0001110000000000000"),
        "2|Café (1996)|12-Mar-1996||http://x|" + "|".join("0000000010000000000"),
        "267|unknown||||" + "|".join("1000000000000000000"),
    ],
    "u.data": ["1\t1\t5\t874965758", "2\t267\t3\t876893171", "3\t2\t1\t878542960", "1\t2\t4\t1"],
}


def write_files(folder: Path, files: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (folder / name).write_bytes("".join(f"{s}\n" for s in lines).encode("latin-1"))
    return folder


def write_zip(path: Path, variant: str, files: dict[str, list[str]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, lines in files.items():
            zf.writestr(f"ml-{variant}/{name}", "".join(f"{s}\n" for s in lines).encode("latin-1"))
    return path


@pytest.fixture
def zip_1m(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    return write_zip(tmp_path / "src" / "ml-1m.zip", "1m", FILES_1M)


def same(a: MovieLens, b: MovieLens) -> None:
    assert (a.variant, a.titles, a.genre_names, a.occupation_names, a.scale) == (
        b.variant,
        b.titles,
        b.genre_names,
        b.occupation_names,
        b.scale,
    )
    for k in ml._ARRAYS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and torch.equal(x, y), k


def check_1m(d: MovieLens) -> None:
    assert (d.variant, d.num_users, d.num_items, d.num_ratings) == ("1m", 4, 4, 7)
    assert d.user_ids.tolist() == [1, 2, 3, 4] and d.item_ids.tolist() == [1, 2, 5, 3952]
    assert d.titles == ("Toy Story (1995)", "Café (1995)", "No Year Here", "Contender, The (2000)")
    assert d.genre_names == GENRES_1M and d.genres.shape == (4, 18) and d.genres.dtype == torch.bool
    assert [d.genre_names[g] for g in d.genres[0].nonzero().flatten()] == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert d.genres[2].sum() == 0 and d.year.tolist() == [1995, 1995, 0, 2000]
    # ratings in file order
    assert d.user_ids[d.user].tolist() == [1, 1, 2, 2, 3, 1, 4]
    assert d.item_ids[d.item].tolist() == [3952, 2, 1, 3952, 2, 1, 5]
    assert d.rating.dtype == torch.float32 and d.rating.tolist() == [4, 3, 4, 1, 2, 5, 5]
    assert d.timestamp.dtype == torch.int64 and d.timestamp[0] == 978300760
    # users: F/M, age codes 1/56/25 -> groups 1/7/3, occupation code + 1, zip first digit + 1
    assert d.gender.tolist() == [1, 2, 2, 0]
    assert d.age.tolist() == [1, 7, 3, 0] and AGE_GROUPS[d.age[1] - 1] == "56+"
    assert d.occupation.tolist() == [11, 17, 16, 0]
    assert d.occupation_names == OCCUPATIONS_1M and len(OCCUPATIONS_1M) == 21
    assert d.occupation_names[10] == "K-12 student" and d.occupation_code("K-12 student") == 11
    assert d.zip_prefix.tolist() == [5, 8, 6, 0]
    # user 1: (978300760, item 1), (978300760, item 3952), (978302109, item 2)
    per_user = d.user_ratings()
    assert [r.tolist() for r in per_user] == [[5, 0, 1], [2, 3], [4], [6]]
    assert d.item_positions([3952, 1]).tolist() == [3, 0]
    assert d.item_positions(torch.tensor([[5]])).tolist() == [[2]]
    assert repr(d) == "MovieLens(1m: 4 users, 4 items, 7 ratings)"


def test_the_code_mappings_are_the_loaders() -> None:
    """What :mod:`metamap.recommend` uses to encode a new user's demographics."""
    assert [gender_code(s) for s in ("F", "M", "X", "f", "")] == [1, 2, 0, 0, 0]
    # 100K's exact ages (those of FILES_100K: 24, 53, 17), and 1M's age codes: their own group
    assert [age_group(y) for y in (24, 53, 17, 0, -3, 99)] == [2, 6, 1, 0, 0, 7]
    assert {k: age_group(k) for k in ml._AGE_1M} == ml._AGE_1M
    assert [AGE_GROUPS[age_group(y) - 1] for y in (17, 18, 34, 35, 55, 56)] == [
        *("under 18", "18-24", "25-34", "35-44", "50-55", "56+")
    ]
    assert [zip_prefix(s) for s in ("85711", "0213", "K7L5J", "", "٣12")] == [9, 1, 0, 0, 0]


# --- the 1M loader on a generated archive ------------------------------------------------------


def test_1m_from_zip_folder_and_parent(zip_1m: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    from_zip = load_movielens("1m", zip_1m, verify=False, cache_dir=cache)
    check_1m(from_zip)
    check_1m(load_movielens("1m", zip_1m.parent, verify=False, cache_dir=cache))  # holds the zip
    extracted = write_files(tmp_path / "x" / "ml-1m", FILES_1M)
    for root in (extracted, extracted.parent):  # the folder itself, or the one holding ml-1m/
        d = load_movielens("1m", root, cache_dir=tmp_path / "cache2")
        check_1m(d)
        same(d, from_zip)
    assert not list(cache.glob(".movielens-*"))  # the temporary extraction is removed


def test_root_from_environment(
    zip_1m: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MOVIELENS_ENV, str(zip_1m))
    check_1m(load_movielens("1m", verify=False, cache_dir=tmp_path / "cache"))
    monkeypatch.setenv(MOVIELENS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=rf"\${MOVIELENS_ENV}=.*nowhere"):
        load_movielens("1m", cache_dir=tmp_path / "cache")


def test_crlf_lines_and_a_100k_archive(tmp_path: Path) -> None:
    files = {k: [s + "\r" for s in v] for k, v in FILES_1M.items()}
    check_1m(load_movielens("1m", write_files(tmp_path / "crlf", files), cache_dir=tmp_path))
    z = write_zip(tmp_path / "ml-100k.zip", "100k", FILES_100K)
    d = load_movielens(root=z, verify=False, cache_dir=tmp_path / "c")
    assert (d.variant, d.num_users, d.num_items, d.num_ratings) == ("100k", 3, 3, 4)
    assert d.genre_names == tuple(GENRES_100K) and d.genres.shape == (3, 19)
    assert d.titles[1] == "Café (1996)" and d.year.tolist() == [1995, 1996, 0]
    assert d.age.tolist() == [2, 6, 1] and d.gender.tolist() == [2, 1, 2]
    assert d.occupation.tolist() == [2, 3, 0]  # "none" is not in this u.occupation: unknown
    assert d.occupation_names == ("administrator", "artist", "doctor")
    assert [d.occupation_code(s) for s in ("artist", "doctor", "none")] == [2, 3, 0]
    assert d.zip_prefix.tolist() == [9, 10, 0]
    assert d.genres[2].tolist() == [True] + [False] * 18
    # space-separated u.data is read too (the fast path refuses it, the line-by-line one reads it)
    spaced = {**FILES_100K, "u.data": [s.replace("\t", "  ") for s in FILES_100K["u.data"]]}
    same(load_movielens(root=write_files(tmp_path / "sp", spaced), cache_dir=tmp_path / "c"), d)
    with pytest.raises(DataError, match=r"u\.data is not a zip file.*extracted ml-100k/"):
        load_movielens(root=tmp_path / "sp" / "u.data", cache_dir=tmp_path / "c")


# --- cache -------------------------------------------------------------------------------------


def test_the_cache_is_used_the_second_time(
    zip_1m: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_movielens("1m", zip_1m, verify=False, cache_dir=cache)
    (npz,) = cache.glob("movielens-1m-*.npz")
    meta = json.loads(npz.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["titles"][1] == "Café (1995)" and meta["occupation_names"] == list(OCCUPATIONS_1M)
    with np.load(npz, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(ml._ARRAYS)

    def fail(*args: object, **kwargs: object) -> None:
        pytest.fail("parsed again")

    monkeypatch.setattr(ml, "extract_archive", fail)
    monkeypatch.setitem(ml._PARSERS, "1m", fail)
    same(load_movielens("1m", zip_1m, verify=False, cache_dir=cache), first)
    # a changed source gets a new cache: it is parsed again
    folder = write_files(tmp_path / "f", FILES_1M)
    with pytest.raises(pytest.fail.Exception, match="parsed again"):
        load_movielens("1m", folder, cache_dir=cache)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "sidecar"])
def test_a_corrupt_cache_is_rebuilt(zip_1m: Path, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    first = load_movielens("1m", zip_1m, verify=False, cache_dir=cache)
    (npz,) = cache.glob("movielens-1m-*.npz")
    if damage == "garbage":
        npz.write_bytes(b"not a zip at all")
    elif damage == "truncate":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    else:
        npz.with_suffix(".json").write_text("{", encoding="utf-8")
    same(load_movielens("1m", zip_1m, verify=False, cache_dir=cache), first)
    same(load_movielens("1m", zip_1m, verify=False, cache_dir=cache), first)  # rewritten: valid


# --- finding and downloading the data ----------------------------------------------------------


def test_no_root_and_no_download_explains(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_movielens("100k", cache_dir=tmp_path)
    msg = str(e.value)
    assert MOVIELENS_ENV in msg and "download=True" in msg and "redistribution" in msg


def test_download_fetches_the_pinned_zip_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_download(url: str, dest: Path, sha256: str | None = None, *, md5: str) -> Path:
        calls.append((url, md5))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        return write_zip(Path(dest), "1m", FILES_1M)

    monkeypatch.setattr(ml, "download_url", fake_download)
    check_1m(load_movielens("1m", download=True, cache_dir=tmp_path))
    assert calls == [(MOVIELENS_URLS["1m"], MOVIELENS_MD5["1m"])]
    assert (tmp_path / "downloads" / "ml-1m.zip").is_file()
    assert MOVIELENS_URLS["1m"] == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    # a downloaded zip is found again without download=True (and checked against the pin)
    with pytest.raises(DataError, match="not the official file"):
        load_movielens("1m", cache_dir=tmp_path)
    check_1m(load_movielens("1m", verify=False, cache_dir=tmp_path))
    assert len(calls) == 1


def test_a_zip_on_disk_is_checked_against_the_md5_pin(zip_1m: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ml-1m\.zip is not the official file.*expected md5"):
        load_movielens("1m", zip_1m, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("verify", [True, False])
def test_a_corrupt_zip_is_named(tmp_path: Path, verify: bool) -> None:
    z = tmp_path / "ml-1m.zip"
    z.write_bytes(b"PK\x03\x04 truncated download")
    with pytest.raises(DataError, match=r"ml-1m\.zip.*(delete it|download it again)"):
        load_movielens("1m", tmp_path, verify=verify, cache_dir=tmp_path / "cache")


def test_a_corrupt_member_is_named(tmp_path: Path) -> None:
    z = write_zip(tmp_path / "ml-1m.zip", "1m", FILES_1M)
    raw = bytearray(z.read_bytes())
    at = raw.index(b"ml-1m/ratings.dat") + len("ml-1m/ratings.dat") + 2
    raw[at : at + 8] = b"\xff" * 8  # inside the first compressed member
    z.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"ml-1m\.zip.*download it again"):
        load_movielens("1m", z, verify=False, cache_dir=tmp_path / "cache")


def test_unknown_variant_and_unknown_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variant"):
        load_movielens("20m", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"not found at root=.*ml-100k\.zip"):
        load_movielens("100k", tmp_path, cache_dir=tmp_path / "cache")


# --- bad input: a DataError naming the file (and line) -----------------------------------------

Edit = Callable[[dict[str, list[str]]], None]


def _set(name: str, index: int, line: str) -> Edit:
    def edit(files: dict[str, list[str]]) -> None:
        files[name][index] = line

    return edit


def _add(name: str, line: str) -> Edit:
    return lambda files: files[name].append(line)


def _drop(name: str) -> Edit:
    def edit(files: dict[str, list[str]]) -> None:
        del files[name]

    return edit


BAD_1M: list[tuple[Edit, str]] = [
    (_drop("users.dat"), r"users\.dat: missing"),
    (_drop("ratings.dat"), r"ratings\.dat: missing"),
    (_set("ratings.dat", 2, "2::1::4"), r"ratings\.dat, line 3: 3 fields where 4"),
    (_set("ratings.dat", 1, "1::two::3::978302109"), r"ratings\.dat, line 2: .*integers"),
    (_set("ratings.dat", 1, "1::2::3.5::978302109"), r"ratings\.dat, line 2: .*integers"),
    (_set("ratings.dat", 4, "3::2::6::978200000"), r"ratings\.dat, line 5: the rating 6 is not"),
    (_set("ratings.dat", 4, "3::2::0::978200000"), r"ratings\.dat, line 5: the rating 0 is not"),
    (_add("ratings.dat", "9::2::3::1"), r"ratings\.dat, line 8: the user id 9 is not in users"),
    (_add("ratings.dat", "3::4::3::1"), r"ratings\.dat, line 8: the item id 4 is not in movies"),
    (_add("ratings.dat", "2::1::2::5"), r"ratings\.dat, line 8: user 2 rates movie 1 again.*3"),
    (_add("users.dat", "2::F::18::1::12345"), r"users\.dat, line 5: the id 2 was already.*line 2"),
    (_set("users.dat", 0, "1::F::1::10"), r"users\.dat, line 1: 4 fields where 5"),
    (_set("users.dat", 0, "1::F::one::10::48067"), r"users\.dat, line 1: the age 'one'"),
    (_add("movies.dat", "5::Again (1990)::Drama"), r"movies\.dat, line 5: the id 5 was already"),
    (_add("movies.dat", "3953::New (2001)::Drama"), r"movies\.dat, line 5: .*3953.*not the off"),
    (_set("movies.dat", 1, "2::Café (1995)::Drama|Space Opera"), r"movies\.dat, line 2: unknown"),
    (_set("movies.dat", 1, "2 Café (1995) Drama"), r"movies\.dat, line 2: expected"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_1M)
@pytest.mark.parametrize("as_zip", [False, True])
def test_bad_1m_input(tmp_path: Path, edit: Edit, message: str, as_zip: bool) -> None:
    files = {k: list(v) for k, v in FILES_1M.items()}
    edit(files)
    if as_zip:
        root = write_zip(tmp_path / "ml-1m.zip", "1m", files)
        message = r"ml-1m\.zip member ml-1m/" + message
    else:
        root = write_files(tmp_path / "ml-1m", files)
        message = rf"{tmp_path}{os.sep}ml-1m{os.sep}" + message
    with pytest.raises(DataError, match=message) as e:
        load_movielens("1m", root, verify=False, cache_dir=tmp_path / "cache")
    assert "official" in str(e.value)  # the way out


BAD_100K: list[tuple[Edit, str]] = [
    (_drop("u.occupation"), r"u\.occupation: missing"),
    (_set("u.data", 1, "2 267 3"), r"u\.data, line 2: 3 fields where 4"),
    (_add("u.data", "3\t2\t2\t5"), r"u\.data, line 5: user 3 rates movie 2 again"),
    (_add("u.data", "4\t2\t2\t5"), r"u\.data, line 5: the user id 4 is not in u\.user"),
    (_set("u.user", 2, "3|x|M|none|K7L5J"), r"u\.user, line 3: the age 'x'"),
    (_add("u.user", "1|30|F|artist|12345"), r"u\.user, line 4: the id 1 was already"),
    (_add("u.item", "1683|X|||" + "|0" * 19), r"u\.item, line 4: .*1683.*not the official"),
    (_set("u.item", 2, "267|unknown||||" + "|".join("2" * 19)), r"u\.item, line 3: genre flags"),
    (_set("u.item", 2, "267|unknown||||1"), r"u\.item, line 3: 6 fields where 24"),
    (_set("u.genre", 3, "Animation|7"), r"u\.genre: the genre indices"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_100K)
def test_bad_100k_input(tmp_path: Path, edit: Edit, message: str) -> None:
    files = {k: list(v) for k, v in FILES_100K.items()}
    edit(files)
    root = write_files(tmp_path / "ml-100k", files)
    with pytest.raises(DataError, match=message):
        load_movielens("100k", root, cache_dir=tmp_path / "cache")


def test_unknown_item_ids_are_named(zip_1m: Path, tmp_path: Path) -> None:
    d = load_movielens("1m", zip_1m, verify=False, cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"unknown movie ids \[3, 4, 6, 7, 8\] and 2 more"):
        d.item_positions([1, 3, 4, 6, 7, 8, 9, 10, 9])


# --- the real MovieLens 100K -------------------------------------------------------------------


@pytest.mark.skipif(
    not (REAL_100K / "u.data").is_file(), reason=f"no MovieLens 100K at {REAL_100K}"
)
def test_real_100k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = load_movielens("100k", REAL_100K, cache_dir=tmp_path)
    assert (d.num_users, d.num_items, d.num_ratings) == (943, 1682, 100_000)
    assert d.user_ids.tolist() == list(range(1, 944))
    assert d.item_ids.tolist() == list(range(1, MAX_ITEM_ID["100k"] + 1))
    assert len(d.genre_names) == 19 and d.genre_names[0] == "unknown"
    assert d.genre_names[1:] == GENRES_1M
    assert set(d.rating.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert torch.bincount(d.user, minlength=943).min() >= 20
    # first line of u.data
    first = (REAL_100K / "u.data").read_text(encoding="latin-1").split("\n")[0].split()
    assert [int(x) for x in first] == [196, 242, 3, 881250949]
    assert (int(d.user_ids[d.user[0]]), int(d.item_ids[d.item[0]])) == (196, 242)
    assert (float(d.rating[0]), int(d.timestamp[0])) == (3.0, 881250949)
    # user 1: "1|24|M|technician|85711"
    line = (REAL_100K / "u.user").read_text(encoding="latin-1").split("\n")[0]
    assert line == "1|24|M|technician|85711"
    jobs = (REAL_100K / "u.occupation").read_text(encoding="latin-1").split()
    assert [d.age[0], d.gender[0], d.zip_prefix[0]] == [AGE_GROUPS.index("18-24") + 1, 2, 9]
    assert d.occupation[0] == jobs.index("technician") + 1
    assert d.occupation_names == tuple(jobs) and len(jobs) == 21
    # item 1: Toy Story, 01-Jan-1995, Animation|Children's|Comedy; item 267 has no date
    assert d.titles[0] == "Toy Story (1995)" and d.year[0] == 1995
    assert [d.genre_names[g] for g in d.genres[0].nonzero().flatten()] == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert d.year[266] == 0 and d.titles[266] == "unknown"
    known = d.year[d.year > 0]
    assert int((d.year == 0).sum()) == 1 and [known.min(), known.max()] == [1922, 1998]
    per_user = d.user_ratings()
    assert sum(len(r) for r in per_user) == 100_000
    for r in per_user[:50]:
        ts = d.timestamp[r]
        assert (ts[1:] >= ts[:-1]).all() and (d.user[r] == d.user[r[0]]).all()
    # the parent folder holding ml-100k/ works too, and hits the same cache
    monkeypatch.setitem(ml._PARSERS, "100k", lambda src: pytest.fail("parsed again"))
    same(load_movielens("100k", REAL_100K.parent, cache_dir=tmp_path), d)
