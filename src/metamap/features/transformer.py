"""A scikit-learn transformer around a meta-learned feature extractor.

``FeatureTransformer(checkpoint="runs/x/checkpoints/best.pt")`` maps flattened images
``X (n_samples, C·H·W)`` with values in [0, 1] (divide uint8 pixels by 255) to features
``(n_samples, D)``, so that a meta-learned backbone drops into any scikit-learn workflow::

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    clf = make_pipeline(FeatureTransformer(checkpoint=ckpt), LogisticRegression(max_iter=1000))
    clf.fit(X_train, y_train)

The extractor is loaded in :meth:`fit` (``extractor_``), not in ``__init__``, as scikit-learn
requires; ``fit`` learns nothing else, except for a transductive-BatchNorm checkpoint (no
running statistics): ``calibrate=True`` (the default) fixes its statistics to those of the
``fit`` images, so that a row's features never depend on the other rows of ``transform``'s
input; ``calibrate=False`` is refused for such a checkpoint unless its extractor was made with
``transductive=True``. Needs ``pip install metamap[features]``.

``fit`` and ``transform`` refuse, with :class:`~metamap.errors.TaskShapeError` (a
``ValueError``) naming ``X``, rows that hold NaN or infinite values or values outside [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

try:
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "metamap.features.transformer needs scikit-learn: pip install 'metamap[features]'"
    ) from e

from metamap.features.extractor import FeatureExtractor
from metamap.features.inputs import as_image_tensor, check_pixels
from metamap.learners.checks import check_finite

__all__ = ["FeatureTransformer"]


class FeatureTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Flattened images ``(n, C·H·W)`` in [0, 1] → meta-learned features ``(n, D)``.

    Parameters: ``checkpoint`` (a metamap checkpoint path) or ``extractor`` (a
    :class:`FeatureExtractor`; takes precedence), ``batch_size`` of the forward passes, and
    ``calibrate`` (fix transductive BatchNorm statistics on the ``fit`` images).
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        extractor: FeatureExtractor | None = None,
        batch_size: int | None = None,
        calibrate: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.extractor = extractor
        self.batch_size = batch_size
        self.calibrate = calibrate

    def _images(self, x: npt.NDArray[Any], ext: FeatureExtractor) -> npt.NDArray[np.float32]:
        c, h, w = ext.spec.shape
        return np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), c, h, w)

    def fit(self, X: Any, y: Any = None) -> FeatureTransformer:
        """Load the extractor and check that ``X`` holds images of its size."""
        ext = self.extractor
        if ext is None:
            if self.checkpoint is None:
                raise ValueError("give checkpoint= (a metamap checkpoint path) or extractor=")
            ext = FeatureExtractor.from_checkpoint(self.checkpoint)
        x = validate_data(self, X, dtype=np.float32, reset=True, ensure_all_finite=False)
        check_finite(torch.from_numpy(x), "X")
        need = math.prod(ext.spec.shape)
        if x.shape[1] != need:
            raise ValueError(
                f"X has {x.shape[1]} features per sample, but this extractor takes flattened "
                f"{ext.spec} images: {need} values in [0, 1] per row (images.reshape(n, -1) / 255)"
            )
        check_pixels(torch.from_numpy(x), "X", uint8=False)  # X is float32 here, whatever given
        if self.calibrate and ext.batch_dependent and not ext.transductive:
            if len(x) < 2:
                raise ValueError("calibrate=True needs at least 2 samples")
            ext = ext.calibrate(self._images(x, ext), self.batch_size or 256)
        self.extractor_ = ext
        self._n_features_out = ext.feature_dim
        return self

    @property
    def _n_features_out(self) -> int:
        return int(self.n_features_out_)

    @_n_features_out.setter
    def _n_features_out(self, value: int) -> None:
        self.n_features_out_ = value

    def transform(self, X: Any) -> npt.NDArray[np.float32]:
        """Features ``(n_samples, D)``."""
        check_is_fitted(self, "extractor_")
        x = validate_data(self, X, dtype=np.float32, reset=False, ensure_all_finite=False)
        ext: FeatureExtractor = self.extractor_
        check_pixels(torch.from_numpy(x), "X", uint8=False)
        images = as_image_tensor(self._images(x, ext), ext.spec, "X")  # finite, in [0, 1]
        out: npt.NDArray[np.float32] = ext.embed(images, self.batch_size).numpy()
        return out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
