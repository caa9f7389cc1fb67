"""Fast float32 CPU inference for Query2Label: an explicit step (`model.optimize_for_inference()`, which the
shipped pipeline applies), allowed by the config (`fast_cpu_inference`) and invisible to training.

- `Query2LabelLinear`: the head's linear layers through oneDNN where the BLAS behind `F.linear` is known to take a
  slow path (`prefers_onednn_linear`: a fixed rule, so that the same weights give the same logits in every process).
- `InferenceCopy`: a copy of the backbone with each eval-mode BatchNorm folded into the convolution before it (one
  pass over the activations fewer per convolution, on any CPU) and its linear layers choosing their kernel like the
  head's.
- `CompiledInference`: the backbone through `torch.compile` with the weights frozen into the graph (convolution +
  BatchNorm folding, prepacked oneDNN weights, fused activations; `compile_cpu_inference`).

Each applies to float32 inference on CPU only (eval mode, no gradients, not while tracing or exporting): training,
GPUs and other dtypes keep PyTorch's kernels. The folded copy and the compiled backbone are rebuilt when any weight
changes (an optimizer step, `load_state_dict`, `.to()`).

Saved next to the weights for `trust_remote_code`: imports only torch and its flat siblings.
"""

import copy
import functools
import logging
import platform
from collections import Counter
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

logger = logging.getLogger(__name__)


REDUCED_PRECISION = (torch.bfloat16, torch.float16)


def reduced_precision_cpu(tensor: torch.Tensor) -> bool:
    """bfloat16 or float16 on CPU: oneDNN runs its convolutions fast only on channels-last tensors (measured 1.8x at
    Q2L-R101-448 on a CPU with AMX, BENCHMARKS.md), which the backbone then feeds it without being asked."""
    return tensor.device.type == "cpu" and tensor.dtype in REDUCED_PRECISION


def native_arithmetic(dtype: torch.dtype) -> bool:
    """Whether this CPU runs `dtype` matrix products faster than float32 ones: with AMX (bfloat16; AMX-FP16 for
    float16), as far as torch can tell, and oneDNN not held below it (`ONEDNN_MAX_CPU_ISA`, e.g. AVX2 standing in for
    older CPUs). Measured (BENCHMARKS.md): AVX512-BF16 alone made an Intel Xeon's bfloat16 convolutions slower than
    its float32 ones (0.155 against 0.110 s for a 256-channel 3x3 layer); AMD's Zen 4 was not measured."""
    import os

    held = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if held not in ("ALL", "DEFAULT") and not held.startswith(("AVX512_CORE_AMX", "AVX10")):
        return False
    check = {"bfloat16": ("_is_amx_tile_supported",), "float16": ("_is_amx_fp16_supported",)}
    return any(getattr(torch.cpu, name, lambda: False)() for name in check.get(str(dtype).removeprefix("torch."), ()))


_WARNED_DTYPES: set = set()


def warn_once_if_emulated(dtype: torch.dtype) -> None:
    """One log line per process when this CPU has no native arithmetic for a reduced-precision dtype."""
    if dtype in _WARNED_DTYPES or native_arithmetic(dtype):
        return
    _WARNED_DTYPES.add(dtype)
    logger.warning(
        "This CPU has no AMX (or oneDNN is held below it): %s inference is likely slower than float32 here (measured "
        "0.85x on an Intel Xeon with AVX512-BF16 alone). Use float32, or an int8 model (scripts/quantize.py).", dtype,
    )  # fmt: skip


def fast_cpu_inference(tensor: torch.Tensor, enabled: bool) -> bool:
    """Float32 inference on CPU, outside tracing and compilation: where the fast CPU kernels apply."""
    return (
        enabled
        and tensor.device.type == "cpu"
        and tensor.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
        and not torch.jit.is_tracing()
    )


# oneDNN's linear is a private torch entry point: where a build or release lacks it, the layers use `F.linear`
_ONEDNN_LINEAR = getattr(getattr(torch._C, "_nn", None), "mkldnn_linear", None)


