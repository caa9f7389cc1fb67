"""Fast float32 CPU inference for Query2Label, switched by the config and invisible to training.

- `Query2LabelLinear`: the head's linear layers through oneDNN where it is measured faster than the BLAS (which
  takes a slow path on some CPUs; `fast_cpu_inference`).
- `InferenceCopy`: a copy of the backbone with each eval-mode BatchNorm folded into the convolution before it (one
  pass over the activations fewer per convolution, on any CPU) and its linear layers choosing their kernel like the
  head's (`fast_cpu_inference`).
- `CompiledInference`: the backbone through `torch.compile` with the weights frozen into the graph (convolution +
  BatchNorm folding, prepacked oneDNN weights, fused activations; `compile_cpu_inference`).

Each applies to float32 inference on CPU only (eval mode, no gradients, not while tracing or exporting): training,
GPUs and other dtypes keep PyTorch's kernels. The folded copy and the compiled backbone are rebuilt when any weight
changes (an optimizer step, `load_state_dict`, `.to()`).

Saved next to the weights for `trust_remote_code`: imports only torch and its flat siblings.
"""

import copy
import logging
import time
from collections import Counter
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

logger = logging.getLogger(__name__)


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


class Query2LabelLinear(nn.Linear):
    """`nn.Linear` (same parameters) whose float32 CPU inference may run on oneDNN instead of the BLAS behind
    `torch.nn.functional.linear`, where that measurably helps: on the AMD EPYC (AVX-512) development machine MKL's
    AVX-512 path for the head's 2048-wide layers is slow and oneDNN is 2.3x faster, while with MKL's AVX2 path the
    two are about even. Which kernel runs is measured once per layer shape and thread count (`onednn_is_faster`).
    The result is the same up to float32 rounding. `config.fast_cpu_inference=False` turns it off."""

    def __init__(self, in_features: int, out_features: int, fast_cpu_inference: bool = True, **kwargs):
        super().__init__(in_features, out_features, **kwargs)
        self.fast_cpu_inference = fast_cpu_inference and torch.backends.mkldnn.is_available() and _ONEDNN_LINEAR is not None

    @classmethod
    def sharing(cls, linear: nn.Linear) -> "Query2LabelLinear":
        """A layer running on `linear`'s own weight and bias tensors."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        layer.weight, layer.bias = linear.weight, linear.bias
        return layer

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not fast_cpu_inference(hidden_states, self.fast_cpu_inference) or self.weight.dtype != torch.float32:
            return super().forward(hidden_states)
        flat = hidden_states.reshape(-1, self.in_features).contiguous()  # oneDNN's linear takes 2-D inputs
        if not onednn_is_faster(self.weight, self.bias, flat.shape[0]):
            return super().forward(hidden_states)
        output = _ONEDNN_LINEAR(flat.to_mkldnn(), self.weight, self.bias).to_dense()
        return output.view(*hidden_states.shape[:-1], self.out_features)


_KERNEL_CHOICES: dict[tuple, bool] = {}


def _seconds(function, repeats: int = 3) -> float:
    function()  # warm-up: oneDNN builds its primitive on the first call
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def onednn_is_faster(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> bool:
    """Whether oneDNN's linear beats `F.linear` by at least 10% for this weight shape, at about `rows` input rows
    (rounded up to a power of two) and torch's thread count: timed once per process on random inputs (tens of
    milliseconds for the paper's 2048 x 8192 layers), then remembered."""
    rows = 1 << max(rows - 1, 0).bit_length()
    key = (tuple(weight.shape), bias is not None, rows, torch.get_num_threads())
    if key not in _KERNEL_CHOICES:
        with torch.inference_mode():
            inputs = torch.randn(rows, weight.shape[1])
            blas = _seconds(lambda: nn.functional.linear(inputs, weight, bias))
            onednn = _seconds(lambda: _ONEDNN_LINEAR(inputs.to_mkldnn(), weight, bias).to_dense())
        _KERNEL_CHOICES[key] = onednn < 0.9 * blas
        logger.debug("Linear %s at %d rows: BLAS %.4f s, oneDNN %.4f s", tuple(weight.shape), rows, blas, onednn)
    return _KERNEL_CHOICES[key]


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
