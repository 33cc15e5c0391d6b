"""FeatureTransformer: a scikit-learn transformer — Pipeline use, estimator checks, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

from metamap.features import FeatureExtractor, load_image_files
from metamap.features.transformer import FeatureTransformer

WIDTH_ERROR = "features per sample, but this extractor takes flattened"


@pytest.fixture(scope="module")
def data(protonet_ckpt: Path, image_root: Path) -> tuple[np.ndarray, np.ndarray]:
    loaded = load_image_files(image_root, FeatureExtractor.from_checkpoint(protonet_ckpt).spec)
    return loaded.images.reshape(len(loaded.images), -1) / 255.0, loaded.labels  # type: ignore[return-value]


def test_pipeline_with_logistic_regression(protonet_ckpt: Path, data: tuple) -> None:
    x, y = data
    train = np.arange(len(x)) % 6 < 4
    pipe = make_pipeline(
        FeatureTransformer(checkpoint=str(protonet_ckpt)), LogisticRegression(max_iter=2000)
    )
    pipe.fit(x[train], y[train])
    assert pipe.score(x[~train], y[~train]) >= 0.9  # 12 classes, chance 0.083
    t = pipe[0]
    assert t.n_features_in_ == 784 and t.transform(x[:3]).shape == (3, 16)
    assert list(t.get_feature_names_out()) == [f"featuretransformer{i}" for i in range(16)]
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    np.testing.assert_allclose(
        t.transform(x), ext.embed(x.reshape(-1, 1, 28, 28)).numpy(), atol=1e-5
    )


def test_clone_pickle_and_errors(protonet_ckpt: Path, data: tuple) -> None:
    x, _ = data
    t = FeatureTransformer(checkpoint=str(protonet_ckpt), batch_size=7)
    with pytest.raises(NotFittedError):
        t.transform(x)
    assert clone(t).get_params() == t.get_params()
    fitted = t.fit(x)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(x[:5]), fitted.transform(x[:5]))
    with pytest.raises(ValueError, match="784 values"):
        FeatureTransformer(checkpoint=str(protonet_ckpt)).fit(x[:, :100])
    with pytest.raises(ValueError, match="784 features"):
        fitted.transform(x[:, :100])
    with pytest.raises(ValueError, match="checkpoint="):
        FeatureTransformer().fit(x)


def _chain(e: BaseException | None) -> list[BaseException]:
    """An exception and the ones it was raised from (a check may wrap ours)."""
    out = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_scikit_learn_estimator_checks_that_apply(protonet_ckpt: Path) -> None:
    """Every scikit-learn estimator check passes, except those whose synthetic data cannot be
    images of the model's size (2–10 columns, not 784): those must fail on exactly our clear
    width error, and nothing else."""
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    results = check_estimator(FeatureTransformer(extractor=ext), on_fail=None)
    passed = [r["check_name"] for r in results if r["status"] == "passed"]
    failed = [r for r in results if r["status"] == "failed"]
    assert len(passed) >= 15, passed
    other = [
        (r["check_name"], str(r["exception"])[:200])
        for r in failed
        if not any(WIDTH_ERROR in str(e) for e in _chain(r["exception"]))
    ]
    assert not other, other
