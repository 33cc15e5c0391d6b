"""Meta-learned feature extraction as a product: embed, few-shot classify, export, explain.

* :class:`FeatureExtractor` — the encoder of any metamap checkpoint: ``embed(images) -> (N, D)``.
* :class:`FewShotClassifier` — ``fit(support, labels)``, ``predict``, ``predict_proba`` with a
  prototype, ridge, logistic or fine-tune head.
* :mod:`metamap.features.sklearn` — a scikit-learn transformer (needs ``metamap[features]``).
* :mod:`metamap.features.export` — TorchScript, ``torch.export`` and ONNX, checked against eager.
"""

from metamap.features.classifier import HEADS, FewShotClassifier, Head
from metamap.features.extractor import FeatureExtractor, encoder_of
from metamap.features.inputs import (
    ImageSource,
    InputSpec,
    LoadedImages,
    input_spec,
    load_image_files,
    replace_spec,
)

__all__ = [
    "HEADS",
    "FeatureExtractor",
    "FewShotClassifier",
    "Head",
    "ImageSource",
    "InputSpec",
    "LoadedImages",
    "encoder_of",
    "input_spec",
    "load_image_files",
    "replace_spec",
]
