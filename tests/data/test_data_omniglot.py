"""Omniglot loader on a small synthetic copy in the official layout (the real data: *_real.py)."""

from __future__ import annotations

import hashlib
import importlib
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metamap.data.images import decode_image
from metamap.data.omniglot import (
    METADATASET_VAL_ALPHABETS,
    OMNIGLOT_URLS,
    VINYALS_SHA256,
    VINYALS_URLS,
    omniglot,
    omniglot_images,
)
from metamap.data.omniglot_runs import omniglot_one_shot_runs
from metamap.errors import DataError
from metamap.train import load_config
from metamap.train.build import load_images

omniglot_mod = importlib.import_module(
    "metamap.data.omniglot"
)  # the package's `omniglot` is the function

LAYOUT = {"images_background": {"Alpha": 3, "Beta": 2}, "images_evaluation": {"Gamma": 2}}


def glyph(char: int, sample: int) -> Image.Image:
    """A 105×105 mode-'1' image, white background, a black L-shaped stroke (rotation-visible)."""
    a = np.ones((105, 105), dtype=bool)
    top = 10 + 8 * char + sample
    a[top : top + 50, 20:28] = False  # vertical bar
    a[top + 42 : top + 50, 20:70] = False  # foot to the right
    return Image.fromarray(a)


def make_omniglot(
    root: Path, per_char: int = 3, layout: dict[str, dict[str, int]] = LAYOUT
) -> Path:
    char = 0
    for s, alphabets in layout.items():
        for alphabet, count in alphabets.items():
            for c in range(1, count + 1):
                d = root / s / alphabet / f"character{c:02d}"
                d.mkdir(parents=True)
                for k in range(1, per_char + 1):
                    glyph(char, k).save(d / f"{char + 1:04d}_{k:02d}.png")
                char += 1
    vinyals = root / "splits" / "vinyals"
    vinyals.mkdir(parents=True)
    for split, text in vinyals_lists().items():
        (vinyals / f"{split}.txt").write_bytes(text)
    return root


def vinyals_lists() -> dict[str, bytes]:
    """Split lists for LAYOUT in the Vinyals format, every character at 4 rotations."""
    rots = ("rot000", "rot090", "rot180", "rot270")
    chars = {
        "train": ["Alpha/character01", "Alpha/character02", "Beta/character01"],
        "val": ["Alpha/character03"],
        "test": ["Beta/character02", "Gamma/character01", "Gamma/character02"],
    }
    chars["trainval"] = chars["train"] + chars["val"]
    return {
        split: "".join(f"{n}/{r}\n" for n in names for r in rots).encode()
        for split, names in chars.items()
    }


