"""A saved model's ONNX export (float32, or int8 from `scripts/quantize.py`) run by ONNX Runtime, answering as the
PyTorch model does (`model(pixel_values=...).logits`, the saved folder's config with its labels and thresholds), so
that prediction, evaluation and the app take it through `load_classifier(folder, dtype="int8")`."""

from pathlib import Path
from types import SimpleNamespace

import torch

from ..extras import require

INT8_ONNX_FILE = "model.int8.onnx"  # where scripts/quantize.py writes the int8 model, inside the model folder


def onnx_session(path, threads: int | None = None):
    onnxruntime = require("onnxruntime", "Running an ONNX model")

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxClassifier(torch.nn.Module):
    """An ONNX model with the classifier's interface. It runs on the CPU, in float32 at its inputs and outputs."""

    def __init__(self, path, config, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = onnx_session(path, threads or torch.get_num_threads())
        self.config = config
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # where and in what it runs, to callers

    @property
    def dtype(self) -> torch.dtype:  # of its inputs and outputs
        return torch.float32

    def forward(self, pixel_values: torch.Tensor, **unused) -> SimpleNamespace:
        (logits,) = self.session.run(["logits"], {"pixel_values": pixel_values.float().cpu().numpy()})
        return SimpleNamespace(logits=torch.from_numpy(logits))


def load_onnx_classifier(model_path: str, file_name: str = INT8_ONNX_FILE):
    """(OnnxClassifier, image processor) of the ONNX model `file_name` inside a saved model folder."""
    from transformers import AutoConfig, AutoImageProcessor

    path = Path(model_path) / file_name
    if not path.is_file():
        raise ValueError(f"No {file_name} in {model_path}: make it with `python scripts/quantize.py --model {model_path} --dataset_name DATASET`.")
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=True)
    return OnnxClassifier(path, config), processor
