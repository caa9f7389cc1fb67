"""Fast float32 CPU inference for Query2Label, switched by the config and invisible to training.

- `Query2LabelLinear`: the head's linear layers through oneDNN (a BLAS slow path on some CPUs; `fast_cpu_inference`).
- `BatchNormFolding`: a copy of the backbone with each eval-mode BatchNorm folded into the convolution before it
  (one pass over the activations fewer per convolution, on any CPU; `fast_cpu_inference`).
- `CompiledInference`: the backbone through `torch.compile` with the weights frozen into the graph (convolution +
  BatchNorm folding, prepacked oneDNN weights, fused activations; `compile_cpu_inference`).

Each applies to float32 inference on CPU only (eval mode, no gradients, not while tracing or exporting): training,
GPUs and other dtypes keep PyTorch's kernels. The folded copy and the compiled backbone are rebuilt when any weight
changes (an optimizer step, `load_state_dict`, `.to()`).

Saved next to the weights for `trust_remote_code`: imports only torch and its flat siblings.
"""

import copy
import logging
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
    """`nn.Linear` (same parameters) whose float32 CPU inference runs on oneDNN instead of the BLAS behind
    `torch.nn.functional.linear`. On the AMD EPYC (Zen 3/4, AVX-512) development machine MKL takes a slow path for
    the head's 2048-wide layers and oneDNN is 2.3x faster; on a Zen 1 EPYC the two were about even. The result is the
    same up to float32 rounding. `config.fast_cpu_inference=False` turns it off."""

    def __init__(self, in_features: int, out_features: int, fast_cpu_inference: bool = True):
        super().__init__(in_features, out_features)
        self.fast_cpu_inference = fast_cpu_inference and torch.backends.mkldnn.is_available() and _ONEDNN_LINEAR is not None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not fast_cpu_inference(hidden_states, self.fast_cpu_inference) or self.weight.dtype != torch.float32:
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
    every tensor it does not change. Returns the copy and the number of folded norms."""
    pairs = conv_norm_pairs(network, probe)
    if not pairs:
        return network, 0
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, whatever mode the caller runs in
        return _folded_copy(network, pairs), len(pairs)


def _folded_copy(network: nn.Module, pairs: dict[str, str]) -> nn.Module:
    shared = {id(tensor): tensor for tensor in (*network.parameters(), *network.buffers())}
    folded = copy.deepcopy(network, memo=shared)
    modules = dict(folded.named_modules())
    for conv_name, norm_name in pairs.items():
        conv, norm = modules[conv_name], modules[norm_name]
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
        )
        conv.weight, conv.bias = weight.requires_grad_(False), bias.requires_grad_(False)
        parent, _, attribute = norm_name.rpartition(".")
        setattr(folded.get_submodule(parent) if parent else folded, attribute, _after_norm(norm))
    return folded.eval()


class BatchNormFolding:
    """The backbone network with its BatchNorms folded into the convolutions, for float32 CPU inference: built on
    the first call, rebuilt when a weight of the original changes, checked against the original on the probe (where
    the two disagree, which only a network with unusual structure could cause, the original is used)."""

    def __init__(self):
        self.key, self.network, self.folded = None, None, 0

    def __deepcopy__(self, memo):  # a copied model (e.g. the EMA weights) builds its own
        return type(self)()

    def __call__(self, network: nn.Module, pixel_values: torch.Tensor) -> nn.Module:
        key = _weights_key(network)
        if key != self.key:
            self.key, self.network, self.folded = key, network, 0
            probe = pixel_values[:1]
            folded, count = fold_batch_norms(network, probe)
            if count and self._agrees(network, folded, probe):
                self.network, self.folded = folded, count
        return self.network

    @staticmethod
    def _agrees(network: nn.Module, folded: nn.Module, probe: torch.Tensor) -> bool:
        with torch.no_grad():
            expected, actual = _output_tensors(network(probe)), _output_tensors(folded(probe))
        scale = max(float(tensor.abs().max()) for tensor in expected) + 1e-6
        worst = max(float((a - e).abs().max()) for a, e in zip(actual, expected))
        if worst > 1e-4 * scale:
            logger.warning("Folding BatchNorm into convolutions changed the backbone's output (%.2g): not used.", worst)
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