@pytest.fixture(autouse=True)
def _synthetic_files_are_not_pinned() -> Iterator[None]:
    """The zips and Vinyals lists here are synthetic, not the official bytes: the check of local
    files against their pinned checksums is tested in test_data_local_checks.py, and skipped
    here (downloads are still checked)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(omniglot_mod, "verify_file", lambda path, *a, **k: Path(path))
        yield


@pytest.fixture
def omni(tmp_path: Path) -> Path:
    return make_omniglot(tmp_path / "omniglot")


def test_all_images_inverted_and_reopened_without_decoding(
    omni: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = omniglot_images(omni, cache_dir=cache_dir)
    assert full.images.shape == (21, 1, 28, 28) and isinstance(full.images, np.memmap)
    assert list(full.class_names) == [
        "Alpha/character01",
        "Alpha/character02",
        "Alpha/character03",
        "Beta/character01",
        "Beta/character02",
        "Gamma/character01",
        "Gamma/character02",
    ]
    assert full.sources[0] == "images_background/Alpha/character01/0001_01.png"
    assert full.labels.tolist() == np.repeat(np.arange(7), 3).tolist()
    img = full.images[0, 0]
    assert img[0, 0] == 0 and img.max() == 255  # background 0, strokes bright
    raw = np.asarray(glyph(0, 1).convert("L").resize((28, 28), Image.Resampling.LANCZOS))
    assert (img == 255 - raw).all()
    with monkeypatch.context() as m:
        m.setattr("PIL.Image.open", lambda *a, **k: pytest.fail("decoded again"))
        again = omniglot_images(omni, cache_dir=cache_dir)
        omniglot("train", root=omni, cache_dir=cache_dir)
    assert (np.asarray(again.images) == np.asarray(full.images)).all()


def test_vinyals_split_stores_characters_once_with_rotated_episode_classes(
    omni: Path, cache_dir: Path
) -> None:
    s = omniglot("train", root=omni, cache_dir=cache_dir)
    assert s.num_classes == 3 and len(s) == 9 and s.num_episode_classes == 12
    assert s.class_base.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert s.class_rotations.tolist() == [0, 1, 2, 3] * 3
    assert s.episode_class_names[5] == "Alpha/character02/rot090"
    assert not s.images.flags.writeable
    base = s.images[s.labels == 1]
    for c in range(4, 8):
        k = int(s.class_rotations[c])
        assert (s.episode_class_images(c) == np.rot90(base, k, axes=(-2, -1))).all()
    # 'rot090' = PIL Image.rotate(90) (counter-clockwise) of the raw image, as Prototypical Nets
    raw = omni / "images_background" / "Alpha" / "character02" / "0002_01.png"
    rotated = omni.parent / "rotated.png"
    Image.open(raw).rotate(90).save(rotated)
    expect = decode_image(rotated, 28, "L", invert=True).astype(int)
    ours = s.episode_class_images(5)[0].astype(int)
    # equal up to Pillow's resampling, which is not exactly mirror-symmetric (a few pixels)
    assert np.abs(ours - expect).mean() < 2
    assert np.abs(ours - expect).mean() < np.abs(np.rot90(ours, 2, (-2, -1)) - expect).mean() / 5
    counts = {
        split: omniglot(split, root=omni, cache_dir=cache_dir).num_episode_classes
        for split in ("val", "trainval", "test")
    }
    assert counts == {"val": 4, "trainval": 16, "test": 12}


def test_rotation_options_and_lake_protocol(omni: Path, cache_dir: Path) -> None:
    s = omniglot("train", root=omni, cache_dir=cache_dir, rotations=False)
    assert s.num_episode_classes == 3 and s.class_rotations.tolist() == [0, 0, 0]
    bg = omniglot("background", "lake", root=omni, cache_dir=cache_dir)
    ev = omniglot("evaluation", "lake", root=omni, cache_dir=cache_dir, rotations=True)
    assert bg.num_classes == 5 and bg.num_episode_classes == 5
    assert ev.num_classes == 2 and ev.num_episode_classes == 8
    assert list(ev.class_names) == ["Gamma/character01", "Gamma/character02"]
    with pytest.raises(ValueError, match="split of protocol 'lake'"):
        omniglot("train", "lake", root=omni, cache_dir=cache_dir)
    with pytest.raises(DataError, match="needs more than 1200 characters"):
        omniglot("train", "maml", root=omni, cache_dir=cache_dir)


def test_metadataset_protocol_splits_by_alphabet(tmp_path: Path, cache_dir: Path) -> None:
    """Meta-Dataset's Omniglot: evaluation alphabets test, the five named background alphabets
    validate, the other background alphabets train; a copy lacking those alphabets is refused."""
    background = {"Alpha": 3, **dict.fromkeys(METADATASET_VAL_ALPHABETS, 1), "Beta": 2}
    layout = {"images_background": background, "images_evaluation": {"Gamma": 2}}
    root = make_omniglot(tmp_path / "md", per_char=2, layout=layout)

    def alphabets(split: str) -> list[str]:
        data = omniglot(split, "metadataset", root=root, cache_dir=cache_dir)
        assert data.class_rotations.tolist() == [0] * data.num_classes  # no rotations
        return sorted({n.split("/")[0] for n in data.class_names})

    assert alphabets("train") == ["Alpha", "Beta"]
    assert alphabets("val") == sorted(METADATASET_VAL_ALPHABETS)
    assert alphabets("trainval") == sorted(["Alpha", "Beta", *METADATASET_VAL_ALPHABETS])
    assert alphabets("test") == ["Gamma"]
    assert omniglot("train", "metadataset", root=root, cache_dir=cache_dir).num_classes == 5
    with pytest.raises(DataError, match=r"holds out background alphabets .* lacks: Alphabet_of"):
        omniglot(
            "train", "metadataset", root=make_omniglot(tmp_path / "plain"), cache_dir=cache_dir
        )


def test_missing_data_says_how_to_get_it(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError) as e:
        omniglot("train", cache_dir=cache_dir)
    msg = str(e.value)
    assert OMNIGLOT_URLS["images_background"] in msg and OMNIGLOT_URLS["images_evaluation"] in msg
    assert "METAMAP_OMNIGLOT" in msg and "download=True" in msg
    assert "images_background/<Alphabet>/character<NN>/*.png" in msg
    with pytest.raises(DataError, match="at root="):
        omniglot_images(tmp_path / "elsewhere", cache_dir=cache_dir)


def test_environment_variable_and_split_list_errors(
    omni: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("METAMAP_OMNIGLOT", str(omni))
    assert omniglot("val", cache_dir=cache_dir).num_classes == 1
    with pytest.raises(DataError, match="prototypical-networks"):
        omniglot("train", cache_dir=cache_dir, splits_root=tmp_path / "nosplits")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.txt").write_text("Alpha/character01/rot000\nAlpha/character01/rot045\n")
    with pytest.raises(DataError, match=r"train\.txt:2: 'Alpha/character01/rot045'"):
        omniglot("train", cache_dir=cache_dir, splits_root=bad)
    (bad / "train.txt").write_text("Delta/character01/rot000\n")
    with pytest.raises(DataError, match="'Delta/character01' is not in the Omniglot data"):
        omniglot("train", cache_dir=cache_dir, splits_root=bad)


def zip_sets(omni: Path, dest: Path) -> dict[str, bytes]:
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in LAYOUT:
        path = dest / f"{s}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for f in sorted((omni / s).rglob("*.png")):
                zf.write(f, f.relative_to(omni).as_posix())
        out[s] = path.read_bytes()
    return out


def test_official_zips_are_extracted_once(omni: Path, tmp_path: Path, cache_dir: Path) -> None:
    zips = tmp_path / "zips"
    zip_sets(omni, zips)
    full = omniglot_images(zips, cache_dir=cache_dir)
    assert len(full) == 21 and (cache_dir / "omniglot" / "images_evaluation" / "Gamma").is_dir()
    assert not list((cache_dir / "omniglot").glob(".extract-*"))
    assert len(omniglot_images(zips, cache_dir=cache_dir)) == 21


def test_download_true_fetches_the_official_zips(
    omni: Path, tmp_path: Path, cache_dir: Path, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = zip_sets(omni, tmp_path / "zips")
    urls = {s: http_server.serve(f"/{s}.zip", data) for s, data in blobs.items()}
    monkeypatch.setattr(omniglot_mod, "OMNIGLOT_URLS", urls)
    with pytest.raises(DataError, match="expected md5 68d2efa1"):  # not the official zip
        omniglot_images(cache_dir=cache_dir, download=True)
    md5s = {s: hashlib.md5(data).hexdigest() for s, data in blobs.items()}
    monkeypatch.setattr(omniglot_mod, "OMNIGLOT_MD5", md5s)
    full = omniglot_images(cache_dir=cache_dir, download=True)
    assert len(full) == 21
    assert (cache_dir / "downloads" / "images_background.zip").is_file()
    assert {r["path"] for r in http_server.state.requests[1:]} == {
        "/images_background.zip",
        "/images_evaluation.zip",
    }


def serve_vinyals(http_server, monkeypatch: pytest.MonkeyPatch, *, pinned: bool) -> None:
    """Serve the synthetic lists in place of the official ones; ``pinned``: pin their sha256."""
    lists = vinyals_lists()
    urls = {s: http_server.serve(f"/vinyals/{s}.txt", text) for s, text in lists.items()}
    monkeypatch.setattr(omniglot_mod, "VINYALS_URLS", urls)
    if pinned:
        sums = {s: hashlib.sha256(text).hexdigest() for s, text in lists.items()}
        monkeypatch.setattr(omniglot_mod, "VINYALS_SHA256", sums)


def test_download_true_fetches_the_pinned_vinyals_lists_into_the_cache(
    omni: Path, cache_dir: Path, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert VINYALS_URLS["train"].startswith("https://raw.githubusercontent.com/jakesnell/")
    assert all(len(VINYALS_SHA256[s]) == 64 for s in VINYALS_URLS)
    shutil.rmtree(omni / "splits")
    with monkeypatch.context() as m, pytest.raises(DataError) as e:
        m.setattr("PIL.Image.open", lambda *a, **k: pytest.fail("decoded before the check"))
        omniglot("train", root=omni, cache_dir=cache_dir)  # nothing is fetched unless asked
    msg = str(e.value)
    assert "Vinyals split list train.txt not found" in msg and VINYALS_URLS["train"] in msg
    assert "download=True" in msg and "data.download: true" in msg and "data.splits_root" in msg
    serve_vinyals(http_server, monkeypatch, pinned=False)
    with pytest.raises(DataError, match=f"expected sha256 {VINYALS_SHA256['train'][:8]}"):
        omniglot("train", root=omni, cache_dir=cache_dir, download=True)  # not the pinned list
    serve_vinyals(http_server, monkeypatch, pinned=True)
    s = omniglot("train", root=omni, cache_dir=cache_dir, download=True)
    assert s.num_classes == 3 and s.num_episode_classes == 12
    saved = cache_dir / "omniglot" / "splits" / "vinyals" / "train.txt"
    assert saved.read_bytes() == vinyals_lists()["train"]
    fetched = len(http_server.state.requests)
    assert omniglot("train", root=omni, cache_dir=cache_dir).num_episode_classes == 12
    assert len(http_server.state.requests) == fetched  # found in the cache: no second fetch


def test_a_config_hands_its_splits_root_and_download_to_the_omniglot_loader(
    omni: Path, tmp_path: Path, cache_dir: Path, http_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "omniglot" / "protonet-5w1s.yaml"
    own = tmp_path / "own-lists"
    own.mkdir()
    (own / "train.txt").write_text("Gamma/character01/rot180\n")
    data = [f"data.root={omni}", f"data.cache_dir={cache_dir}"]
    cfg = load_config(config, [*data, f"data.splits_root={own}"])
    assert load_images(cfg, "train").episode_class_names == ("Gamma/character01/rot180",)
    shutil.rmtree(omni / "splits")
    with pytest.raises(DataError, match=r"data\.download: true"):
        load_images(load_config(config, data), "train")
    serve_vinyals(http_server, monkeypatch, pinned=True)
    cfg = load_config(config, [*data, "data.download=true"])
    assert load_images(cfg, "train").num_episode_classes == 12


def test_one_shot_runs(tmp_path: Path) -> None:
    runs_root = tmp_path / "omniglot" / "one-shot-classification" / "all_runs"
    for r in (1, 2):
        run = runs_root / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        lines = []
        for c in range(1, 4):
            glyph(c, 0).save(run / "training" / f"class{c:02d}.png")
            glyph(4 - c, 1).save(run / "test" / f"item{c:02d}.png")  # item c is class 4 - c
            lines.append(
                f"run{r:02d}/test/item{c:02d}.png run{r:02d}/training/class{4 - c:02d}.png"
            )
        (run / "class_labels.txt").write_text("\n".join(reversed(lines)) + "\n")
    runs = omniglot_one_shot_runs(tmp_path / "omniglot")
    assert [r.name for r in runs] == ["run01", "run02"]
    assert runs[0].train_images.shape == (3, 1, 28, 28) == runs[0].test_images.shape
    assert runs[0].answers.tolist() == [2, 1, 0]
    assert runs[0].test_sources[0] == "run01/test/item01.png"
    with pytest.raises(DataError, match="one-shot-classification/all_runs"):
        omniglot_one_shot_runs(tmp_path / "nothing")
    with pytest.raises(DataError, match="METAMAP_OMNIGLOT"):
        omniglot_one_shot_runs()
