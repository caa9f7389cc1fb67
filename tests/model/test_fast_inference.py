"""The fast CPU inference paths (oneDNN head, BatchNorm folded into the convolutions, the compiled backbone) are an
explicit step (`optimize_for_inference`), give the default kernels' logits, choose kernels by a fixed rule (the same
logits in every process), follow weight changes, and never touch training."""

import copy
from unittest import mock

import pytest
import torch
from helpers import tiny_config, transformers_config
from torch import nn

from modeling_q2l import Query2LabelForMultiLabelClassification
from modeling_q2l.model import inference_query2label
from modeling_q2l.model.inference_query2label import conv_norm_pairs, fold_batch_norms

NORMS = (nn.modules.batchnorm._BatchNorm,)


def trained_looking_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm statistics and affine parameters away from their initial values, so folding them changes the
    convolutions' weights (at the initial values folding is almost the identity and would hide mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, NORMS) or type(module).__name__ == "FrozenBatchNorm2d":
                for name, low, high in (("running_mean", -0.5, 0.5), ("running_var", 0.5, 2.0), ("weight", 0.5, 1.5), ("bias", -0.3, 0.3)):
                    tensor = getattr(module, name)
                    tensor.copy_(torch.empty(tensor.shape).uniform_(low, high, generator=generator))
    return model


def first_conv(model) -> nn.Conv2d:
    return next(m for m in model.model.backbone.model.modules() if isinstance(m, nn.Conv2d))


def pair_of_models(config_factory, **overrides):
    """The same weights prepared for inference (`optimize_for_inference`) and with the fast CPU paths off."""
    torch.manual_seed(0)
    fast = trained_looking_norms(Query2LabelForMultiLabelClassification(config_factory(**overrides)).eval())
    plain = Query2LabelForMultiLabelClassification(config_factory(**{**overrides, "fast_cpu_inference": False})).eval()
    plain.load_state_dict(fast.state_dict())
    return fast.optimize_for_inference(), plain.optimize_for_inference()


def test_fast_cpu_inference_gives_the_default_kernels_logits(monkeypatch):
    monkeypatch.setattr(inference_query2label, "prefers_onednn_linear", lambda *args: True)
    model, plain = pair_of_models(tiny_config, num_labels=12)
    assert model.model.backbone.channels_last_input and not plain.model.backbone.channels_last_input
    pixels = torch.randn(3, 3, 64, 64)
    onednn_linear = inference_query2label._ONEDNN_LINEAR
    with mock.patch.object(inference_query2label, "_ONEDNN_LINEAR", wraps=onednn_linear) as onednn:
        with torch.inference_mode():
            fast_logits = model(pixel_values=pixels).logits
        calls_in_inference = onednn.call_count
        plain_logits = plain(pixel_values=pixels).logits.detach()
        model(pixel_values=pixels).logits.sum().backward()  # with gradients: PyTorch's own kernels
        assert onednn.call_count == calls_in_inference
    assert calls_in_inference == 3 * 4 + 3 * 2  # q, k, v, o of 1 encoder + 2 decoder cross-attentions; 3 feed-forwards
    torch.testing.assert_close(fast_logits, plain_logits, atol=1e-5, rtol=1e-5)


def test_the_kernel_is_chosen_by_a_fixed_rule_and_only_by_the_explicit_step(monkeypatch):
    """oneDNN for layers at least 1024 wide on CPUs that are not Intel's (MKL's slow path there), the BLAS elsewhere;
    chosen by `optimize_for_inference`, never by a timing, and nothing changes until it is called."""
    rule = inference_query2label.prefers_onednn_linear
    for vendor, expected in (("AuthenticAMD", True), ("GenuineIntel", False), ("", False)):
        monkeypatch.setattr(inference_query2label, "_cpu_vendor", lambda vendor=vendor: vendor)
        assert rule(2048, 8192) is expected and rule(8192, 2048) is expected
        assert not rule(256, 1024) and not rule(1023, 8192)
    assert not hasattr(inference_query2label, "time")  # no timing anywhere in the shipped inference file

    monkeypatch.setattr(inference_query2label, "_cpu_vendor", lambda: "AuthenticAMD")
    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(tiny_config(hidden_size=1024, intermediate_size=2048, num_attention_heads=4)).eval()
    plain = copy.deepcopy(model)
    pixels = torch.randn(2, 3, 64, 64)
    layers = [module for module in model.modules() if isinstance(module, inference_query2label.Query2LabelLinear)]
    with mock.patch.object(inference_query2label, "_ONEDNN_LINEAR", wraps=inference_query2label._ONEDNN_LINEAR) as onednn:
        with torch.inference_mode():
            before = model(pixel_values=pixels).logits
        assert onednn.call_count == 0 and model.model.backbone.inference_copy.network is None  # PyTorch's kernels
        assert not any(layer.use_onednn for layer in layers)
        model.optimize_for_inference()
        assert all(layer.use_onednn for layer in layers) and model.model.backbone.inference_copy.network is not None
        with torch.inference_mode():
            after = model(pixel_values=pixels).logits
        assert onednn.call_count == len(layers) and onednn.call_count > 5
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(before, plain(pixel_values=pixels).logits.detach(), rtol=0, atol=0)


