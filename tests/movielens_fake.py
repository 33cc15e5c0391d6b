"""A small synthetic MovieLens-100K folder, written in the official file formats, for the
cold-start tests (``u.data``, ``u.user``, ``u.item``, ``u.genre``, ``u.occupation``).

The MovieLens licence forbids redistribution: these tests never copy a real file; they write
made-up ratings into a temporary folder. Imported by test modules as ``movielens_fake`` (the
``tests`` folder is on ``sys.path`` through its ``conftest.py``, as for ``vision_support``).

The ratings follow a low-rank model with item and user biases, so that there is something to
learn: ``r = round(clip(3.4 + b_i + b_u + p_u·q_i + noise, 1, 5))`` with rank-2 factors; each
film's genres are drawn from its factor ``q_i`` (so genres say something about taste), and each
user's taste ``p_u`` leans on their gender. Timestamps are distinct within the whole file.

* ``users`` users rate ``per_user`` (a range) of the ``items`` films: all are eligible for the
  cold-start split (13-100 ratings);
* ``few`` more users rate 5-12 films, ``many`` more rate 101-``items`` films: neither is
  eligible;
* film ids are ``1, 1 + step, 1 + 2·step, ...`` (``step`` 7 by default: ids are not positions,
  and ``2``, ``3``, ... are not films).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GENRES = (
    *("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime"),
    *("Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery"),
    *("Romance", "Sci-Fi", "Thriller", "War", "Western"),
)
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "student", "other")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def item_ids(items: int, step: int = 7) -> list[int]:
    """The film ids the folder uses (ascending)."""
    return [1 + step * k for k in range(items)]


def write_fake_100k(
    folder: Path,
    users: int = 60,
    items: int = 120,
    per_user: tuple[int, int] = (20, 40),
    few: int = 4,
    many: int = 2,
    seed: int = 0,
    step: int = 7,
) -> Path:
    """Write the five 100K files into ``folder`` (created); returns ``folder``."""
    if many and items <= 100:
        raise ValueError("users with more than 100 ratings need more than 100 items")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = item_ids(items, step)
    # films: rank-2 factors, bias, genres drawn from the factors, a release date (some unknown)
    q = 0.8 * rng.standard_normal((items, 2))
    b_item = 0.6 * rng.standard_normal(items)
    item_lines = []
    for k, iid in enumerate(ids):
        flags = np.zeros(len(GENRES), dtype=int)
        flags[1 + (2 if q[k, 0] > 0 else 0) + (1 if q[k, 1] > 0 else 0)] = 1  # 1 of 4 genres
        flags[5 + rng.integers(0, 14)] = rng.random() < 0.5  # sometimes a second one
        if k % 29 == 3:
            date = ""  # an unknown release date (as item 267 of the real file)
        else:
            date = f"{rng.integers(1, 29):02d}-{MONTHS[rng.integers(0, 12)]}-{1930 + k % 68}"
        title = f"Film {iid} ({date[-4:] or 'unknown'})"
        item_lines.append(
            f"{iid}|{title}|{date}||http://example.org/{iid}|" + "|".join(map(str, flags))
        )
    # users: every kind of demographic value, taste leaning on gender
    counts = [int(rng.integers(per_user[0], per_user[1] + 1)) for _ in range(users)]
    counts += [int(rng.integers(5, 13)) for _ in range(few)]
    counts += [int(rng.integers(101, items + 1)) for _ in range(many)]
    user_lines, data_lines = [], []
    lean = np.array([[0.9, -0.6], [-0.9, 0.6]])
    t = 874_000_000
    for u, n in enumerate(counts):
        uid = u + 1
        gender = "F" if u % 2 else "M"
        age = int(rng.integers(7, 74))
        job = OCCUPATIONS[u % len(OCCUPATIONS)]
        zip_code = f"{rng.integers(0, 100_000):05d}" if u % 11 else "T8H1N"
        user_lines.append(f"{uid}|{age}|{gender}|{job}|{zip_code}")
        p = lean[u % 2] + 0.5 * rng.standard_normal(2)
        b_user = 0.5 * rng.standard_normal()
        rated = rng.permutation(items)[:n]
        for k in rated:
            r = 3.4 + b_item[k] + b_user + p @ q[k] + 0.3 * rng.standard_normal()
            t += int(rng.integers(1, 5000))
            data_lines.append(f"{uid}\t{ids[k]}\t{int(np.clip(np.rint(r), 1, 5))}\t{t}")
    order = rng.permutation(len(data_lines))  # the file is not grouped by user, as the real one
    files = {
        "u.genre": [f"{g}|{k}" for k, g in enumerate(GENRES)] + [""],
        "u.occupation": list(OCCUPATIONS),
        "u.user": user_lines,
        "u.item": item_lines,
        "u.data": [data_lines[i] for i in order],
    }
    for name, lines in files.items():
        (folder / name).write_bytes("".join(f"{s}\n" for s in lines).encode("latin-1"))
    return folder
