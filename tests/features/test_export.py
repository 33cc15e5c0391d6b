"""Exports (TorchScript, torch.export, ONNX) reproduce the eager extractor on new batch sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from metamap.features import FeatureExtractor
from metamap.features.export import ExportError, export_extractor


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize(  # inductive and transductive BatchNorm; max-pool and strided Conv-4
    "ckpt", ["protonet_ckpt", "maml_ckpt", "maml_strided_ckpt"]
)
def test_every_format_reloads_and_matches_eager(
    ckpt: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ext = FeatureExtractor.from_checkpoint(request.getfixturevalue(ckpt))
    if ext.batch_dependent:  # transductive: an export must not depend on the batch
        with pytest.raises(ExportError, match="calibrate it first"):
            export_extractor(ext, tmp_path)
        ext = ext.calibrate(torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    reports = export_extractor(ext, tmp_path)
    assert [r.format for r in reports] == ["torchscript", "export", "onnx"]
    assert all(r.max_abs_error <= 1e-4 for r in reports)
    meta = json.loads((tmp_path / "features.json").read_text())
    assert meta["feature_dim"] == ext.feature_dim and meta["input"]["height"] == 28
    # Independently of the export's own check: a batch of 13 through each file.
    x = torch.rand(13, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    want = ext.embed(x, batch_size=13)
    script = torch.jit.load(str(tmp_path / "encoder.torchscript.pt"))
    torch.testing.assert_close(script(x), want, atol=1e-4, rtol=1e-4)
    program = torch.export.load(tmp_path / "encoder.pt2")
    torch.testing.assert_close(program.module()(x), want, atol=1e-4, rtol=1e-4)
    session = ort.InferenceSession(str(tmp_path / "encoder.onnx"))
    (got,) = session.run(None, {"images": x.numpy()})
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)


def test_channels_last_extractor_exports_and_bad_format(
    protonet_ckpt: Path, tmp_path: Path
) -> None:
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt, channels_last=True)
    (r,) = export_extractor(ext, tmp_path, ["export"])
    assert r.max_abs_error <= 1e-4 and ext.channels_last
    with pytest.raises(ExportError, match="unknown export format"):
        export_extractor(ext, tmp_path, ["tflite"])  # type: ignore[list-item]
