"""`metamap extract`, `fewshot` and `export` on a user's folders; bad input exits 2 with a line."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from metamap.cli import main
from metamap.features import FeatureExtractor, load_image_files


def test_extract_npz_and_parquet(
    protonet_ckpt: Path, image_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["extract", str(protonet_ckpt), str(image_root), "--out", str(tmp_path / "f.npz")])
        == 0
    )
    data = np.load(tmp_path / "f.npz")
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    loaded = load_image_files(image_root, ext.spec)
    np.testing.assert_allclose(data["features"], ext.embed(loaded).numpy(), atol=1e-6)
    np.testing.assert_array_equal(data["labels"], loaded.labels)
    assert list(data["class_names"]) == [f"class{c:02d}" for c in range(12)]
    assert data["files"][0].endswith("class00/0.png")
    assert (
        main(["extract", str(protonet_ckpt), str(image_root), "--out", str(tmp_path / "f.parquet")])
        == 0
    )
    table = pq.read_table(tmp_path / "f.parquet").to_pydict()
    assert table["label"][0] == "class00" and len(table["file"]) == 72
    np.testing.assert_allclose(table["f3"], data["features"][:, 3], atol=1e-6)
    assert "wrote 72 × 16 features" in capsys.readouterr().out


def test_fewshot_on_new_class_folders_writes_csv(
    protonet_ckpt: Path,
    tmp_path: Path,
    class_folder: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    support = class_folder(tmp_path / "support", [1, 6, 11], 2, 3)
    query = class_folder(tmp_path / "query", [1, 6, 11], 4, 4)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, p in enumerate(sorted(query.glob("*/*.png"))):
        Image.open(p).resize((56, 56)).save(flat / f"q{i:02d}.png")  # another size: converted
    out = tmp_path / "pred.csv"
    args = ["fewshot", str(protonet_ckpt), "--support", str(support), "--query", str(flat)]
    assert main([*args, "--out", str(out), "--head", "logistic"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and set(rows[0]) >= {"file", "prediction", "p_class01", "p_class11"}
    truth = [f"class{c:02d}" for c in (1, 6, 11) for _ in range(4)]
    assert np.mean([r["prediction"] == t for r, t in zip(rows, truth, strict=True)]) >= 0.9
    for r in rows:
        assert abs(sum(float(r[f"p_class{c:02d}"]) for c in (1, 6, 11)) - 1) < 1e-3
    captured = capsys.readouterr()
    assert "12 of 12 query images were converted" in captured.err
    assert main([*args[:-1], str(query), "--out", str(out)]) == 0  # labelled query folder
    assert "accuracy" in capsys.readouterr().out


def test_feature_commands_skip_non_images_only_when_asked(
    protonet_ckpt: Path,
    tmp_path: Path,
    class_folder: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A ``Thumbs.db`` beside the images is refused, naming ``--skip-non-images``; with it the
    commands give what they give on the images alone."""
    support = class_folder(tmp_path / "support", [1, 6, 11], 2, 3)
    query = class_folder(tmp_path / "query", [1, 6, 11], 4, 4)
    clean = main(["extract", str(protonet_ckpt), str(query), "--out", str(tmp_path / "a.npz")])
    assert clean == 0
    for folder in (support / "class06", query, query / "class11"):
        (folder / "Thumbs.db").write_bytes(b"\0")
    extract = ["extract", str(protonet_ckpt), str(query), "--out", str(tmp_path / "b.npz")]
    fewshot = ["fewshot", str(protonet_ckpt), "--support", str(support), "--query", str(query)]
    fewshot += ["--out", str(tmp_path / "p.csv")]
    capsys.readouterr()
    for argv in (extract, fewshot):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "'Thumbs.db'" in err and "--skip-non-images on the command line" in err, err
        assert main([*argv, "--skip-non-images"]) == 0
    np.testing.assert_array_equal(
        np.load(tmp_path / "a.npz")["features"], np.load(tmp_path / "b.npz")["features"]
    )
    assert "accuracy" in capsys.readouterr().out


