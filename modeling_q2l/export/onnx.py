"""ONNX export of a saved Query2Label model (`scripts/export_onnx.py`): `pixel_values` in, `logits` out, with the
batch size and the input resolution free (the sine positional encoding is computed from the feature-map size inside
the graph). The exported file is checked against PyTorch with onnxruntime before it is kept.
"""

from pathlib import Path

import numpy as np
import torch

from ..extras import require

ONNX_FILE = "model.onnx"


class _LogitsOnly(torch.nn.Module):
    """The classification model as a function of the pixels alone, returning the logits (what ONNX users need)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export_onnx(model, output_path, image_size: int, opset: int = 18) -> Path:
    """Export `model` (eval mode, float32) to `output_path` with dynamic batch, height and width."""
    for module in ("onnx", "onnxscript"):  # what torch's dynamo exporter needs
        require(module, "ONNX export")
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, 3, image_size, image_size)
    batch, height, width = (torch.export.Dim(name, min=1, max=4096) for name in ("batch", "height", "width"))
    program = torch.onnx.export(
        _LogitsOnly(model.eval().float()).eval(),
        (example,),
        dynamo=True,
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamic_shapes={"pixel_values": {0: batch, 2: height, 3: width}},
        opset_version=opset,
        external_data=False,
    )
    program.save(str(output_path))
    return output_path


def onnx_session(path, threads: int | None = None):
    onnxruntime = require("onnxruntime", "Running an ONNX export")

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx_parity(model, path, shapes, tolerance: float = 1e-4, seed: int = 0) -> float:
    """The largest |logit difference| between onnxruntime and PyTorch over inputs of `shapes` (batch, size, size);
    ValueError when it exceeds `tolerance`."""
    session = onnx_session(path)
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch, height, width in shapes:
        pixels = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = model(pixel_values=pixels).logits.float().numpy()
        (actual,) = session.run(["logits"], {"pixel_values": pixels.numpy()})
        difference = float(np.abs(actual - expected).max())
        worst = max(worst, difference)
        if difference > tolerance:
            raise ValueError(
                f"The ONNX model's logits differ from PyTorch's by {difference:.2e} at input {tuple(pixels.shape)} "
                f"(tolerance {tolerance:.0e}); do not use this export."
            )
    return worst


def parity_shapes(image_size: int) -> list[tuple[int, int, int]]:
    """Inputs the export is checked on: batch 1 at the model's size, and other batches and resolutions."""
    return [(1, image_size, image_size), (3, image_size, image_size), (2, image_size + 64, image_size + 32)]


def export_saved_model(model_dir, output_path=None, opset: int = 18, tolerance: float = 1e-4) -> tuple[Path, float]:
    """Export a saved model folder (or Hub id) to ONNX (default: `model.onnx` inside the folder) and check it against
    PyTorch with onnxruntime at several batch sizes and resolutions; returns the path and the largest difference."""
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    output_path = Path(output_path) if output_path else Path(model_dir) / ONNX_FILE
    export_onnx(model, output_path, model.config.image_size, opset)
    worst = check_onnx_parity(model, output_path, parity_shapes(model.config.image_size), tolerance)
    return output_path, worst
