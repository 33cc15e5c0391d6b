"""Bad images handed to the feature product are refused before any work, with a TaskShapeError
naming the tensor and the problem: NaN/inf pixels, float pixels outside [0, 1] (the range found
is given), images of another size or channel count than the encoder was trained on, empty sets,
label counts that differ from the image count, and one-class support sets. The encoder and a
fitted classifier are left exactly as they were."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from metamap.errors import TaskShapeError
from metamap.features import FeatureExtractor, FewShotClassifier, InputSpec
from metamap.features.inputs import as_image_tensor, check_pixels
from metamap.features.transformer import FeatureTransformer
from metamap.models import Conv4

SPEC = InputSpec(1, 28)


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    torch.manual_seed(0)
    return FeatureExtractor(Conv4(2, 1, 8, 28, batch_norm="inductive").body, SPEC)


def _images(n: int = 6, size: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


LABELS = ["a", "b", "c"] * 2


@pytest.fixture()
def fitted(extractor: FeatureExtractor) -> FewShotClassifier:
    return FewShotClassifier(extractor).fit(_images(), LABELS)


@contextmanager
def refused(
    extractor: FeatureExtractor, match: str, clf: FewShotClassifier | None = None
) -> Iterator[None]:
    """Expect a TaskShapeError matching ``match``; the encoder's weights and statistics and the
    classifier's fitted head are unchanged."""
    weights = {k: v.clone() for k, v in extractor.encoder.state_dict().items()}
    head = {} if clf is None else {k: v.clone() for k, v in clf._state.items()}
    classes = None if clf is None else clf.classes_.copy()
    with pytest.raises(TaskShapeError, match=match):
        yield
    now = extractor.encoder.state_dict()
    assert all(torch.equal(v, now[k]) for k, v in weights.items())
    if clf is not None:
        assert all(torch.equal(v, clf._state[k]) for k, v in head.items())
        assert classes is not None and np.array_equal(classes, clf.classes_)


# ---- 1. non-finite pixels ---------------------------------------------------------------------
def test_embed_refuses_nan_and_inf(extractor: FeatureExtractor) -> None:
    x = _images()
    x[0, 0, 0, :3] = float("nan")
    with refused(extractor, r"images contains 3 NaN values \(of 4704\)"):
        extractor.embed(x)
    x = _images()
    x[2, 0, 5, 5] = float("inf")
    with refused(extractor, r"images contains 1 infinite value"):
        extractor.embed(x.numpy())


def test_classifier_refuses_non_finite_support_and_queries(
    extractor: FeatureExtractor, fitted: FewShotClassifier
) -> None:
    x = _images()
    x[1, 0, 1, 1] = float("nan")
    with refused(extractor, r"support images contains 1 NaN value", fitted):
        fitted.fit(x, LABELS)
    for method in (fitted.predict, fitted.predict_proba, fitted.decision_function):
        with refused(extractor, r"images contains 1 NaN value", fitted):
            method(x)


def test_classifier_refuses_nan_labels(extractor: FeatureExtractor) -> None:
    with refused(extractor, r"support labels contain 1 NaN"):
        FewShotClassifier(extractor).fit(_images(), [0.0, 1.0, float("nan"), 0.0, 1.0, 2.0])


# ---- 2. float pixels outside [0, 1] -----------------------------------------------------------
def test_float_pixels_in_0_255_are_refused_with_the_range_found(
    extractor: FeatureExtractor,
) -> None:
    x = 255 * _images()
    with refused(extractor, r"images are floating point with values from 0\.0\d* to 25\d\.?\d*, "):
        extractor.embed(x)
    with refused(extractor, r"look like 0…255 pixels: divide them by 255"):
        extractor.embed(x)
    extractor.embed(x.to(torch.uint8))  # uint8 0…255 is accepted
    extractor.embed(x / 255)  # and so are floats in [0, 1]


def test_normalised_pixels_are_refused(
    extractor: FeatureExtractor, fitted: FewShotClassifier
) -> None:
    x = (_images() - 0.5) / 0.25
    with refused(
        extractor, r"values from -2 to 1\.99\d*, outside \[0, 1\].*look normalised", fitted
    ):
        fitted.predict(x)
    with refused(extractor, r"support images are floating point .*outside \[0, 1\]", fitted):
        fitted.fit(x, LABELS)
    with refused(extractor, r"^x are floating point"):
        extractor(x)  # the differentiable forward as well


def test_check_pixels_tolerates_rounding_only() -> None:
    check_pixels(torch.tensor([0.0, 1.0 + 1e-7, -1e-7]))
    check_pixels(torch.tensor([0, 255], dtype=torch.uint8))
    with pytest.raises(TaskShapeError, match=r"values from 0 to 1\.01"):
        check_pixels(torch.tensor([0.0, 1.01]))


