"""A model's preprocessing travels with it, and its features never depend on the batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from metamap.cli import main
from metamap.data.images import decode_image
from metamap.errors import TaskShapeError
from metamap.features import FeatureExtractor, FewShotClassifier, InputSpec, load_image_files
from metamap.features.export import export_extractor
from metamap.train import learner_from_checkpoint


def test_the_checkpoint_carries_its_preprocessing_and_files_get_it(
    inverted_ckpt: Path, image_root: Path
) -> None:
    ext = FeatureExtractor.from_checkpoint(inverted_ckpt)
    assert ext.spec == InputSpec(1, 28, "lanczos", True, (0.4,), (0.2,))
    files = load_image_files(image_root, ext.spec).files
    raw = np.stack([decode_image(f, 28, "L") for f in files])  # as a user would decode them
    z = ext.embed(files)
    torch.testing.assert_close(ext.embed(255 - raw), z)  # inverted by the spec, not by hand
    assert not torch.allclose(ext.embed(raw), z, atol=1e-3)
    # What the network saw in training: the cached (inverted) images, normalised.
    _, learner, _ = learner_from_checkpoint(inverted_ckpt)
    x = torch.from_numpy(255 - raw).float() / 255
    with torch.no_grad():
        want = learner.encoder().eval()((x - 0.4) / 0.2).flatten(1)
    torch.testing.assert_close(z, want)


def test_an_override_is_explicit_and_recorded(inverted_ckpt: Path, image_root: Path) -> None:
    plain = FeatureExtractor.from_checkpoint(inverted_ckpt, preprocessing={"invert": False})
    assert not plain.spec.invert and plain.info["preprocessing_overridden"] == {"invert": False}
    with pytest.raises(TaskShapeError, match="unknown preprocessing field"):
        FeatureExtractor.from_checkpoint(inverted_ckpt, preprocessing={"inverse": True})
    with pytest.raises(TaskShapeError, match="resample 'cubic' is not a filter"):
        FeatureExtractor.from_checkpoint(inverted_ckpt, preprocessing={"resample": "cubic"})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"invert": "false"}, r"invert must be true or false, got 'false'"),  # bool("false")
        ({"invert": "flase"}, r"invert must be true or false"),
        ({"channels": 1.7}, r"channels must be a positive integer, got 1.7"),
        ({"image_size": 0}, r"image_size must be a positive integer"),
        ({"mean": [0.4, 0.4], "std": [0.2, 0.2]}, r"mean must be .* one per channel \(1\)"),
        ({"mean": 0.4, "std": 0.2}, r"mean must be a list of numbers"),
        ({"mean": ["a"], "std": [0.2]}, r"mean must be a list of numbers"),
    ],
)
def test_a_bad_override_value_is_refused_naming_the_field(
    inverted_ckpt: Path, changes: dict[str, object], match: str
) -> None:
    """A value of the wrong kind is refused, not coerced: ``bool("false")`` is True, and a mean
    per channel of another model failed deep inside torch."""
    with pytest.raises(TaskShapeError, match=match):
        FeatureExtractor.from_checkpoint(inverted_ckpt, preprocessing=changes)


def test_a_bad_override_on_the_command_line_is_one_line(
    inverted_ckpt: Path, image_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for pre, needle in (
        (["mean=[0.1,0.2]", "std=[0.3,0.3]"], "mean must be a list of numbers"),
        (["invert=flase"], "invert must be true or false, got 'flase'"),
    ):
        argv = ["extract", str(inverted_ckpt), str(image_root), "--out", str(tmp_path / "f.npz")]
        assert main(argv + [a for p in pre for a in ("--preprocess", p)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("metamap: error:") and needle in err, err
    assert not (tmp_path / "f.npz").exists()


def test_a_normalisation_of_another_channel_count_is_named() -> None:
    from metamap.features.extractor import PixelNormalize

    with pytest.raises(TaskShapeError, match=r"mean has 2 values but the images have 3 channel"):
        PixelNormalize([0.1, 0.2], [0.3], 3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_an_export_reproduces_the_eager_model_on_raw_files(
    inverted_ckpt: Path, image_root: Path, tmp_path: Path
) -> None:
    ext = FeatureExtractor.from_checkpoint(inverted_ckpt)
    export_extractor(ext, tmp_path, ["export"])
    meta = json.loads((tmp_path / "features.json").read_text())
    spec = InputSpec.from_dict(meta["preprocessing"])  # all a deployment has
    assert spec == ext.spec
    files = load_image_files(image_root, spec).files[:9]
    pixels = np.stack([decode_image(f, spec.image_size, "L", invert=spec.invert) for f in files])
    program = torch.export.load(tmp_path / "encoder.pt2")
    got = program.module()(torch.from_numpy(pixels).float() / 255)  # normalised inside
    torch.testing.assert_close(got, ext.embed(files), atol=1e-4, rtol=1e-4)


def _one_at_a_time(ext: FeatureExtractor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([ext.embed(x[i : i + 1]) for i in range(len(x))])


def test_a_feature_is_the_same_alone_and_inside_a_shuffled_batch(
    protonet_ckpt: Path, maml_ckpt: Path, image_root: Path
) -> None:
    order = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    inductive = FeatureExtractor.from_checkpoint(protonet_ckpt)
    x = inductive.images(image_root)[:40]
    batch = inductive.embed(x[order], batch_size=16)
    torch.testing.assert_close(_one_at_a_time(inductive, x)[order], batch)
    transductive = FeatureExtractor.from_checkpoint(maml_ckpt).calibrate(x)
    batch = transductive.embed(x[order], batch_size=16)
    torch.testing.assert_close(_one_at_a_time(transductive, x)[order], batch)


def test_a_transductive_checkpoint_classifies_each_query_on_its_own(
    maml_ckpt: Path, image_root: Path
) -> None:
    loaded = load_image_files(image_root, FeatureExtractor.from_checkpoint(maml_ckpt).spec)
    assert loaded.labels is not None
    support = np.concatenate([np.flatnonzero(loaded.labels == c)[:2] for c in range(4)])
    queries = np.concatenate([np.flatnonzero(loaded.labels == c)[2:5] for c in range(4)])
    clf = FewShotClassifier(FeatureExtractor.from_checkpoint(maml_ckpt))
    clf.fit(loaded.images[support], loaded.labels[support])
    assert clf.calibrated_on == "the 8 support images"
    together = clf.predict_proba(loaded.images[queries])
    alone = np.concatenate([clf.predict_proba(loaded.images[[q]]) for q in queries])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    # Asked for explicitly, the queries are normalised together (as in episodic evaluation).
    batch = FewShotClassifier(FeatureExtractor.from_checkpoint(maml_ckpt, transductive=True))
    batch.fit(loaded.images[support], loaded.labels[support])
    assert batch.calibrated_on == ""
    assert not np.allclose(batch.predict_proba(loaded.images[queries[:1]]), together[:1])


def test_the_sklearn_transformer_rows_do_not_depend_on_their_neighbours(maml_ckpt: Path) -> None:
    from metamap.features.transformer import FeatureTransformer

    g = torch.Generator().manual_seed(4)
    x = torch.rand(30, 28 * 28, generator=g).numpy()
    t = FeatureTransformer(checkpoint=str(maml_ckpt)).fit(x)  # calibrates by default
    np.testing.assert_allclose(t.transform(x[:1]), t.transform(x)[:1], atol=1e-5)


def test_the_cli_says_what_it_applies(
    maml_ckpt: Path, inverted_ckpt: Path, image_root: Path, tmp_path: Path, capsys
) -> None:
    def run(*argv: str) -> str:
        assert main(list(argv)) == 0, capsys.readouterr().err
        return str(capsys.readouterr().out)

    out = run("fewshot", str(maml_ckpt), "--support", str(image_root), "--query",
              str(image_root), "--out", str(tmp_path / "a.csv"))  # fmt: skip
    assert "BatchNorm statistics calibrated on the 72 support images" in out
    out = run("fewshot", str(maml_ckpt), "--support", str(image_root), "--query",
              str(image_root), "--out", str(tmp_path / "b.csv"), "--transductive")  # fmt: skip
    assert "transductive BatchNorm is on" in out
    out = run("extract", str(inverted_ckpt), str(image_root), "--out", str(tmp_path / "z.npz"),
              "--preprocess", "invert=false")  # fmt: skip
    assert "preprocessing (overridden: L 28×28 (lanczos), normalised mean [0.4]" in out
    out = run("extract", str(maml_ckpt), str(image_root), "--out", str(tmp_path / "m.npz"))
    assert "calibrated on the 72 input images" in out
    assert main(["export", str(maml_ckpt), "--out", str(tmp_path / "e"), "--format", "export"]) == 2
    assert "give --calibrate DIR" in capsys.readouterr().err


def test_a_torch_dataset_is_embedded_like_its_files(inverted_ckpt: Path, image_root: Path) -> None:
    """(image, label) pairs of PIL images, as torchvision's ImageFolder gives them, get the
    model's preprocessing (inversion included) like the same files do."""
    from PIL import Image

    ext = FeatureExtractor.from_checkpoint(inverted_ckpt)
    files = load_image_files(image_root, ext.spec).files[:8]

    class Pairs(torch.utils.data.Dataset[tuple[Image.Image, int]]):
        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, i: int) -> tuple[Image.Image, int]:
            return Image.open(files[i]).convert("L"), i % 2

    torch.testing.assert_close(ext.embed(Pairs()), ext.embed(files))


