"""int8 inference for CPUs without native bfloat16 (`scripts/quantize.py`): the saved model quantized statically
(per-channel int8 weights, uint8 activations, calibrated on images of the training split), written next to the
weights and measured against float32 on the evaluation split, by one of two backends:

- `onnxruntime` (the default): the model's ONNX export quantized by ONNX Runtime (QDQ), `model.int8.onnx`; loads in
  a moment, runs wherever ONNX Runtime does;
- `pytorch`: PyTorch's PT2E flow (`export.pt2e`), `model.int8.pt2`; compiled by Inductor in the process that runs
  it (about a minute at the first batch of each size), then faster on CPUs with VNNI or AMX and the one int8 path measured on
  AVX2-only CPUs (BENCHMARKS.md).

The layer groups that can stay in float32 are `export.layer_groups`.
"""

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..data.splits import DatasetSpec, SplitPreparer, load_training_splits
from ..data.transforms import MultiLabelImageDataset, collate_multilabel
from ..evaluation.exported_models import INT8_FILES, QUANTIZATION_RECORD
from ..evaluation.precision import compare_precisions, precision_table
from ..extras import require
from .layer_groups import LAYER_GROUPS, unknown_groups_error
from .onnx import ONNX_FILE, export_saved_model

logger = logging.getLogger(__name__)

BACKENDS = tuple(INT8_FILES)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
QUANTIZED_OPERATORS = ["Conv", "MatMul", "Gemm"]


def _scope(node) -> str:
    """The PyTorch module path the exporter recorded for an ONNX node."""
    return next((entry.value for entry in node.metadata_props if entry.key == "namespace"), node.name)


def layer_groups(onnx_path) -> dict[str, list[str]]:
    """{group: names of the quantizable nodes in it} of an exported Query2Label graph."""
    onnx = require("onnx", "int8 quantization")

    nodes = [node for node in onnx.load(str(onnx_path), load_external_data=False).graph.node if node.op_type in QUANTIZED_OPERATORS]
    groups = {group: [] for group in LAYER_GROUPS}
    convolutions = [node for node in nodes if node.op_type == "Conv"]
    if convolutions:
        groups["first_convolution"].append(convolutions[0].name)
    for node in nodes:
        scope = _scope(node)
        if "input_projection" in scope:
            groups["input_projection"].append(node.name)
        elif "backbone" in scope:  # a transformer backbone's products too
            groups["backbone"].append(node.name)
            if node.op_type == "Conv" and any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute):
                groups["depthwise_convolutions"].append(node.name)
        elif "scaled_dot_product_attention" in scope or "eager_attention" in scope:
            groups["attention_products"].append(node.name)
        elif ".encoder." in scope or ".decoder." in scope:
            groups["transformer"].append(node.name)
    return groups


def quantize_onnx(onnx_path, output_path, calibration: list[np.ndarray], keep_float=("first_convolution",), method: str = "minmax") -> Path:
    """Quantize the float32 ONNX model at `onnx_path` into `output_path`, calibrating the activations' ranges on
    `calibration` (pixel batches as the image processor makes them) by `method` (minmax, percentile or entropy:
    ONNX Runtime's calibrators); the layer groups `keep_float` stay float32."""
    require("onnxruntime", "int8 quantization")
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    if error := unknown_groups_error(keep_float):
        raise error
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"--calibration_method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}.")
    groups = layer_groups(onnx_path)
    excluded = [name for group in keep_float for name in groups[group]]

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"pixel_values": batch}

    output_path = Path(output_path)
    quantize_static(
        str(onnx_path), str(output_path), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPERATORS,
        nodes_to_exclude=sorted(set(excluded)), calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[method],
    )  # fmt: skip
    logger.info("Quantized %s to int8 (%d layers kept in float32: %s).", onnx_path, len(excluded), ", ".join(keep_float) or "none")
    return output_path


