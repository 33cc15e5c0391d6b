"""FewShotClassifier: each head against a reference implementation, labels, folders, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from metamap.errors import DataError, TaskShapeError
from metamap.features import HEADS, FeatureExtractor, FewShotClassifier, load_image_files
from metamap.train import learner_from_checkpoint


@pytest.fixture(scope="module")
def ext(protonet_ckpt: Path) -> FeatureExtractor:
    return FeatureExtractor.from_checkpoint(protonet_ckpt)


@pytest.fixture(scope="module")
def split(
    ext: FeatureExtractor, image_root: Path
) -> tuple[torch.Tensor, list[str], torch.Tensor, list[str]]:
    """3 support and 3 query images of each of the 12 classes, labelled by folder name."""
    loaded = load_image_files(image_root, ext.spec)
    x = ext.images(loaded)
    names = [loaded.class_names[i] for i in loaded.labels]  # type: ignore[union-attr]
    sup = [i for i in range(len(x)) if i % 6 < 3]
    qry = [i for i in range(len(x)) if i % 6 >= 3]
    return x[sup], [names[i] for i in sup], x[qry], [names[i] for i in qry]


@pytest.mark.parametrize("head", HEADS)
def test_every_head_classifies_new_images(ext: FeatureExtractor, split: tuple, head: str) -> None:
    sx, sy, qx, qy = split
    clf = FewShotClassifier(ext, head, finetune_steps=10).fit(sx, sy)  # type: ignore[arg-type]
    assert list(clf.classes_) == sorted(set(sy))
    p = clf.predict_proba(qx)
    assert p.shape == (36, 12)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    assert set(clf.predict(qx)) <= set(sy)
    assert clf.score(qx, qy) >= 0.9, head  # 12 easy classes, 3-shot; chance is 0.083


def test_prototype_head_is_protonet(
    protonet_ckpt: Path, ext: FeatureExtractor, split: tuple
) -> None:
    sx, sy, qx, _ = split
    _, learner, _ = learner_from_checkpoint(protonet_ckpt)
    learner.eval()
    labels = torch.tensor([sorted(set(sy)).index(s) for s in sy])
    with torch.no_grad():
        want = learner.predict(learner.adapt(sx, labels), qx)
    got = FewShotClassifier(ext, "prototype").fit(sx, sy).decision_function(qx)
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)


def test_logistic_and_ridge_heads_match_scikit_learn(ext: FeatureExtractor, split: tuple) -> None:
    sx, sy, qx, _ = split
    zs = torch.nn.functional.normalize(ext.embed(sx), dim=-1).numpy().astype(np.float64)
    zq = torch.nn.functional.normalize(ext.embed(qx), dim=-1).numpy().astype(np.float64)
    ours = FewShotClassifier(ext, "logistic", logistic_c=10.0, logistic_steps=500).fit(sx, sy)
    ref = LogisticRegression(C=10.0, tol=1e-10, max_iter=10_000).fit(zs, sy)
    np.testing.assert_allclose(ours.predict_proba(qx), ref.predict_proba(zq), atol=2e-3)
    onehot = (np.asarray(sy)[:, None] == np.array(sorted(set(sy)))[None]).astype(np.float64)
    ridge = Ridge(alpha=0.5, fit_intercept=False).fit(zs, onehot)
    got = FewShotClassifier(ext, "ridge", ridge_lambda=0.5, ridge_scale=1.0).fit(sx, sy)
    np.testing.assert_allclose(got.decision_function(qx), zq @ ridge.coef_.T, atol=1e-4)


def test_finetune_starts_at_the_prototype_classifier_and_fits_the_support(
    ext: FeatureExtractor, split: tuple
) -> None:
    sx, sy, qx, _ = split
    proto = FewShotClassifier(ext, "prototype").fit(sx, sy).predict_proba(qx)
    zero = FewShotClassifier(ext, "finetune", finetune_steps=0).fit(sx, sy).predict_proba(qx)
    np.testing.assert_allclose(zero, proto, atol=1e-4)  # w=2c, b=-|c|²: the same softmax
    tuned = FewShotClassifier(ext, "finetune", finetune_steps=20, finetune_lr=1e-2).fit(sx, sy)
    assert not np.allclose(tuned.predict_proba(qx), proto, atol=1e-3)
    assert tuned.score(sx, sy) == 1.0
    before = [p.clone() for p in ext.encoder.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, ext.encoder.parameters(), strict=True))


def test_fit_from_class_folders(
    ext: FeatureExtractor, tmp_path: Path, class_folder: Callable[..., Path]
) -> None:
    support = class_folder(tmp_path / "support", [0, 5, 10], 2, seed=1)
    query = class_folder(tmp_path / "query", [0, 5, 10], 3, seed=2)
    clf = FewShotClassifier(ext).fit(support)
    assert list(clf.classes_) == ["class00", "class05", "class10"]
    q = load_image_files(query, ext.spec)
    truth = np.array(q.class_names)[q.labels]
    assert float(np.mean(clf.predict(q) == truth)) >= 0.9


def test_bad_support_sets(ext: FeatureExtractor, split: tuple, tmp_path: Path) -> None:
    sx, sy, qx, _ = split
    with pytest.raises(TaskShapeError, match="at least 2"):
        FewShotClassifier(ext).fit(sx[:3], ["a", "a", "a"])
    with pytest.raises(TaskShapeError, match="labels"):
        FewShotClassifier(ext).fit(sx, sy[:-1])
    with pytest.raises(RuntimeError, match="not fitted"):
        FewShotClassifier(ext).predict(qx)
    with pytest.raises(ValueError, match="head must be"):
        FewShotClassifier(ext, "knn")  # type: ignore[arg-type]
    (tmp_path / "s" / "a").mkdir(parents=True)
    (tmp_path / "s" / "b").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        FewShotClassifier(ext).fit(tmp_path / "s")
    with pytest.raises(TaskShapeError, match="give labels"):
        FewShotClassifier(ext).fit(sx)
