"""A new user's top movies (:mod:`metamap.recommend`, ``metamap recommend``) from a cold-start
checkpoint trained on a synthetic MovieLens folder (tests/recsys/conftest.py), and the refusal of
bad input: a clear message, exit status 2 on the command line, :class:`MetamapError` in the API.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import movielens_fake
from metamap.cli import main
from metamap.data.movielens import AGE_GROUPS
from metamap.errors import CheckpointError, ConfigError, MetamapError, NonFiniteAdaptationError
from metamap.recommend import Recommendation, Recommender, read_ratings_csv
from metamap.tasks.users import encode_items
from metamap.train import Trainer, load_config
from movielens_fake import item_ids

CONFIGS = Path(__file__).parents[2] / "configs"
FILMS = item_ids(120)  # 1, 8, 15, ...
RATINGS = {1: 5.0, 8: 4.0, 15: 1.0, 22: 3.0, 29: 2.0}


@pytest.fixture(scope="module")
def rec(movielens_ckpt: Path) -> Recommender:
    return Recommender.from_checkpoint(movielens_ckpt)


@pytest.fixture(scope="module")
def sinusoid_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(
        CONFIGS / "sinusoid" / "maml.yaml",
        [
            "train.steps=5",
            "train.val_every=5",
            "train.ckpt_every=5",
            "train.val_tasks=5",
            "train.progress=false",
        ],
    )
    trainer = Trainer(cfg, tmp_path_factory.mktemp("sinusoid") / "run")
    trainer.fit()
    return trainer.last_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_recommend_returns_the_top_unrated_movies_by_score(rec: Recommender) -> None:
    assert rec.data.item_ids.tolist() == FILMS
    top = rec.recommend(RATINGS, top=5)
    assert len(top) == 5 and all(isinstance(t, Recommendation) for t in top)
    ids = [t.item_id for t in top]
    assert not set(ids) & set(RATINGS) and len(set(ids)) == 5 and set(ids) <= set(FILMS)
    scores = [t.score for t in top]
    assert scores == sorted(scores, reverse=True) and all(1 <= s <= 5 for s in scores)
    for t in top:
        assert t.title == rec.data.titles[FILMS.index(t.item_id)]
    # they are the best five of every unrated movie, as predict scores them
    unrated = [i for i in FILMS if i not in RATINGS]
    every = rec.predict(RATINGS, unrated)
    assert every.shape == (len(unrated),)
    best = sorted(range(len(unrated)), key=lambda k: (-float(every[k]), unrated[k]))[:5]
    assert ids == [unrated[k] for k in best]
    assert scores == pytest.approx([float(every[k]) for k in best])
    # a list of pairs is the same user
    assert rec.recommend(list(RATINGS.items()), top=5) == top
    assert len(rec.recommend(RATINGS, top=500)) == len(unrated)  # at most every unrated movie


def test_movies_predicted_beyond_the_scale_keep_the_models_order(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An adapted model may predict more than 5 stars for many movies (an enthusiast's few
    # 5-star ratings); clipping before ranking made them all tie at 5 and come out by id.
    unrated = [i for i in FILMS if i not in RATINGS]
    every = rec.predict(RATINGS, unrated)
    assert bool(((every > 1) & (every < 5)).all())  # within the scale: the model's own values
    predict = rec.learner.predict
    monkeypatch.setattr(rec.learner, "predict", lambda state, x: predict(state, x) + 3.0)
    assert int((every + 3 > 5).sum()) > 10  # now many movies are predicted beyond 5 stars
    top = rec.recommend(RATINGS, top=10)
    best = sorted(range(len(unrated)), key=lambda k: (-float(every[k]), unrated[k]))[:10]
    assert [t.item_id for t in top] == [unrated[k] for k in best]
    assert [t.score for t in top] == [5.0] * 10  # shown on the scale, as predict gives them
    assert rec.predict(RATINGS, [unrated[best[0]]]).tolist() == [5.0]


def test_the_recommendations_depend_on_the_ratings(rec: Recommender) -> None:
    rated = FILMS[:8]
    others = FILMS[8:]
    fan = rec.predict(dict.fromkeys(rated, 5.0), others)
    critic = rec.predict(dict.fromkeys(rated, 1.0), others)
    assert float(fan.mean()) > float(critic.mean()) + 0.2  # the adaptation reads the support
    assert not torch.equal(fan, critic)


def test_metamap_recommend_prints_the_top_movies(
    movielens_ckpt: Path, rec: Recommender, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = write(
        tmp_path / "mine.csv",
        "item_id,rating\n# my favourites\n\n" + "".join(f"{i},{r:g}\n" for i, r in RATINGS.items()),
    )
    assert read_ratings_csv(ratings) == list(RATINGS.items())
    out = tmp_path / "top.json"
    args = ["recommend", str(movielens_ckpt), "--ratings", str(ratings), "--top", "3"]
    assert main([*args, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the movies ranked: every movie but the rated ones
    assert lines[0] == f"top 3 of {120 - len(RATINGS)} unrated movies for {len(RATINGS)} ratings:"
    shown = lines[1:]
    assert len(shown) == 3
    want = rec.recommend(RATINGS, top=3)
    for n, (line, t) in enumerate(zip(shown, want, strict=True), 1):
        rank, item, score, *title = line.split()
        assert (int(rank), int(item), float(score)) == (n, t.item_id, round(t.score, 2))
        assert " ".join(title) == t.title
    rows = json.loads(out.read_text())
    assert [r["item_id"] for r in rows] == [t.item_id for t in want]


def test_the_data_may_be_named_apart_from_the_run(
    movielens_ckpt: Path,
    movielens_root: Path,
    rec: Recommender,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    moved = Recommender.from_checkpoint(movielens_ckpt, root=str(movielens_root))
    assert moved.recommend(RATINGS, top=3) == rec.recommend(RATINGS, top=3)
    ratings = write(tmp_path / "r.csv", "1,5\n8,2\n")
    root = movielens_root
    args = ["recommend", str(movielens_ckpt), "--ratings", str(ratings), "--top", "2"]
    assert main([*args, "--data", str(root)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main([*args, "--data", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


# ---- bad input: a message, exit status 2 --------------------------------------------------

BAD_FILES = [
    ("unknown", "1,5\n2,4\n", r"unknown movie ids \[2\]"),
    ("twice", "1,5\n8,4\n1,3\n", r"movies rated more than once: \[1\]"),
    ("above", "1,5\n8,6\n", r"ratings outside 1-5 stars: \[\(8, 6\.0\)\]"),
    ("below", "1,0.5\n", r"ratings outside 1-5 stars: \[\(1, 0\.5\)\]"),
    ("nan", "1,nan\n", r"ratings outside 1-5 stars"),
    ("empty", "", r"holds no ratings"),
    ("header only", "item_id,rating\n# nothing yet\n", r"holds no ratings"),
    ("not a number", "1,5\nabc,4\n", r"bad\.csv:2: item_id must be an integer"),
    ("three columns", "1,5\n8,4\n15,3,2\n", r"bad\.csv:3: expected 2 columns"),
    ("one column", "1,5\n8\n", r"bad\.csv:2: expected 2 columns"),
    ("stars text", "1,5\n8,good\n", r"bad\.csv:2: .*rating a number"),
]


@pytest.mark.parametrize(
    ("text", "message"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_ratings_are_refused(
    rec: Recommender,
    movielens_ckpt: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    bad = write(tmp_path / "bad.csv", text)
    rc = main(["recommend", str(movielens_ckpt), "--ratings", str(bad), "--top", "3"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    err = captured.err.strip()
    assert err.startswith("metamap: error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    with pytest.raises(MetamapError, match=message):
        rec.recommend(read_ratings_csv(bad), top=3)


def test_bad_calls_are_refused(
    rec: Recommender,
    movielens_ckpt: Path,
    sinusoid_ckpt: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = write(tmp_path / "good.csv", "1,5\n8,4\n")
    cases = [
        ([str(movielens_ckpt), "--ratings", str(tmp_path / "missing.csv")], "does not exist"),
        ([str(movielens_ckpt), "--ratings", str(good), "--top", "0"], "--top must be at least 1"),
        ([str(movielens_ckpt), "--ratings", str(good), "--top", "-2"], "--top must be at least 1"),
        ([str(sinusoid_ckpt), "--ratings", str(good)], "needs a cold-start recommendation run"),
        ([str(tmp_path / "none.pt"), "--ratings", str(good)], "none.pt"),
    ]
    for args, message in cases:
        assert main(["recommend", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err, err
    with pytest.raises(MetamapError, match="does not exist"):
        read_ratings_csv(tmp_path / "missing.csv")
    with pytest.raises(MetamapError, match="is not a file; give a CSV"):
        read_ratings_csv(tmp_path)  # a folder
    with pytest.raises(MetamapError, match="top must be at least 1, got 0"):
        rec.recommend(RATINGS, top=0)
    with pytest.raises(MetamapError, match=r"no ratings given"):
        rec.recommend({}, top=3)
    with pytest.raises(CheckpointError, match=r"task\.family 'sinusoid'.*task\.family movielens"):
        Recommender.from_checkpoint(sinusoid_ckpt)


def test_a_byte_order_mark_does_not_lose_the_first_rating(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeff1,5\r\n8,4\r\n".encode())
    assert read_ratings_csv(path) == [(1, 5.0), (8, 4.0)]


def test_ratings_from_python_are_read_or_refused_by_name(rec: Recommender) -> None:
    # text read from a CSV by hand, or numpy scalars, are the same ratings
    want = rec.recommend(RATINGS, top=3)
    text: dict[Any, Any] = {str(i): str(r) for i, r in RATINGS.items()}
    arrays: dict[Any, Any] = {i: torch.tensor(r).numpy() for i, r in RATINGS.items()}
    assert rec.recommend(text, top=3) == rec.recommend(arrays, top=3) == want
    # anything else is named, not a TypeError from deep inside (nor a movie id cut to an int)
    for bad in [{1: "five"}, {1: None}, {1.5: 4}, {"one": 4}, {True: 4}, [(1,)], [(1, 5, 3)]]:
        with pytest.raises(MetamapError, match=r"integer movie id and a number of stars"):
            rec.recommend(bad, top=3)  # type: ignore[arg-type]


def test_an_override_may_not_change_which_movies_the_run_knew(
    movielens_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The known movies (encoded by id) are the training split's: ``task.scenario`` or the fold
    on ``recommend`` would score some of them as unknown items, or unknown ones by an id the
    model never trained."""
    for over in (["task.scenario=item_cold"], ["task.fold=1"], ["task.split_seed=3"]):
        with pytest.raises(ConfigError, match=r"recommend ranks movies as the run was trained"):
            Recommender.from_checkpoint(movielens_ckpt, overrides=over)
    good = write(tmp_path / "good.csv", "1,5\n8,4\n")
    argv = ["recommend", str(movielens_ckpt), "--ratings", str(good)]
    assert main([*argv, "-o", "task.scenario=user_item_cold"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task.scenario=user_item_cold" in err, err
    assert "task.scenario=user_cold; drop these overrides" in err, err
    # settings that leave the split as it was still apply
    assert main([*argv, "-o", "train.device=cpu", "-o", "task.scenario=user_cold"]) == 0


# ---- inner steps, and an adaptation that diverges ---------------------------------------


def test_steps_sets_the_inner_steps_of_adaptation(
    rec: Recommender, movielens_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``steps=0`` ranks by the meta-learned model unadapted; the default adapts as trained
    (MeLU's config: one step), equal to ``steps=1``; the CLI's ``--steps`` is the same."""
    every = [i for i in FILMS if i not in RATINGS]
    unadapted = rec.predict(RATINGS, every, steps=0)
    stars = torch.tensor(list(RATINGS.values()))[:, None]
    state = rec.learner.adapt(rec.rows(list(RATINGS)), stars, 0)
    with torch.no_grad():
        raw = rec.learner.predict(state, rec.rows(every))
    assert torch.allclose(unadapted, raw.flatten().clamp(1, 5))
    assert torch.equal(rec.predict(RATINGS, every, steps=1), rec.predict(RATINGS, every))
    assert not torch.equal(unadapted, rec.predict(RATINGS, every))
    ratings = write(tmp_path / "mine.csv", "".join(f"{i},{r}\n" for i, r in RATINGS.items()))
    argv = ["recommend", str(movielens_ckpt), "--ratings", str(ratings), "--top", "3"]
    assert main([*argv, "--steps", "0"]) == 0
    shown = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert shown == [str(t.item_id) for t in rec.recommend(RATINGS, top=3, steps=0)]
    for bad in (-1, 1.5, True):
        with pytest.raises(MetamapError, match=r"steps must be a whole number .* got"):
            rec.recommend(RATINGS, top=3, steps=bad)  # type: ignore[arg-type]
    assert main([*argv, "--steps", "-1"]) == 2
    assert "--steps must be 0 or more, got -1" in capsys.readouterr().err


def test_steps_is_refused_for_a_closed_form_model(movielens_root: Path, tmp_path: Path) -> None:
    """MeLU-ridge fits its head in closed form: ``steps=0`` cannot mean "unadapted" there, so it
    is refused rather than ignored."""
    cfg = load_config(
        CONFIGS / "movielens" / "melu-ridge.yaml",
        [
            f"task.root={movielens_root}",
            f"task.cache_dir={movielens_root.parent / 'cache'}",
            "train.steps=2",
            "train.meta_batch=4",
            "train.val_every=2",
            "train.ckpt_every=2",
            "train.progress=false",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "ridge")
    trainer.fit()
    ridge = Recommender.from_checkpoint(trainer.last_path)
    assert len(ridge.recommend(RATINGS, top=3)) == 3
    for steps in (0, 1):
        with pytest.raises(MetamapError, match=r"adapts in closed form .*drop steps= \(--steps\)"):
            ridge.recommend(RATINGS, top=3, steps=steps)


def test_a_diverged_adaptation_is_refused_not_ranked(movielens_ckpt: Path) -> None:
    """Step sizes large enough to overflow the inner step give NaN or infinite predictions: the
    recommender names the divergence and what to try instead of ranking or clipping them (an
    infinite score used to come back as the bound of the scale)."""
    rec = Recommender.from_checkpoint(movielens_ckpt)
    with torch.no_grad():
        for name, p in rec.learner.named_parameters():
            if "inner_lr" in name:
                p.fill_(1e38)
    every = [i for i in FILMS if i not in RATINGS]
    message = r"adaptation to these 5 ratings diverged: \d+ of 115 predicted scores are NaN or"
    with pytest.raises(NonFiniteAdaptationError, match=message) as info:
        rec.recommend(RATINGS, top=3)
    assert info.value.exit_code == 3 and "fewer inner steps" in str(info.value)
    with pytest.raises(NonFiniteAdaptationError, match=r"of 2 predicted scores"):
        rec.predict(RATINGS, every[:2])
    # unadapted, the same model still ranks
    assert len(rec.recommend(RATINGS, top=3, steps=0)) == 3


# ---- the user's demographics --------------------------------------------------------------


def fake_user(root: Path, uid: int) -> dict[str, Any]:
    """User ``uid``'s line of the fake ``u.user`` as ``recommend``'s ``user=``."""
    lines = (root / "u.user").read_text(encoding="latin-1").splitlines()
    line = next(s for s in lines if s.split("|")[0] == str(uid))
    _, age, gender, job, zip_code = line.split("|")
    return {"gender": gender, "age": int(age), "occupation": job, "zip": zip_code}


@pytest.mark.parametrize("uid", [1, 2, 6])  # 1: a Canadian postcode (unknown prefix)
def test_a_new_user_with_an_existing_users_demographics_is_that_user(
    rec: Recommender, movielens_root: Path, uid: int
) -> None:
    data = rec.data
    user = fake_user(movielens_root, uid)
    pos = int(torch.nonzero(data.user_ids == uid))
    # the rows: encode_items of the user in the data, as training saw them
    rated = data.item[data.user == pos]
    stars = data.rating[data.user == pos][:, None]
    as_in_data = encode_items(data, rated, torch.full_like(rated, pos), rec.known_items)
    assert torch.equal(rec.rows(data.item_ids[rated].tolist(), user), as_in_data)
    assert as_in_data[:, 2:6].unique(dim=0).tolist() == [rec.user_codes(user).tolist()]
    assert (rec.user_codes(user)[3] == 0) == (uid == 1)
    # the predictions: the model adapted to the user's own rows of their first 10 ratings
    support, others = rated[:10], rated[10:]
    ratings = dict(zip(data.item_ids[support].tolist(), stars[:10].flatten().tolist(), strict=True))
    state = rec.learner.adapt(as_in_data[:10], stars[:10])
    with torch.no_grad():
        x = encode_items(data, others, torch.full_like(others, pos), rec.known_items)
        want = rec.learner.predict(state, x).flatten().clamp(*data.scale)
    got = rec.predict(ratings, data.item_ids[others].tolist(), user=user)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(got, rec.predict(ratings, data.item_ids[others].tolist()))


def test_the_user_is_read_as_the_loader_reads_the_users_file(rec: Recommender) -> None:
    occupations = rec.data.occupation_names
    assert occupations == movielens_fake.OCCUPATIONS  # the lines of u.occupation, in order
    codes = rec.user_codes({"gender": "F", "age": 30, "occupation": "student", "zip": "55455"})
    assert codes.tolist() == [1, AGE_GROUPS.index("25-34") + 1, occupations.index("student") + 1, 6]
    # any subset; case, an age group's name, a numpy integer and None (not given) are accepted
    loose = {"gender": " f", "age": "25-34", "occupation": "Student", "zip": None}
    assert rec.user_codes(loose).tolist() == [*codes.tolist()[:3], 0]
    assert rec.user_codes({"age": np.int64(17)}).tolist() == [0, 1, 0, 0]
    assert rec.user_codes({"age": "56"}).tolist() == [0, 7, 0, 0]
    assert rec.user_codes({}).tolist() == rec.user_codes(None).tolist() == [0, 0, 0, 0]
    assert rec.rows([1, 8]).tolist() == rec.rows([1, 8], {}).tolist()
    assert rec.rows([1, 8])[:, 2:6].tolist() == [[0] * 4] * 2  # as before: unknown
    shown = rec.describe_user({"gender": "f", "age": 30, "occupation": "STUDENT", "zip": "T8H1N"})
    assert shown == (
        "gender=F, age=30 (25-34), occupation=student, zip=T8H1N (unknown: no leading digit)"
    )
    assert rec.describe_user(None) == ""


BAD_USERS: list[tuple[str, Any, str]] = [
    ("key", {"sex": "F"}, r"unknown user key 'sex' \(value 'F'\); the keys are gender, age, "),
    ("gender", {"gender": "X"}, r"user gender 'X' is not accepted; give 'F' or 'M'$"),
    ("gender type", {"gender": 1}, r"user gender 1 is not accepted; give 'F' or 'M'$"),
    ("age 0", {"age": 0}, r"user age 0 is not accepted; give an age in years, 1-120, or an age"),
    ("age 130", {"age": 130}, r"user age 130 is not accepted; give an age in years"),
    ("age text", {"age": "twenty"}, r"user age 'twenty' .*'under 18', '18-24', .*'56\+'$"),
    ("age float", {"age": 25.5}, r"user age 25\.5 is not accepted"),
    ("age bool", {"age": True}, r"user age True is not accepted"),
    (
        "occupation",
        {"gender": "F", "occupation": "astronaut"},
        r"user occupation 'astronaut' is not accepted; give one of the occupations of "
        r"MovieLens-100K: 'administrator', 'artist', .*'student', 'other'$",
    ),
    ("zip number", {"zip": 2139}, r"user zip 2139 is not accepted; give the zip .* as text"),
    ("zip empty", {"zip": " "}, r"user zip ' ' is not accepted"),
    ("not a mapping", "F", r"user 'F': give the user's demographics as a mapping"),
]


@pytest.mark.parametrize(
    ("user", "message"), [b[1:] for b in BAD_USERS], ids=[b[0] for b in BAD_USERS]
)
def test_bad_users_are_refused_before_any_work(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch, user: Any, message: str
) -> None:
    monkeypatch.setattr(rec.learner, "adapt", lambda *a: pytest.fail("adapted"))
    for call in (
        lambda: rec.recommend(RATINGS, top=3, user=user),
        lambda: rec.predict(RATINGS, [36], user=user),
        lambda: rec.recommend({}, top=3, user=user),  # the user is checked first
    ):
        with pytest.raises(MetamapError, match=message) as e:
            call()
        assert len(str(e.value).splitlines()) == 1


def test_metamap_recommend_user_reaches_the_model(
    movielens_ckpt: Path, rec: Recommender, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = write(tmp_path / "mine.csv", "".join(f"{i},{r:g}\n" for i, r in RATINGS.items()))
    out = tmp_path / "top.json"
    argv = ["recommend", str(movielens_ckpt), "--ratings", str(ratings), "--top", "5"]
    given = ["--user", "gender=F", "--user", "age=25", "--user", "occupation=student"]
    assert main([*argv, *given, "--out", str(out)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == (
        f"top 5 of {120 - len(RATINGS)} unrated movies for {len(RATINGS)} ratings and "
        "gender=F, age=25 (25-34), occupation=student:"
    )
    user = {"gender": "F", "age": 25, "occupation": "student"}
    want = rec.recommend(RATINGS, top=5, user=user)
    rows = json.loads(out.read_text())
    assert [(r["item_id"], r["score"]) for r in rows] == [(t.item_id, t.score) for t in want]
    unknown = rec.recommend(RATINGS, top=5)
    assert [t.score for t in want] != [t.score for t in unknown]
    every = [i for i in FILMS if i not in RATINGS]
    assert not torch.equal(rec.predict(RATINGS, every, user), rec.predict(RATINGS, every))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["--user", "sex=F"], r"--user 'sex=F': unknown key 'sex' \(value 'F'\); the keys are "),
        (["--user", "gender"], r"--user 'gender': give KEY=VALUE, e.g. --user gender=F"),
        (["--user", "gender=F", "--user", "gender=M"], r"--user gender given twice \('F'"),
        (["--user", "occupation=astronaut"], r"user occupation 'astronaut' is not accepted; give "),
        (["--user", "age=old"], r"user age 'old' is not accepted; give an age in years"),
    ],
)
def test_metamap_recommend_refuses_a_bad_user(
    movielens_ckpt: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: list[str],
    message: str,
) -> None:
    ratings = write(tmp_path / "mine.csv", "1,5\n8,4\n")
    assert main(["recommend", str(movielens_ckpt), "--ratings", str(ratings), *given]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1, err
    assert re.search(message, err) and "internal error" not in err, err
