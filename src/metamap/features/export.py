"""Export a feature extractor for deployment, each export checked against the eager model.

Formats (images ``(N, C, H, W)`` float32 in [0, 1] → features ``(N, D)``, any batch size N ≥ 2):

* ``"torchscript"`` — ``torch.jit.trace`` → ``encoder.torchscript.pt`` (``torch.jit.load``;
  PyTorch deprecates TorchScript in favour of ``torch.export``: kept for older runtimes);
* ``"export"`` — ``torch.export`` with a dynamic batch dimension → ``encoder.pt2``
  (``torch.export.load``);
* ``"onnx"`` — ``torch.onnx.export(dynamo=True)`` → ``encoder.onnx``, checked with ONNX Runtime
  (needs ``pip install 'metamap[export]'``).

After writing, each file is loaded back and run on a fresh random batch of another size than the
one used for tracing; the export fails with :class:`ExportError` if any output differs from the
eager extractor's by more than ``atol``. ``features.json`` beside them records the input shape,
the model's preprocessing (how a file becomes an input: colour mode, size, resampling filter,
inversion — decode files that way, e.g. with :func:`metamap.features.load_image_files` and
``InputSpec.from_dict(meta["preprocessing"])``; its mean/std normalisation is inside the exported
graph), feature size, BatchNorm normalisation and source checkpoint. A transductive extractor
must be calibrated first: an export's features never depend on the batch.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from metamap.errors import MetamapError
from metamap.features.extractor import FeatureExtractor
from metamap.models.layout import set_channels_last

__all__ = ["FORMATS", "ExportError", "ExportReport", "Format", "export_extractor"]

Format = Literal["torchscript", "export", "onnx"]
FORMATS: tuple[Format, ...] = ("torchscript", "export", "onnx")
_FILES = {"torchscript": "encoder.torchscript.pt", "export": "encoder.pt2", "onnx": "encoder.onnx"}


class ExportError(MetamapError, RuntimeError):
    """An export could not be written, or its outputs differ from the eager model's."""


@dataclass(frozen=True)
class ExportReport:
    format: str
    path: str
    max_abs_error: float
    check_batch: int


def _eager_module(extractor: FeatureExtractor) -> nn.Module:
    module = copy.deepcopy(extractor.encoder)  # exports take plain contiguous images
    set_channels_last(module, False)
    return module.eval()


def _write(fmt: Format, module: nn.Module, example: Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=2)
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch deprecates TorchScript; tracing warns
            traced = torch.jit.trace(module, (example,), check_trace=False)  # type: ignore[no-untyped-call]
        traced.save(str(path))
    elif fmt == "export":
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, path)
    else:
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise ExportError(
                "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'metamap[export]'"
            ) from None
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(
                    module,
                    (example,),
                    str(path),
                    dynamo=True,
                    input_names=["images"],
                    output_names=["features"],
                    dynamic_shapes=({0: batch},),
                )
        finally:
            quiet.setLevel(level)


def _run(fmt: Format, path: Path, x: Tensor) -> Tensor:
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            out: Tensor = torch.jit.load(str(path))(x)  # type: ignore[no-untyped-call]
        return out
    if fmt == "export":
        program = torch.export.load(path)
        res: Tensor = program.module()(x)
        return res
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(np.asarray(y))


def export_extractor(
    extractor: FeatureExtractor,
    out_dir: str | os.PathLike[str],
    formats: tuple[Format, ...] | list[Format] = FORMATS,
    *,
    atol: float = 1e-4,
    seed: int = 0,
) -> list[ExportReport]:
    """Write ``extractor`` in each of ``formats`` to ``out_dir`` and check every file."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown export format(s) {bad}; choose from {', '.join(FORMATS)}")
    if extractor.batch_dependent:
        raise ExportError(
            "this extractor's transductive BatchNorm has no fixed statistics, so an exported "
            "model's features would depend on the batch: calibrate it first "
            "(extractor.calibrate(images); CLI: metamap export --calibrate DIR)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = _eager_module(extractor)
    g = torch.Generator().manual_seed(seed)
    c, h, w = extractor.spec.shape
    example = torch.rand(4, c, h, w, generator=g).to(extractor.device, extractor.dtype)
    check = torch.rand(7, c, h, w, generator=g).to(extractor.device, extractor.dtype)
    with torch.inference_mode():
        want = module(check).float().cpu()
    reports = []
    for fmt in formats:
        path = out / _FILES[fmt]
        try:
            _write(fmt, module, example, path)
            with torch.inference_mode():
                got = _run(fmt, path, check).float().cpu()
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"{fmt} export failed: {type(e).__name__}: {e}") from e
        err = float((got - want).abs().max()) if got.shape == want.shape else float("inf")
        if not err <= atol:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"the {fmt} export's outputs differ from the eager model's by {err:.3g} "
                f"(> atol {atol}); the file was removed"
            )
        reports.append(ExportReport(fmt, str(path), err, len(check)))
    meta = {
        "input": {"channels": c, "height": h, "width": w, "range": [0.0, 1.0]},
        "preprocessing": extractor.spec.to_dict(),
        "feature_dim": extractor.feature_dim,
        "batch_norm": extractor.batch_norm,
        "normalization": extractor.normalization,
        "source": extractor.info,
        "exports": [asdict(r) for r in reports],
    }
    (out / "features.json").write_text(json.dumps(meta, indent=2) + "\n")
    return reports