@functools.cache
def _cpu_vendor() -> str:
    """The CPU's vendor string on x86 Linux (`GenuineIntel`, `AuthenticAMD`, ...); empty where it cannot be read."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# Layers narrower than this on either side run on the BLAS: oneDNN's conversions cost more than they save there.
ONEDNN_MIN_FEATURES = 1024


def prefers_onednn_linear(in_features: int, out_features: int) -> bool:
    """Whether a float32 linear layer of this shape runs on oneDNN rather than the BLAS behind `F.linear`: on x86 CPUs
    that are not Intel's, for layers at least `ONEDNN_MIN_FEATURES` wide on both sides. Measured (BENCHMARKS.md):
    on an AMD EPYC MKL's AVX-512 path for the paper's 2048-wide layers is slow and oneDNN 2.3x faster; on an Intel
    Xeon the two are within 26% of each other for those layers and the BLAS is up to 5x faster for small ones. A fixed
    rule rather than a timing, so that which kernel runs, and so the float32 rounding of the logits, is the same in
    every process on a machine."""
    return (
        _cpu_vendor() not in ("", "GenuineIntel")
        and min(in_features, out_features) >= ONEDNN_MIN_FEATURES
        and torch.backends.mkldnn.is_available()
        and _ONEDNN_LINEAR is not None
    )


class Query2LabelLinear(nn.Linear):
    """`nn.Linear` (same parameters) whose float32 CPU inference runs on oneDNN instead of the BLAS behind
    `torch.nn.functional.linear` once `model.optimize_for_inference()` has chosen it (`prefers_onednn_linear`). The
    result is the same up to float32 rounding; training, other devices and dtypes use `F.linear`."""

    def __init__(self, in_features: int, out_features: int, fast_cpu_inference: bool = True, **kwargs):
        super().__init__(in_features, out_features, **kwargs)
        self.use_onednn = False  # set by `choose_kernel`

    def choose_kernel(self) -> None:
        self.use_onednn = prefers_onednn_linear(self.in_features, self.out_features)

    @classmethod
    def sharing(cls, linear: nn.Linear) -> "Query2LabelLinear":
        """A layer running on `linear`'s own weight and bias tensors, its kernel chosen."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        layer.weight, layer.bias = linear.weight, linear.bias
        layer.choose_kernel()
        return layer

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.use_onednn or not fast_cpu_inference(hidden_states, True) or self.weight.dtype != torch.float32:
            return super().forward(hidden_states)
        flat = hidden_states.reshape(-1, self.in_features).contiguous()  # oneDNN's linear takes 2-D inputs
        output = _ONEDNN_LINEAR(flat.to_mkldnn(), self.weight, self.bias).to_dense()
        return output.view(*hidden_states.shape[:-1], self.out_features)


def _weights_key(module: nn.Module) -> tuple:
    """Changes whenever a weight of `module` does: replaced, updated in place, moved or cast."""
    return tuple(
        (id(tensor), tensor.data_ptr(), 0 if tensor.is_inference() else tensor._version, tensor.device, tensor.dtype)
        for tensor in (*module.parameters(), *module.buffers())
    )  # tensors made in inference mode have no version counter (and cannot change outside it)


def _after_norm(norm: nn.Module) -> nn.Module | None:
    """What remains of an eval-mode BatchNorm once it is folded into the convolution before it: nothing, or the
    activation of a fused norm + activation (timm's `BatchNormAct2d`). None for norms that cannot be folded."""
    kind = type(norm).__name__
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        if norm.training or norm.running_mean is None or norm.running_var is None:  # batch statistics
            return None
    elif kind not in ("FrozenBatchNorm2d", "FrozenBatchNormAct2d") or not hasattr(norm, "running_var"):
        return None
    if kind in ("BatchNorm2d", "FrozenBatchNorm2d", "SyncBatchNorm"):
        return nn.Identity()
    if kind in ("BatchNormAct2d", "FrozenBatchNormAct2d", "SyncBatchNormAct"):
        return nn.Sequential(norm.drop, norm.act)
    return None  # another subclass may do more than normalise


def _output_tensors(outputs) -> list[torch.Tensor]:
    """The tensors of a backbone's output (a tensor, a list of feature maps or a ModelOutput)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [tensor for output in outputs for tensor in _output_tensors(output)]
    return []


def conv_norm_pairs(network: nn.Module, probe: torch.Tensor) -> dict[str, str]:
    """Convolution name -> BatchNorm name, for each eval-mode BatchNorm whose input is a convolution's output that
    nothing else reads. Found from the autograd graph of one forward pass on `probe`, so it holds for any module
    structure (timm, torchvision, transformers backbones), whatever order the modules were registered in."""
    if not any(_after_norm(module) is not None for module in network.modules()):
        return {}
    conv_nodes, norm_inputs, calls = {}, {}, Counter()
    handles = []
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):

            def after_conv(module, inputs, output, name=name):
                calls[name] += 1
                conv_nodes[output.grad_fn] = name

            handles.append(module.register_forward_hook(after_conv))
        elif _after_norm(module) is not None:

            def before_norm(module, inputs, name=name):
                calls[name] += 1
                norm_inputs[name] = inputs[0].grad_fn

            handles.append(module.register_forward_pre_hook(before_norm))
    try:
        with torch.inference_mode(False), torch.enable_grad():  # the callers run in inference mode
            outputs = network(probe.clone().requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()
    # how many operations read each node's result, over the whole graph behind the outputs
    readers, seen = Counter(), set()
    stack = [tensor.grad_fn for tensor in _output_tensors(outputs) if tensor.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for following, _ in node.next_functions:
            if following is not None:
                readers[following] += 1
                stack.append(following)
    pairs = {}
    for norm, node in norm_inputs.items():
        conv = conv_nodes.get(node)
        if conv is not None and readers[node] == 1 and calls[conv] == 1 and calls[norm] == 1:
            pairs[conv] = norm
    return pairs


def fold_batch_norms(network: nn.Module, probe: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of `network` (eval mode) with each BatchNorm that follows a convolution folded into it; the copy shares
    every tensor it does not change. Returns the copy (`network` itself when nothing folds) and the number folded."""
    pairs = conv_norm_pairs(network, probe)
    if not pairs:
        return network, 0
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, whatever mode the caller runs in
        folded = _shared_copy(network)
        modules = dict(folded.named_modules())
        for conv_name, norm_name in pairs.items():
            conv, norm = modules[conv_name], modules[norm_name]
            weight, bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
            )
            conv.weight, conv.bias = weight.requires_grad_(False), bias.requires_grad_(False)
            _replace(folded, norm_name, _after_norm(norm))
    return folded.eval(), len(pairs)