def test_export_command(
    protonet_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(protonet_ckpt), "--out", str(tmp_path), "--format", "export"]) == 0
    assert (tmp_path / "encoder.pt2").exists() and not (tmp_path / "encoder.onnx").exists()
    program = torch.export.load(tmp_path / "encoder.pt2")
    assert program.module()(torch.rand(3, 1, 28, 28)).shape == (3, 16)
    assert "max |Δ| vs eager" in capsys.readouterr().out


def test_feature_commands_reject_bad_input(
    protonet_ckpt: Path, image_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "s" / "a").mkdir(parents=True)
    (tmp_path / "s" / "b").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "s" / "a" / "x.png")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "notes.txt").write_text("not an image")
    ck = str(protonet_ckpt)
    cases = [
        (["extract", ck, str(image_root), "--out", str(tmp_path / "f.csv")], ".npz or .parquet"),
        (
            ["extract", str(tmp_path / "nope.pt"), str(image_root), "--out", "x.npz"],
            "does not exist",
        ),
        (
            ["fewshot", ck, "--support", str(tmp_path / "empty"), "--query", str(image_root)],
            "empty",
        ),
        (
            ["fewshot", ck, "--support", str(tmp_path / "s"), "--query", str(image_root)],
            "holds no images",
        ),
        (
            ["fewshot", ck, "--support", str(image_root), "--query", str(tmp_path / "q")],
            "notes.txt",
        ),
        (
            [
                "fewshot",
                ck,
                "--support",
                str(image_root),
                "--query",
                str(image_root),
                "--head",
                "knn",
            ],
            "--head",
        ),
        (["export", ck, "--out", str(tmp_path), "--format", "tflite"], "--format"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("metamap: error:") and needle in err, (argv, err)
        assert "Traceback" not in err


def test_calibrate_and_transductive_together_are_refused(
    maml_ckpt: Path, image_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--transductive used to win silently over --calibrate DIR (features then depended on the
    batch although statistics were asked for): the contradiction is one line, before any work."""
    out = tmp_path / "f.npz"
    for argv in (
        ["extract", str(maml_ckpt), str(image_root), "--out", str(out)],
        ["fewshot", str(maml_ckpt), "--support", str(image_root), "--query", str(image_root)],
    ):
        for calibrate in (["--calibrate", str(image_root)], ["--calibrate"]):
            assert main([*argv, "--transductive", *calibrate]) == 2
            err = capsys.readouterr().err
            assert err.startswith("metamap: error: --calibrate and --transductive contradict")
    assert not out.exists()


def test_fewshot_accuracy_leaves_out_and_names_query_classes_not_in_the_support(
    protonet_ckpt: Path,
    tmp_path: Path,
    class_folder: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A query class folder that the support set lacks used to be counted wrong silently: the
    accuracy is over the support classes' queries, and the others are named with their counts."""
    support = class_folder(tmp_path / "support", [1, 6, 11], 2, 3)
    query = class_folder(tmp_path / "query", [1, 3, 6, 11], 4, 4)
    out = tmp_path / "pred.csv"
    argv = ["fewshot", str(protonet_ckpt), "--support", str(support), "--out", str(out)]
    assert main([*argv, "--query", str(query)]) == 0
    printed = capsys.readouterr().out
    assert "on 12 labelled queries of support classes" in printed
    assert (
        "4 queries in class folders the support set does not have — class03 (4) — are left out"
        in printed
    )
    assert len(list(csv.DictReader(out.open()))) == 16  # still predicted
    rows = [r for r in csv.DictReader(out.open()) if "class03" not in r["file"]]
    right = np.mean([Path(r["file"]).parent.name == r["prediction"] for r in rows])
    assert f"accuracy {right:.4f} on 12" in printed
    unknown = class_folder(tmp_path / "unknown", [2, 3], 2, 5)
    assert main([*argv, "--query", str(unknown)]) == 0
    printed = capsys.readouterr().out
    assert not any(line.startswith("accuracy") for line in printed.splitlines())
    assert "no accuracy: none of the query class folders — class02 (2), class03 (2) —" in printed
