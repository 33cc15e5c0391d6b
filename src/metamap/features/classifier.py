"""Few-shot classification of new classes on top of a feature extractor.

``FewShotClassifier(extractor, head).fit(support_images, labels)`` fits a head on the support
features; ``predict`` / ``predict_proba`` classify new images. Labels can be anything hashable
(class names, ints); ``classes_`` holds them sorted, in the column order of ``predict_proba``.

Heads (features z = f_φ(x), ``(N, D)``):

* ``"prototype"`` — Snell et al. 2017: logits ``−‖z − c_k‖²``, c_k the mean support feature of
  class k (what ProtoNet is trained for).
* ``"ridge"`` — Bertinetto et al. 2019 (R2D2): ridge regression of one-hot labels on
  L2-normalised features in closed form, ``W = Zᵀ(ZZᵀ + λI)⁻¹Y``; probabilities are
  ``softmax(scale · ẑW)`` (``ridge_scale``: ridge scores are not calibrated probabilities).
* ``"logistic"`` — Tian et al. 2020: multinomial logistic regression on L2-normalised features
  (L-BFGS, C = ``logistic_c``).
* ``"finetune"`` — the encoder and a linear head (initialised from the prototypes as
  ``w_k = 2c_k, b_k = −‖c_k‖²``, Triantafillou et al. 2020) fine-tuned together by Adam on the
  support cross-entropy for ``finetune_steps`` full-batch steps.

Support sets: images with ``labels``, or, without labels, anything that carries them: a folder
with one sub-folder of images per class, :class:`~metamap.features.LoadedImages` of one, an
:class:`~metamap.data.ImageClassDataset` (classes named by its ``class_names``), or a map-style
``torch.utils.data.Dataset`` of ``(image, label)`` pairs such as torchvision's ``ImageFolder``
(classes named by its ``classes`` where it has them, else its integer labels).

BatchNorm: an image's prediction does not depend on the other images it is classified with.
``calibration`` images, when given, always fix the BatchNorm statistics in
:meth:`FewShotClassifier.fit` (:meth:`FeatureExtractor.calibrate`): those of a
transductive-BatchNorm checkpoint (no running statistics), and equally an inductive checkpoint's
running statistics, which they replace (AdaBN, for images of another domain) — as the CLI's
``--calibrate DIR`` does. Without them, an extractor of a transductive-BatchNorm checkpoint is
calibrated on the support set and an inductive one keeps its running statistics. Only an
extractor made with ``transductive=True`` keeps batch statistics (``calibration`` beside it is
refused, as ``--calibrate`` beside ``--transductive`` is): then the support set and each set of
images passed to ``predict`` are normalised together (one batch each), as in episodic
evaluation.

Refused before any work, with :class:`~metamap.errors.TaskShapeError`: images of another
shape than the extractor's, float images that are not finite or not in [0, 1], an empty
support set or query set, a label count that differs from the image count, and support labels
of a single class.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from metamap.data import ImageClassDataset
from metamap.errors import TaskShapeError
from metamap.features.extractor import FeatureExtractor
from metamap.features.inputs import (
    ImageSource,
    LoadedImages,
    decode_torch_dataset,
    load_image_files,
)
from metamap.learners import fit_logistic
from metamap.learners.protonet import class_means
from metamap.learners.r2d2 import ridge_woodbury

__all__ = ["HEADS", "FewShotClassifier", "Head"]


def _names_classes(dataset: Dataset[Any]) -> bool:
    """Whether a torch ``dataset`` (or the one under its ``Subset`` s) names its classes in a
    ``classes`` list, as torchvision's classification datasets do."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return isinstance(classes, Sequence) and not isinstance(classes, str)


def _values(data: ImageClassDataset) -> list[int]:
    """The dataset's own integer label of each class of ``data``, which
    :func:`~metamap.data.from_torch_dataset` names by its value where the dataset has no
    ``classes``."""
    return [int(name) for name in data.class_names]


Head = Literal["prototype", "ridge", "logistic", "finetune"]
HEADS: tuple[Head, ...] = ("prototype", "ridge", "logistic", "finetune")


