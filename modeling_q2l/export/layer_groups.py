"""The layer groups int8 quantization can keep in float32 (`scripts/quantize.py --keep_float`), the same names for
both backends (`export.quantize` for ONNX Runtime, `export.pt2e` for PyTorch). Only the arithmetic-heavy operators
(convolutions and matrix products) are quantized; normalisation, softmax, activations and the per-label classifier
stay in float32. Which of the quantized groups must stay in float32 to keep the answers is the caller's choice,
measured, not guessed (`BENCHMARKS.md`):

- `first_convolution`: the backbone's first convolution (it sees the raw pixels);
- `depthwise_convolutions`: the backbone's depthwise (grouped) convolutions, whose per-channel ranges differ most;
- `backbone`: every convolution and product of the backbone (the head alone is quantized);
- `input_projection`: the 1x1 convolution from the backbone's channels to the transformer's;
- `attention_products`: the products inside attention (queries x keys, weights x values; PyTorch's quantizer always
  keeps them);
- `transformer`: every projection and feed-forward layer of the encoder and decoder.
"""

LAYER_GROUPS = ("first_convolution", "depthwise_convolutions", "backbone", "input_projection", "attention_products", "transformer")
# kept in float32 unless asked otherwise: what the main job's model needs to keep mAP within 0.6 points (BENCHMARKS.md)
DEFAULT_KEEP_FLOAT = ("first_convolution", "depthwise_convolutions")


def unknown_groups_error(keep_float) -> ValueError | None:
    unknown = sorted(set(keep_float) - set(LAYER_GROUPS))
    return ValueError(f"--keep_float: unknown layer groups {unknown}; the groups are {', '.join(LAYER_GROUPS)} (or none).") if unknown else None