def test_calibration_images_recalibrate_an_inductive_extractor_as_the_cli_does(
    protonet_ckpt: Path,
    maml_ckpt: Path,
    tmp_path: Path,
    class_folder: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``calibration=`` used to be ignored for an inductive checkpoint, while ``--calibrate DIR``
    replaced its running statistics: both now do (AdaBN), with the same predictions."""
    import csv

    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    assert ext.batch_norm == "inductive" and not ext.batch_dependent
    support = class_folder(tmp_path / "support", [1, 6, 11], 2, 3)
    query = class_folder(tmp_path / "query", [1, 6, 11], 3, 4)
    plain = FewShotClassifier(ext).fit(support)
    assert plain.calibrated_on == ""
    clf = FewShotClassifier(ext, calibration=str(query)).fit(support)
    assert clf.calibrated_on == "the 9 calibration images"
    proba = clf.predict_proba(str(query))
    assert not np.allclose(proba, plain.predict_proba(str(query)), atol=1e-3)
    np.testing.assert_allclose(
        proba, FewShotClassifier(ext.calibrate(str(query))).fit(support).predict_proba(str(query))
    )
    out = tmp_path / "p.csv"
    argv = ["fewshot", str(protonet_ckpt), "--support", str(support), "--query", str(query)]
    assert main([*argv, "--calibrate", str(query), "--out", str(out)]) == 0
    assert "BatchNorm statistics calibrated on the 9 images of" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    cli = np.array([[float(r[f"p_{c}"]) for c in clf.classes_] for r in rows])
    np.testing.assert_allclose(cli, proba, atol=1e-4)
    with pytest.raises(ValueError, match="calibration= and an extractor made with transductive"):
        FewShotClassifier(
            FeatureExtractor.from_checkpoint(maml_ckpt, transductive=True), calibration=query
        )
