"""A saved model's int8 model from `scripts/quantize.py`, answering as the PyTorch model does
(`model(pixel_values=...).logits`, the saved folder's config with its labels and thresholds), so that prediction,
evaluation and the app take it through `load_classifier(folder, dtype="int8")`: `model.int8.onnx` run by ONNX Runtime
(also any float32 ONNX export), or `model.int8.pt2` compiled by PyTorch's Inductor."""

import json
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..extras import require

# where scripts/quantize.py writes the int8 model, inside the model folder, by backend
INT8_ONNX_FILE = "model.int8.onnx"
INT8_PT2_FILE = "model.int8.pt2"
INT8_FILES = {"onnxruntime": INT8_ONNX_FILE, "pytorch": INT8_PT2_FILE}
QUANTIZATION_RECORD = "quantization.json"  # what scripts/quantize.py made last, and how it measured

logger = logging.getLogger(__name__)


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


class CompiledInt8Classifier(nn.Module):
    """A `model.int8.pt2` with the classifier's interface (`model(pixel_values=...).logits`, the folder's config).
    It runs on the CPU, float32 at its ends, compiled by Inductor at the first call of each batch size (oneDNN's int8 kernels take the
    place of the quantize / dequantize pairs only in the compiled graph: uncompiled it would run in float32)."""

    def __init__(self, path, config):
        super().__init__()
        require("torchao", "Running a model.int8.pt2")
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantize / dequantize operators the file uses)

        self.path = Path(path)
        self.program = torch.export.load(str(path)).module()
        # a graph per batch size: oneDNN's int8 kernels for a free batch size ran 1.5x slower at batch 4 without
        # AMX (BENCHMARKS.md); a prediction run meets two sizes, its batch and the last one
        self.compiled = torch.compile(self.program, dynamic=False)
        self.compiled_batch_sizes = set()
        self.config = config
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # where and in what it runs, to callers

    @property
    def dtype(self) -> torch.dtype:  # of its inputs and outputs
        return torch.float32

    def train(self, mode: bool = True) -> "CompiledInt8Classifier":
        if mode:
            raise ValueError(f"{self.path.name} is for inference: train the float32 model.")
        self.training = False  # an exported program has no training mode to switch
        return self

    def forward(self, pixel_values: torch.Tensor, **unused) -> SimpleNamespace:
        from torch._inductor import config as inductor

        if len(pixel_values) not in self.compiled_batch_sizes:
            self.compiled_batch_sizes.add(len(pixel_values))
            logger.warning("Compiling %s for batches of %d: once per batch size and process (about a minute on two cores; Inductor's cache shortens it in later processes).", self.path.name, len(pixel_values))
        # freezing: the pass that lowers int8 to oneDNN. Compiling, Inductor warns about its own tensor copies and
        # looks for CUDA: neither is the user's business
        quiet_cpp_extension = logging.getLogger("torch.utils.cpp_extension")
        level, quiet_cpp_extension.level = quiet_cpp_extension.level, logging.ERROR
        try:
            with torch.no_grad(), inductor.patch(freezing=True), warnings.catch_warnings():
                warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning, r"torch\._inductor\.")
                return SimpleNamespace(logits=self.compiled(pixel_values.float().cpu()))
        finally:
            quiet_cpp_extension.level = level


INT8_CLASSIFIERS = {INT8_ONNX_FILE: OnnxClassifier, INT8_PT2_FILE: CompiledInt8Classifier}


def int8_file(model_path) -> str:
    """The folder's int8 model: the one `scripts/quantize.py` wrote last (its record), else the one there is."""
    folder = Path(model_path)
    record = folder / QUANTIZATION_RECORD
    try:
        named = Path(json.loads(record.read_text()).get("int8_model", "")).name
    except (OSError, ValueError, AttributeError):  # no record, or not one scripts/quantize.py wrote
        named = None
    if named:
        if named in INT8_CLASSIFIERS and (folder / named).is_file():
            return named
    present = [name for name in INT8_CLASSIFIERS if (folder / name).is_file()]
    if not present:
        raise ValueError(f"No int8 model ({' or '.join(INT8_CLASSIFIERS)}) in {model_path}: make one with `python scripts/quantize.py --model {model_path} --dataset_name DATASET`.")
    return present[0]


def load_int8_classifier(model_path: str, file_name: str | None = None):
    """(int8 classifier, image processor) of a saved model folder: `file_name` inside it, by default `int8_file`."""
    from transformers import AutoConfig, AutoImageProcessor

    file_name = file_name or int8_file(model_path)
    path = Path(model_path) / file_name
    if not path.is_file():
        raise ValueError(f"No {file_name} in {model_path}: make it with `python scripts/quantize.py --model {model_path} --dataset_name DATASET`.")
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=True)
    return INT8_CLASSIFIERS.get(file_name, OnnxClassifier)(path, config), processor