def calibration_batches(model_path, data_args: DatasetSpec, count: int, batch_size: int = 8, seed: int = 0) -> list[np.ndarray]:
    """`count` training images, drawn at random, as the model's image processor prepares them, in batches of one size
    (ONNX Runtime's histogram calibrators stack them; a last, smaller batch is left out)."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=True)
    train, _ = load_training_splits(data_args)
    chosen = train.shuffle(seed=seed).select(range(min(count, len(train))))
    preparer = SplitPreparer.for_dataset(data_args, chosen)
    dataset = MultiLabelImageDataset(preparer.prepare(chosen, split_name="calibration"), preparer.image_column, processor)
    batch_size = min(batch_size, len(dataset))
    return [
        collate_multilabel([dataset[index] for index in range(start, start + batch_size)])["pixel_values"].numpy()
        for start in range(0, len(dataset) - batch_size + 1, batch_size)
    ]


def quantize_saved_model(args, data_args: DatasetSpec) -> dict:
    """`scripts/quantize.py`: the folder's model quantized by `args.backend` with calibration on
    `args.num_calibration` training images into the backend's int8 file beside the weights (`INT8_FILES`), then
    float32 and int8 compared on the evaluation split (and `--extra_eval_split_names`): the result is written to
    `quantization.json` (which also tells `--dtype int8` which file to load) and returned."""
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a saved model folder (no config.json): quantize a folder of scripts/train.py or the converter.")
    if args.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {args.backend!r}.")
    keep_float = [group for group in args.keep_float if group != "none"]
    if error := unknown_groups_error(keep_float):
        raise error
    # before any work: the backend's package
    require(*{"pytorch": ("torchao", "int8 quantization with --backend pytorch"), "onnxruntime": ("onnxruntime", "int8 quantization")}[args.backend])
    calibration = calibration_batches(folder, data_args, args.num_calibration)
    output = Path(args.output) if args.output else folder / INT8_FILES[args.backend]
    output.parent.mkdir(parents=True, exist_ok=True)
    # the int8 file whole or not at all if the process is killed; scratch files a backend writes beside it go too
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        written = Path(scratch) / output.name
        if args.backend == "pytorch":
            _quantize_with_pytorch(folder, written, calibration, keep_float, args.reduce_range)
        else:
            _quantize_with_onnxruntime(folder, written, calibration, keep_float, args.calibration_method)
        written.replace(output)
    result = {
        "int8_model": str(output), "backend": args.backend, "calibration_images": sum(len(batch) for batch in calibration),
        "keep_float": keep_float, "calibration_method": args.calibration_method if args.backend == "onnxruntime" else "histogram",
        "reduce_range": args.reduce_range if args.backend == "pytorch" else None, "measured": {},
    }  # fmt: skip
    # recorded before the evaluation too: `--dtype int8`, which the evaluation loads with, reads which file is new here
    (output.parent / QUANTIZATION_RECORD).write_text(json.dumps(result, indent=2))
    if args.evaluate:
        if output.parent.resolve() != folder.resolve() or output.name != INT8_FILES[args.backend]:
            raise ValueError(f"--evaluate measures the folder's own {INT8_FILES[args.backend]}: drop --output, or pass --evaluate false.")
        splits = [data_args.eval_split_name, *(data_args.extra_eval_split_names or [])]
        result["measured"] = compare_precisions(str(folder), data_args, splits, ["float32", "int8"])
        print(precision_table(result["measured"]))
        (output.parent / QUANTIZATION_RECORD).write_text(json.dumps(result, indent=2))
    return result


def _quantize_with_onnxruntime(folder: Path, output: Path, calibration, keep_float, method: str) -> Path:
    float_onnx = folder / ONNX_FILE
    if not float_onnx.is_file():
        logger.info("Exporting %s to ONNX first (%s).", folder, float_onnx)
        export_saved_model(folder, float_onnx)
    return quantize_onnx(float_onnx, output, calibration, keep_float, method)


def _quantize_with_pytorch(folder: Path, output: Path, calibration, keep_float, reduce_range: bool) -> Path:
    from ..model import Query2LabelForMultiLabelClassification
    from .pt2e import quantize_pt2e, save_pt2e

    # the package's model code, not the folder's copy: an older copy may not export with a free batch size
    model = Query2LabelForMultiLabelClassification.from_pretrained(str(folder)).eval()
    return save_pt2e(quantize_pt2e(model, calibration, keep_float, reduce_range), output)
