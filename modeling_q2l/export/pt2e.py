"""int8 by PyTorch itself (`scripts/quantize.py --backend pytorch`): the model captured with `torch.export`, quantized
by the PT2E flow with torchao's x86 Inductor quantizer (per-channel int8 weights, uint8 activations whose ranges a
histogram of training images' activations chooses) and saved as an ExportedProgram, `model.int8.pt2`, beside the weights.

The file holds a graph, not machine code: the process that runs it compiles it with Inductor at the first batch of
each size (35 to 80 s for Q2L-R101-448 on two cores), and oneDNN's int8 kernels then use what that CPU has (AMX, AVX-512
VNNI, AVX2), so one file serves every x86 CPU. The quantizer takes convolutions and linear layers; normalisation,
softmax, the attention products and the per-label classifier stay in float32.
"""

import copy
import logging
from pathlib import Path

import torch
from torch import nn

from ..extras import require
from .layer_groups import LAYER_GROUPS, unknown_groups_error

logger = logging.getLogger(__name__)


class _Logits(nn.Module):
    """The classifier as a function of pixels alone, returning logits: what `torch.export` captures."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def module_groups(model: nn.Module) -> dict[str, list[str]]:
    """{layer group (`export.layer_groups`): names of the model's modules in it}, as the quantizer sees them
    (inside `_Logits`). `attention_products` is empty: this quantizer leaves the products inside attention in float32."""
    groups = {group: [] for group in LAYER_GROUPS}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        scoped = f"model.{name}"
        if "input_projection" in name:
            groups["input_projection"].append(scoped)
        elif ".backbone." in f".{name}":  # a transformer backbone's linear layers too
            groups["backbone"].append(scoped)
            if isinstance(module, nn.Conv2d) and not groups["first_convolution"]:
                groups["first_convolution"].append(scoped)
            if isinstance(module, nn.Conv2d) and module.groups > 1:
                groups["depthwise_convolutions"].append(scoped)
        elif ".encoder." in name or ".decoder." in name:
            groups["transformer"].append(scoped)
    return groups


def _plain_linear_layers(model: nn.Module) -> nn.Module:
    """A copy of `model` whose linear layers are `nn.Linear` itself: the quantizer finds linear layers by their class,
    and `Query2LabelLinear` (the same parameters and, unoptimised, the same forward) is a subclass."""
    model = copy.deepcopy(model).float().eval()
    for module in model.modules():
        if isinstance(module, nn.Linear) and type(module) is not nn.Linear:
            module.__class__ = nn.Linear
    return model


def quantize_pt2e(model: nn.Module, calibration: list, keep_float=("first_convolution",), reduce_range: bool = True) -> torch.export.ExportedProgram:
    """`model` (a `Query2LabelForMultiLabelClassification` as loaded, not `optimize_for_inference()`d) in int8, its
    activation ranges calibrated on `calibration` (pixel batches, tensors or arrays), the layer groups `keep_float`
    in float32, as an ExportedProgram whose batch size is free. `reduce_range` calibrates activations to 7 bits, which
    CPUs without VNNI (AVX2's int8 products saturate at 16 bits) need to keep the answers (BENCHMARKS.md)."""
    require("torchao", "int8 quantization with --backend pytorch")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    if error := unknown_groups_error(keep_float):
        raise error
    groups = module_groups(model)
    batches = [torch.as_tensor(batch, dtype=torch.float32) for batch in calibration]
    if not batches:
        raise ValueError("int8 calibration needs at least one batch of images (--num_calibration).")
    # batch 2 as the example: torch.export specialises a size-1 dimension, and the batch size must stay free
    example = batches[0][:1].repeat(2, 1, 1, 1)
    batch = {0: torch.export.Dim.AUTO}
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
    excluded = sorted({name for group in keep_float for name in groups[group]})
    for name in excluded:
        quantizer.set_module_name_qconfig(name, None)
    with torch.no_grad():
        captured = torch.export.export(_Logits(_plain_linear_layers(model)), (example,), dynamic_shapes=(batch,)).module()
        observed = prepare_pt2e(captured, quantizer)
        for pixels in batches:
            observed(pixels)
        quantized = convert_pt2e(observed)
        program = torch.export.export(quantized, (example,), dynamic_shapes=(batch,))
    logger.info("Quantized to int8 with PyTorch (%d layers kept in float32: %s).", len(excluded), ", ".join(keep_float) or "none")
    return program


def save_pt2e(program: torch.export.ExportedProgram, path) -> Path:
    torch.export.save(program, str(path))
    return Path(path)
