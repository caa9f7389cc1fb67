"""ONNX export of a saved Query2Label model (`scripts/export_onnx.py`): `pixel_values` in, `logits` out, with the
batch size and the input resolution free (the sine positional encoding is computed from the feature-map size inside
the graph). The exported file is checked against PyTorch with onnxruntime before it is kept.
"""

import contextlib
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluation.exported_models import onnx_session
from ..extras import require

ONNX_FILE = "model.onnx"
MIN_SIZE, MAX_SIZE = 64, 4096  # the exported graph's input heights and widths


class _LogitsOnly(torch.nn.Module):
    """The classification model as a function of the pixels alone, returning the logits (what ONNX users need)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def _same_padding(size, kernel: int, stride: int, dilation: int):
    """TensorFlow's "SAME" total padding (output size ceil(size / stride)) in integer arithmetic. timm's version
    takes `max(..., 0)` of a float ceiling: exported with a symbolic size, each layer's size becomes a nested
    maximum of the last and torch.export spent minutes reasoning about them. Where the kernel spans at least the
    stride (every TF-"same" layer of the EfficientNets), the padding is never negative and no maximum is needed."""
    padding = ((size + stride - 1) // stride - 1) * stride + (kernel - 1) * dilation + 1 - size
    return padding if (kernel - 1) * dilation + 1 >= stride else torch.sym_max(padding, 0)


def _conv2d_same_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    height, width = hidden_states.shape[-2:]
    pad_h = _same_padding(height, self.weight.shape[-2], self.stride[0], self.dilation[0])
    pad_w = _same_padding(width, self.weight.shape[-1], self.stride[1], self.dilation[1])
    hidden_states = F.pad(hidden_states, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return F.conv2d(hidden_states, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


@contextlib.contextmanager
def _export_friendly_padding(model: torch.nn.Module):
    """timm's TF-"same" convolutions (`Conv2dSame`, in the `tf_*` EfficientNets) compute their padding with the
    integer formula above while exporting; the same numbers, the same graph, found in seconds."""
    from timm.layers.conv2d_same import Conv2dSame

    patched = [module for module in model.modules() if type(module) is Conv2dSame]
    for module in patched:
        module.forward = types.MethodType(_conv2d_same_forward, module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def export_onnx(model, output_path, image_size: int, opset: int = 18) -> Path:
    """Export `model` (eval mode, float32) to `output_path` with dynamic batch, height and width."""
    for module in ("onnx", "onnxscript"):  # what torch's dynamo exporter needs
        require(module, "ONNX export")
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, 3, image_size, image_size)
    # sizes from 64 px: a 1 x 1 feature map (inputs under 33 px at stride 32) would need a graph of its own
    batch = torch.export.Dim("batch", min=1, max=4096)
    height, width = (torch.export.Dim(name, min=MIN_SIZE, max=MAX_SIZE) for name in ("height", "width"))
    with _export_friendly_padding(model):
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

    from ..saved_models import saved_model_errors

    with saved_model_errors(model_dir):
        model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    output_path = Path(output_path) if output_path else Path(model_dir) / ONNX_FILE
    export_onnx(model, output_path, model.config.image_size, opset)
    worst = check_onnx_parity(model, output_path, parity_shapes(model.config.image_size), tolerance)
    return output_path, worst