LOGITS_IN_A_PROCESS = """
import sys, torch
from transformers import AutoModelForImageClassification
torch.set_num_threads(2)
model = AutoModelForImageClassification.from_pretrained(sys.argv[1], trust_remote_code=True).optimize_for_inference()
pixels = torch.randn(3, 3, 80, 72, generator=torch.Generator().manual_seed(7))
with torch.inference_mode():
    print(model(pixel_values=pixels).logits.numpy().tobytes().hex())
"""


@pytest.mark.slow
def test_the_same_image_gives_bit_identical_logits_in_two_processes(tmp_path):
    import subprocess
    import sys

    torch.manual_seed(0)
    model = trained_looking_norms(Query2LabelForMultiLabelClassification(tiny_config(num_labels=12, backbone="test_efficientnet")))
    model.save_pretrained(tmp_path)
    runs = [
        subprocess.run([sys.executable, "-c", LOGITS_IN_A_PROCESS, str(tmp_path)], capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-2000:]
    first, second = (run.stdout.strip().splitlines()[-1] for run in runs)
    assert first == second and len(first) == 3 * 12 * 4 * 2  # 36 float32 logits, as hex


@pytest.mark.parametrize(
    "factory, overrides",
    [
        (tiny_config, {}),  # timm ResNet: every BatchNorm2d after its convolution (downsample included)
        (tiny_config, {"freeze_backbone_batch_norm": True}),  # frozen norms (torchvision's FrozenBatchNorm2d)
        (tiny_config, {"backbone": "test_efficientnet"}),  # timm's BatchNormAct2d: the activation stays
        (transformers_config, {}),  # transformers ResNet
    ],
    ids=["timm-resnet", "frozen-norms", "efficientnet-norm-act", "transformers-resnet"],
)
def test_every_batch_norm_is_folded_and_the_logits_stay(factory, overrides):
    model, plain = pair_of_models(factory, **overrides)
    norms = [m for m in model.model.backbone.model.modules() if "BatchNorm" in type(m).__name__]
    pixels = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        fast_logits = model(pixel_values=pixels).logits
        plain_logits = plain(pixel_values=pixels).logits
    folding = model.model.backbone.inference_copy
    assert folding.folded == len(norms) > 5
    left = [m for m in folding.network.modules() if "BatchNorm" in type(m).__name__]
    assert left == []
    assert any(isinstance(m, nn.SiLU) for m in folding.network.modules()) == (overrides.get("backbone") == "test_efficientnet")
    assert (fast_logits - plain_logits).abs().max() < 1e-4 and plain_logits.std() > 0.01
    # the folded copy shares every tensor it does not change: only the convolutions' weights are new
    originals = {id(t) for t in model.model.backbone.model.parameters()}
    new = [name for name, t in folding.network.named_parameters() if id(t) not in originals]
    assert new and all(name.rpartition(".")[0] in dict(folding.network.named_modules()) for name in new)
    assert all(isinstance(folding.network.get_submodule(name.rpartition(".")[0]), nn.Conv2d) for name in new)


def test_the_folded_copy_follows_weight_changes_and_training_never_sees_it():
    model, plain = pair_of_models(tiny_config)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        model(pixel_values=pixels)
    first_copy = model.model.backbone.inference_copy.network

    model.train()  # batch statistics and gradients: PyTorch's kernels on the original modules
    torch.manual_seed(1)
    plain.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(pixel_values=pixels, labels=torch.ones(2, 5)).loss
    loss.backward()
    optimizer.step()
    torch.manual_seed(1)
    plain_loss = plain(pixel_values=pixels, labels=torch.ones(2, 5)).loss
    torch.testing.assert_close(loss, plain_loss)  # same dropout draws, same batch statistics

    model.eval()
    plain.load_state_dict(model.state_dict())
    plain.eval()
    with torch.inference_mode():
        fast_logits = model(pixel_values=pixels).logits
        plain_logits = plain(pixel_values=pixels).logits
    assert model.model.backbone.inference_copy.network is not first_copy  # rebuilt after the step
    assert (fast_logits - plain_logits).abs().max() < 1e-4

    with torch.no_grad():  # an in-place change to one running statistic is seen too
        model.model.backbone.model.bn1.running_mean.add_(1.0)
        plain.model.backbone.model.bn1.running_mean.add_(1.0)
        assert (model(pixel_values=pixels).logits - plain(pixel_values=pixels).logits).abs().max() < 1e-4
    assert copy.deepcopy(model).model.backbone.inference_copy.network is None  # a copy builds its own


class ConvReadTwice(nn.Module):
    """A convolution whose output feeds a BatchNorm and a shortcut: folding the norm would change the shortcut."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 1)
        self.norm2 = nn.BatchNorm2d(4)

    def forward(self, pixels):
        hidden = self.conv(pixels)
        hidden = self.norm(hidden) + hidden
        return self.norm2(self.conv2(hidden))


def test_a_convolution_read_elsewhere_is_not_folded():
    network = trained_looking_norms(ConvReadTwice()).eval()
    pixels = torch.randn(2, 3, 16, 16)
    assert conv_norm_pairs(network, pixels) == {"conv2": "norm2"}
    folded, count = fold_batch_norms(network, pixels)
    assert count == 1 and isinstance(folded.norm, nn.BatchNorm2d) and isinstance(folded.norm2, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(folded(pixels), network(pixels), atol=1e-5, rtol=1e-5)
    network.norm2.train()  # a norm in training mode uses batch statistics: never folded
    assert conv_norm_pairs(network, pixels) == {}


def test_linear_layers_of_a_backbone_choose_their_kernel_on_the_same_weights(monkeypatch):
    """A backbone without BatchNorm (ConvNeXt: LayerNorm and linear layers, as in Swin) gets a copy whose linear
    layers run like the head's, sharing the original weights."""
    monkeypatch.setattr(inference_query2label, "prefers_onednn_linear", lambda *args: True)
    model, plain = pair_of_models(tiny_config, backbone="test_convnext")
    original = model.model.backbone.model
    linears = [name for name, module in original.named_modules() if type(module) is nn.Linear]
    pixels = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        logits = model(pixel_values=pixels).logits
        expected = plain(pixel_values=pixels).logits
    copy_ = model.model.backbone.inference_copy
    assert copy_.folded == 0 and copy_.linears == len(linears) > 3
    for name in linears:
        swapped = copy_.network.get_submodule(name)
        assert type(swapped) is inference_query2label.Query2LabelLinear
        assert swapped.weight is original.get_submodule(name).weight
    assert all(type(original.get_submodule(name)) is nn.Linear for name in linears)  # the original is untouched
    assert (logits - expected).abs().max() < 1e-4


def test_a_backbone_with_nothing_to_change_runs_as_it_is():
    model, _ = pair_of_models(transformers_config)
    network = model.model.backbone.model
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.train()  # batch statistics: nothing to fold (and no linear layers)
    inference_copy = inference_query2label.InferenceCopy()
    assert inference_copy(network, torch.randn(1, 3, 64, 64)) is network
    assert inference_copy.folded == inference_copy.linears == 0


@pytest.mark.slow
def test_the_compiled_backbone_gives_the_eager_logits_and_recompiles_after_a_weight_change():
    model, plain = pair_of_models(tiny_config, compile_cpu_inference=True)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        compiled_logits = model(pixel_values=pixels).logits
        first = model.model.backbone.compiled_inference.compiled
        assert first is not None and (compiled_logits - plain(pixel_values=pixels).logits).abs().max() < 1e-4
        with torch.no_grad():
            for module in (model, plain):
                first_conv(module).weight.mul_(1.5)
        assert (model(pixel_values=pixels).logits - plain(pixel_values=pixels).logits).abs().max() < 1e-4
        assert model.model.backbone.compiled_inference.compiled is not first
    # gradients (and training) go through the original network
    model(pixel_values=pixels).logits.sum().backward()
    assert first_conv(model).weight.grad is not None


def test_the_compile_switch_is_one_from_pretrained_argument(tmp_path):
    Query2LabelForMultiLabelClassification(tiny_config()).save_pretrained(tmp_path)
    loaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path, compile_cpu_inference=True)
    assert loaded.config.compile_cpu_inference and loaded.model.backbone.compiled_inference is not None
    default = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path)
    assert not default.config.compile_cpu_inference and default.model.backbone.compiled_inference is None