# ---- 3. images that do not fit the trained encoder --------------------------------------------
def test_images_of_another_size_or_channels_are_refused(
    extractor: FeatureExtractor, fitted: FewShotClassifier
) -> None:
    with refused(extractor, r"20×20 pixels instead of 28×28", fitted):
        fitted.predict(_images(size=20))  # pooled to 1×1 like 28×28: silently wrong before
    with refused(extractor, r"3 channel\(s\) instead of 1", fitted):
        fitted.predict_proba(_images(channels=3))
    with refused(extractor, r"support images have shape \(6, 1, 20, 20\)", fitted):
        fitted.fit(_images(size=20), LABELS)
    with refused(extractor, r"takes \(N, 1, 28, 28\)"):
        extractor.embed(_images(size=20))


def test_a_checkpoint_refuses_images_of_another_size(protonet_ckpt: Path) -> None:
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    clf = FewShotClassifier(ext).fit(_images(), LABELS)
    with refused(ext, r"have shape \(6, 1, 20, 20\).*20×20 pixels instead of 28×28", clf):
        clf.predict(_images(size=20))
    with refused(ext, r"3 channel\(s\) instead of 1", clf):
        clf.predict(_images(channels=3))


def test_an_encoder_built_for_other_images_is_refused() -> None:
    body = Conv4(2, in_channels=3, width=4, image_size=32).body
    with pytest.raises(TaskShapeError, match=r"built for inputs \(N, 3, 32, 32\).*1×28×28"):
        FeatureExtractor(body, SPEC)


# ---- 4. empty sets, lengths, one class ------------------------------------------------------
def test_support_sets_that_cannot_be_fitted_are_refused(
    extractor: FeatureExtractor, fitted: FewShotClassifier
) -> None:
    with refused(extractor, r"6 support images but 5 labels: give one label per image", fitted):
        fitted.fit(_images(), LABELS[:5])
    with refused(extractor, r"the support set is empty", fitted):
        fitted.fit(_images(0), [])
    with refused(extractor, r"single class \('a'\).*at least 2 classes", fitted):
        fitted.fit(_images(), ["a"] * 6)


def test_empty_queries_are_refused(extractor: FeatureExtractor, fitted: FewShotClassifier) -> None:
    with refused(extractor, r"no images to classify", fitted):
        fitted.predict(_images(0))
    with refused(extractor, r"no images to embed"):
        extractor.embed(_images(0))
    finetuned = FewShotClassifier(extractor, "finetune", finetune_steps=1).fit(_images(), LABELS)
    with refused(extractor, r"no images to classify", finetuned):
        finetuned.predict(_images(0))


# ---- the scikit-learn transformer ---------------------------------------------------------------
def test_transformer_refuses_non_finite_and_out_of_range_x(extractor: FeatureExtractor) -> None:
    x = _images().reshape(6, -1).numpy()
    t = FeatureTransformer(extractor=extractor).fit(x)
    bad = x.copy()
    bad[0, 3] = np.nan
    for call in (FeatureTransformer(extractor=extractor).fit, t.transform):
        with refused(extractor, r"^X contains 1 NaN value"):
            call(bad)
    with refused(extractor, r"^X are floating point with values from 0.* to 2\d\d"):
        t.transform(255 * x)
    with refused(extractor, r"^X are floating point .* outside \[0, 1\]"):
        FeatureTransformer(extractor=extractor).fit(255 * x)
    assert isinstance(TaskShapeError("X"), ValueError)  # what scikit-learn expects


def test_as_image_tensor_names_the_tensor() -> None:
    with pytest.raises(TaskShapeError, match=r"^queries have shape \(2, 3, 28, 28\)"):
        as_image_tensor(torch.rand(2, 3, 28, 28), SPEC, "queries")
    with pytest.raises(TaskShapeError, match=r"^queries must be uint8 \(0…255\) or floating"):
        as_image_tensor(torch.ones(2, 1, 28, 28, dtype=torch.int64), SPEC, "queries")


def test_transformer_tells_uint8_pixels_to_be_divided_not_passed_as_uint8(
    extractor: FeatureExtractor,
) -> None:
    """The transformer converts X to float32, so uint8 pixels reach it as 0…255 floats: the
    message says to divide them by 255, not to "pass them as uint8" (which the user did)."""
    x = (_images() * 255).round().to(torch.uint8).reshape(6, -1).numpy()
    with refused(extractor, r"divide them by 255$"):
        FeatureTransformer(extractor=extractor).fit(x)
    t = FeatureTransformer(extractor=extractor).fit(x / 255.0)
    with pytest.raises(TaskShapeError, match=r"divide them by 255$") as info:
        t.transform(x)
    assert "uint8" not in str(info.value)


def test_fit_on_unlabelled_loaded_images_says_labels_are_missing(
    extractor: FeatureExtractor, tmp_path: Path
) -> None:
    from PIL import Image

    from metamap.features import load_image_files

    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    loaded = load_image_files(tmp_path, SPEC)  # a flat folder: no labels
    with refused(extractor, r"3 support images have no class labels.*give labels"):
        FewShotClassifier(extractor).fit(loaded)