class FewShotClassifier:
    """A head fitted on the support features of a few labelled images of new classes."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        head: Head = "prototype",
        *,
        ridge_lambda: float = 1.0,
        ridge_scale: float = 10.0,
        logistic_c: float = 10.0,
        logistic_steps: int = 100,
        finetune_steps: int = 50,
        finetune_lr: float = 1e-3,
        batch_size: int | None = None,
        calibration: ImageSource | None = None,
    ) -> None:
        """``calibration``: images whose BatchNorm statistics :meth:`fit` fixes (see the
        module's text); ``None`` calibrates only a transductive-BatchNorm extractor, on the
        support set."""
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}; got {head!r}")
        if calibration is not None and extractor.transductive:
            raise ValueError(
                "calibration= and an extractor made with transductive=True contradict each "
                "other: calibration fixes BatchNorm statistics so that predictions never depend "
                "on the other images, transductive=True normalises each batch with its own "
                "statistics; give one of them"
            )
        self.extractor = extractor
        self._given = extractor
        self.calibration = calibration
        self.calibrated_on = ""
        """What BatchNorm statistics were calibrated on in :meth:`fit` ("" when not)."""
        self.head = head
        self.ridge_lambda, self.ridge_scale = ridge_lambda, ridge_scale
        self.logistic_c, self.logistic_steps = logistic_c, logistic_steps
        self.finetune_steps, self.finetune_lr = finetune_steps, finetune_lr
        self.batch_size = batch_size
        self.classes_: npt.NDArray[Any] = np.empty(0)
        self._state: dict[str, Tensor] = {}
        self._encoder: nn.Module | None = None

    # ---- fitting -------------------------------------------------------------------------
    def fit(self, images: ImageSource, labels: Sequence[Any] | None = None) -> FewShotClassifier:
        """Fit the head on support ``images`` with ``labels``, or on labelled images without
        ``labels``: a folder of class folders, an :class:`~metamap.data.ImageClassDataset` or a
        torch ``Dataset`` of ``(image, label)`` pairs (see the module's text)."""
        x, y_raw = self._support(images, labels)
        classes, y = np.unique(np.asarray(y_raw), return_inverse=True)
        if len(classes) < 2:
            raise TaskShapeError(
                f"the support labels hold a single class ({classes.tolist()[0]!r}); a few-shot "
                "classifier needs labelled images of at least 2 classes: add images of another "
                "class"
            )
        self.classes_ = classes
        self.extractor, self.calibrated_on = self._given, ""
        if self.calibration is not None:  # asked for: also replaces running statistics
            xc = self._given.images(self.calibration, "calibration images")
            self.extractor = self._given.calibrate(xc)
            self.calibrated_on = f"the {len(xc)} calibration images"
        elif self._given.batch_dependent and not self._given.transductive:
            self.extractor = self._given.calibrate(x)
            self.calibrated_on = f"the {len(x)} support images"
        onehot = F.one_hot(torch.from_numpy(y.astype(np.int64)), len(classes)).float()
        self._encoder = None
        if self.head == "finetune":
            self._fit_finetune(x, onehot)
            return self
        z = self.extractor.embed(x, self._batch(len(x)))
        if self.head == "prototype":
            self._state = {"prototypes": class_means(z, onehot)}
        elif self.head == "ridge":
            zn = F.normalize(z, dim=-1)
            self._state = {"weight": ridge_woodbury(zn, onehot, self.ridge_lambda)}
        else:
            w, b = fit_logistic(
                F.normalize(z, dim=-1), onehot, self.logistic_c, self.logistic_steps
            )
            self._state = {"weight": w, "bias": b}
        return self

    def _support(self, images: ImageSource, labels: Sequence[Any] | None) -> tuple[Tensor, Any]:
        if labels is None:
            return self._labelled(images)
        x = self.extractor.images(images, "support images")
        if len(x) == 0:
            raise TaskShapeError(
                "the support set is empty: give labelled images of at least 2 classes"
            )
        if len(labels) != len(x):
            raise TaskShapeError(
                f"{len(x)} support images but {len(labels)} labels: give one label per image"
            )
        y = np.asarray(labels)
        if y.dtype.kind in "fc" and not np.isfinite(y).all():
            raise TaskShapeError(
                f"the support labels contain {int((~np.isfinite(y)).sum())} NaN or infinite "
                "values; give every image a class label"
            )
        return x, list(labels)

    def _labelled(self, images: ImageSource) -> tuple[Tensor, npt.NDArray[Any]]:
        """Support images and their labels from a source that carries labels."""
        spec = self.extractor.spec
        if isinstance(images, str | os.PathLike):
            images = load_image_files(images, spec, labelled=True)
        if isinstance(images, LoadedImages):
            if images.labels is None:
                raise TaskShapeError(
                    f"the {len(images.files)} support images have no class labels (they were "
                    "loaded from files or a folder of images): give labels, or load a folder "
                    "with one sub-folder of images per class"
                )
            x = self.extractor.images(images, "support images")
            return x, np.array(images.class_names)[images.labels]
        by_value = False  # classes named by their integer labels, not by names
        if isinstance(images, Dataset):  # (image, label) pairs: decoded once, like files
            by_value = not _names_classes(images)
            images = decode_torch_dataset(images, spec)
        if not isinstance(images, ImageClassDataset):
            raise TaskShapeError(
                "give labels, or labelled images: a folder with one sub-folder of images per "
                "class, an ImageClassDataset or a torch Dataset of (image, label) pairs"
            )
        x = self.extractor.images(images, "support images")
        names = np.array(_values(images) if by_value else images.class_names)
        if len(x) == 0:
            raise TaskShapeError(
                "the support set is empty: give labelled images of at least 2 classes"
            )
        return x, names[images.labels]

    def _fit_finetune(self, x: Tensor, onehot: Tensor) -> None:
        ext = self.extractor
        encoder = copy.deepcopy(ext.encoder).eval().requires_grad_(True)
        with torch.no_grad():
            z = encoder(x.to(ext.device, ext.dtype))
            c = class_means(z, onehot.to(z))
        w = (2 * c).clone().requires_grad_(True)
        b = (-c.pow(2).sum(1)).clone().requires_grad_(True)
        opt = torch.optim.Adam([*encoder.parameters(), w, b], lr=self.finetune_lr)
        target = onehot.argmax(1).to(ext.device)
        with torch.enable_grad():
            for _ in range(self.finetune_steps):
                logits = encoder(x.to(ext.device, ext.dtype)) @ w.T + b
                loss = F.cross_entropy(logits, target)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
        self._encoder = encoder.requires_grad_(False)
        self._state = {"weight": w.detach(), "bias": b.detach()}

    def _batch(self, n: int) -> int:
        """The batch size: given, or a whole set at once under batch-statistics BatchNorm (a
        support or query set is normalised together, as in episodic training and evaluation),
        or the extractor's default."""
        if self.batch_size is not None:
            return self.batch_size
        if self.extractor.normalization == "batch":
            return max(1, n)
        return self.extractor.default_batch_size

    # ---- prediction ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self._state:
            raise RuntimeError("this FewShotClassifier is not fitted yet: call fit first")

    def decision_function(self, images: ImageSource) -> npt.NDArray[np.float32]:
        """Logits ``(N, W)`` of ``images`` for the classes ``classes_``."""
        self._check_fitted()
        x = self.extractor.images(images)
        if len(x) == 0:
            raise TaskShapeError("no images to classify: give at least one image")
        if self._encoder is not None:
            ext = self.extractor
            bs = self._batch(len(x))
            with torch.inference_mode():
                z = torch.cat(
                    [
                        self._encoder(x[s : s + bs].to(ext.device, ext.dtype))
                        for s in range(0, len(x), bs)
                    ]
                ).float()
        else:
            z = self.extractor.embed(x, self._batch(len(x)))
        s = self._state
        if self.head == "prototype":
            logits = -torch.cdist(z, s["prototypes"]).pow(2)
        elif self.head == "ridge":
            logits = self.ridge_scale * F.normalize(z, dim=-1) @ s["weight"]
        elif self.head == "logistic":
            logits = F.normalize(z, dim=-1) @ s["weight"].T + s["bias"]
        else:
            logits = z.to(s["weight"]) @ s["weight"].T + s["bias"]
        out: npt.NDArray[np.float32] = logits.float().cpu().numpy()
        return out

    def predict_proba(self, images: ImageSource) -> npt.NDArray[np.float32]:
        """Class probabilities ``(N, W)``, columns in the order of ``classes_``."""
        logits = torch.from_numpy(self.decision_function(images))
        out: npt.NDArray[np.float32] = logits.softmax(-1).numpy()
        return out

    def predict(self, images: ImageSource) -> npt.NDArray[Any]:
        """The most probable class of each image (values from ``classes_``)."""
        out: npt.NDArray[Any] = self.classes_[self.decision_function(images).argmax(1)]
        return out

    def score(self, images: ImageSource, labels: Sequence[Any]) -> float:
        """Accuracy of :meth:`predict` against ``labels``."""
        return float(np.mean(self.predict(images) == np.asarray(labels)))