def _shared_copy(network: nn.Module) -> nn.Module:
    """A copy of the modules that shares every parameter and buffer with `network`."""
    shared = {id(tensor): tensor for tensor in (*network.parameters(), *network.buffers())}
    return copy.deepcopy(network, memo=shared)


def _replace(network: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attribute = name.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, attribute, module)


def with_kernel_choosing_linears(network: nn.Module) -> tuple[nn.Module, int]:
    """`network` with each plain `nn.Linear` (e.g. a Swin backbone's) run like the head's `Query2LabelLinear`, on
    the same weights; a copy unless `network` already is one. Returns the network and the number of layers."""
    names = [name for name, module in network.named_modules() if type(module) is nn.Linear]
    for name in names:
        _replace(network, name, Query2LabelLinear.sharing(network.get_submodule(name)))
    return network, len(names)


class InferenceCopy:
    """The backbone network as float32 CPU inference runs it: BatchNorms folded into the convolutions and plain
    linear layers choosing their kernel like the head's. Built on the first call, rebuilt when a weight of the
    original changes, and checked against the original on the probe (where the two disagree, which only a
    network of unusual structure could cause, the original is used)."""

    def __init__(self):
        self.key, self.network, self.folded, self.linears = None, None, 0, 0

    def __deepcopy__(self, memo):  # a copied model (e.g. the EMA weights) builds its own
        return type(self)()

    def __call__(self, network: nn.Module, pixel_values: torch.Tensor) -> nn.Module:
        key = _weights_key(network)
        if key != self.key:
            self.key, self.network, self.folded, self.linears = key, network, 0, 0
            probe = pixel_values[:1]
            candidate, folded = fold_batch_norms(network, probe)
            if not any(type(module) is nn.Linear for module in candidate.modules()):
                linears = 0
            else:
                candidate, linears = with_kernel_choosing_linears(candidate if folded else _shared_copy(network))
            if (folded or linears) and self._agrees(network, candidate, probe):
                self.network, self.folded, self.linears = candidate, folded, linears
        return self.network

    @staticmethod
    def _agrees(network: nn.Module, candidate: nn.Module, probe: torch.Tensor) -> bool:
        with torch.no_grad():
            expected, actual = _output_tensors(network(probe)), _output_tensors(candidate(probe))
        scale = max(float(tensor.abs().max()) for tensor in expected) + 1e-6
        worst = max(float((a - e).abs().max()) for a, e in zip(actual, expected))
        if worst > 1e-4 * scale:
            logger.warning("The backbone's inference copy changed its output (%.2g): the original is used.", worst)
            return False
        return True


class CompiledInference:
    """The backbone network through `torch.compile` with its weights frozen into the graph (Inductor's freezing:
    BatchNorm folded, convolution weights prepacked for oneDNN, activations and residual additions fused). The
    first call of each input shape compiles (seconds to a minute); a weight change recompiles. The head stays
    eager: on CPU its time is in large float32 matrix products, which Inductor hands to MKL, and MKL's path for
    them is slower than oneDNN's on some CPUs (`Query2LabelLinear`)."""

    def __init__(self):
        self.key, self.compiled = None, None

    def __deepcopy__(self, memo):  # a copied model builds its own
        return type(self)()

    def __call__(self, run: Callable, network: nn.Module) -> Callable:
        """`run` (the network or its `forward_features`) compiled, for the weights `network` holds now."""
        key = _weights_key(network)
        if key != self.key:
            self.key = key
            self.compiled = torch.compile(run, options={"freezing": True})
            logger.info("compile_cpu_inference: the backbone compiles on its first call of each input shape.")
        return self.compiled
