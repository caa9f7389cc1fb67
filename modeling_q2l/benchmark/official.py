"""The authors' Query2Label model, built from a local copy of their repository (github SlongLiu/query2labels; never
vendored), and ours on the very same weights through our converter.

Their code predates the installed torchvision: `torchvision.models.utils` is gone (their ResNet file imports it) and
`pretrained=True` would download ImageNet weights. Both are bridged while their modules are imported and built:
random weights, then the same tensors in both models. Their YAML config reader (`utils.slconfig`, which needs addict
and yapf) is only used for CvT settings files and is left out. Their CvT and Swin files need einops, scipy and timm.
"""

import argparse
import contextlib
import sys
import types
from pathlib import Path

import torch

from ..zoo.convert_official import config_from_official_args, convert_official_state_dict, load_into_model
from ..model import Query2LabelForMultiLabelClassification


def _check_repository(repo: Path) -> Path:
    lib = Path(repo) / "lib"
    if not (lib / "models" / "query2label.py").is_file():
        raise ValueError(
            f"{repo} is not a copy of the authors' repository: lib/models/query2label.py is missing "
            "(git clone https://github.com/SlongLiu/query2labels)."
        )
    return lib


@contextlib.contextmanager
def _their_imports(lib: Path):
    """Their `lib/` on the path, `torchvision.models.utils` provided, torchvision ResNets built without weights."""
    import torchvision

    shim = types.ModuleType("torchvision.models.utils")
    shim.load_state_dict_from_url = torch.hub.load_state_dict_from_url
    originals = {name: getattr(torchvision.models, name) for name in ("resnet18", "resnet34", "resnet50", "resnet101")}

    def without_weights(constructor):
        def build(*args, pretrained=False, **kwargs):
            return constructor(*args, weights=None, **kwargs)

        return build

    sys.modules.setdefault("torchvision.models.utils", shim)
    config_reader = types.ModuleType("utils.slconfig")
    config_reader.SLConfig = None
    sys.modules.setdefault("utils.slconfig", config_reader)
    sys.path.insert(0, str(lib))
    for name, constructor in originals.items():
        setattr(torchvision.models, name, without_weights(constructor))
    try:
        yield
    finally:
        for name, constructor in originals.items():
            setattr(torchvision.models, name, constructor)
        sys.path.remove(str(lib))


def build_official_model(repo: str | Path, official_args: dict, seed: int = 0) -> torch.nn.Module:
    """The authors' `build_q2l(args)` in eval mode, with random weights drawn from `seed` and BatchNorm made to
    behave like a trained network's (see `calibrate_batch_norms`)."""
    lib = _check_repository(Path(repo))
    with _their_imports(lib):
        from models.query2label import build_q2l

        torch.manual_seed(seed)
        model = build_q2l(argparse.Namespace(**{"pretrained": False, "position_embedding": "sine", **official_args}))
    calibrate_batch_norms(model.eval(), torch.randn(4, 3, official_args["img_size"], official_args["img_size"]))
    return model


@torch.no_grad()
def calibrate_batch_norms(model: torch.nn.Module, pixels: torch.Tensor) -> None:
    """Random weights as a trained network would hold them: each BatchNorm's statistics set to those of its input on
    `pixels` (in forward order), random affine parameters, and small scales on each residual branch's last norm.
    Without it, activations of a deep random ResNet grow block after block and float32 rounding differences between
    two equivalent computations grow with them, hiding what a parity test should see."""
    norms = [module for module in model.modules() if type(module).__name__ in ("FrozenBatchNorm2d", "BatchNorm2d", "BatchNormAct2d")]

    def set_statistics(module, inputs):
        module.running_mean.copy_(inputs[0].mean(dim=(0, 2, 3)))
        module.running_var.copy_(inputs[0].var(dim=(0, 2, 3), unbiased=False))

    generator = torch.Generator().manual_seed(0)
    for name, module in model.named_modules():
        if module in norms:
            last_of_branch = name.endswith("bn3")  # bottleneck blocks: the norm before the residual addition
            module.weight.copy_(torch.empty_like(module.weight).uniform_(0.1, 0.3, generator=generator) if last_of_branch
                                else torch.empty_like(module.weight).uniform_(0.8, 1.2, generator=generator))  # fmt: skip
            module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=generator))
    handles = [module.register_forward_pre_hook(set_statistics) for module in norms]
    try:
        model(pixels)
    finally:
        for handle in handles:
            handle.remove()


def ours_on_their_weights(official: torch.nn.Module, official_args: dict, **config_overrides) -> Query2LabelForMultiLabelClassification:
    """Our model with the official model's weights, through the converter that converts released checkpoints."""
    config = config_from_official_args(official_args)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    model = Query2LabelForMultiLabelClassification(config)
    load_into_model(model, convert_official_state_dict(official.state_dict(), official_args["backbone"], model))
    return model.eval()
