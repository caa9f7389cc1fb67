"""The backbone families of the official Query2Label releases, each mapped onto a maintained implementation.

| official names | implementation | conversion |
| --- | --- | --- |
| resnet18/34/50/101 | timm `resnet*` (torchvision names), frozen BatchNorm | identity |
| tresnetl, tresnetxl, tresnetl_v2 | timm `tresnet_l`, `tresnet_xl`, `tresnet_v2_l` | timm's `tresnet.checkpoint_filter_fn` |
| swin_{B,L}_{224,384}_22k | timm `swin_{base,large}_patch4_window{7,12}_{224,384}`, any input size | timm's `swin_transformer.checkpoint_filter_fn` |
| CvT_w24 | transformers `CvtModel` + a final LayerNorm | the rename table below |

Each family turns the official backbone tensors (keys after `backbone.0.`) into keys of `Query2LabelBackbone`
(`model.*`, `output_norm.*`). Buffers the implementation recomputes (Swin's relative position index and attention
masks) are reported separately so the converter can check their shapes instead of dropping them silently.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..data.labels import COCO_LABELS
from ..model.configuration_query2label import Query2LabelConfig


@dataclass(frozen=True)
class OfficialBackboneFamily:
    """How one family of official backbones maps onto a maintained implementation.

    Args:
        names: the official `backbone` names of the family.
        config_kwargs: (official name, image size) -> `Query2LabelConfig` arguments for the backbone.
        convert: (official backbone tensors, our `Query2LabelBackbone`) -> (tensors to load, recomputed buffers),
            both keyed relative to `Query2LabelBackbone`.
        image_mean, image_std: the input normalisation the official model was trained with.
    """

    names: tuple[str, ...]
    config_kwargs: Callable[[str, int], dict]
    convert: Callable[[dict, nn.Module], tuple[dict, dict]]
    image_mean: tuple = tuple(IMAGENET_DEFAULT_MEAN)
    image_std: tuple = tuple(IMAGENET_DEFAULT_STD)


def _strip(key: str, prefix: str) -> str:
    if not key.startswith(prefix):
        raise KeyError(key)
    return key[len(prefix) :]


# -- ResNet -------------------------------------------------------------------------------------------------------


def _resnet_config(name: str, image_size: int) -> dict:
    # Official ResNets are torchvision's with frozen BatchNorm; conv1/bn1/layer1 are not trained.
    return {"backbone": name, "freeze_backbone_batch_norm": True, "frozen_backbone_modules": ["conv1", "bn1", "layer1"]}


def _resnet_convert(tensors: dict, backbone: nn.Module) -> tuple[dict, dict]:
    return {f"model.{_strip(key, 'body.')}": value for key, value in tensors.items()}, {}


RESNET = OfficialBackboneFamily(("resnet18", "resnet34", "resnet50", "resnet101"), _resnet_config, _resnet_convert)


# -- TResNet ------------------------------------------------------------------------------------------------------

_TRESNET_TIMM_NAMES = {"tresnetl": "tresnet_l", "tresnetxl": "tresnet_xl", "tresnetl_v2": "tresnet_v2_l"}


def _tresnet_config(name: str, image_size: int) -> dict:
    return {"backbone": _TRESNET_TIMM_NAMES[name], "backbone_kwargs": {"features_only": False}}


def _tresnet_convert(tensors: dict, backbone: nn.Module) -> tuple[dict, dict]:
    from timm.models.tresnet import checkpoint_filter_fn

    # Official keys are `body.body.*` (the detector wrapper's `body`, then TResNet's own `body`).
    inner = {_strip(key, "body."): value for key, value in tensors.items()}
    return {f"model.{key}": value for key, value in checkpoint_filter_fn(inner, backbone.model).items()}, {}


TRESNET = OfficialBackboneFamily(
    tuple(_TRESNET_TIMM_NAMES), _tresnet_config, _tresnet_convert, image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0)
)


# -- Swin ---------------------------------------------------------------------------------------------------------

_SWIN_TIMM_NAMES = {
    "swin_B_224_22k": "swin_base_patch4_window7_224",
    "swin_B_384_22k": "swin_base_patch4_window12_384",
    "swin_L_224_22k": "swin_large_patch4_window7_224",
    "swin_L_384_22k": "swin_large_patch4_window12_384",
}
_SWIN_RECOMPUTED = ("relative_position_index", "attn_mask")


def _swin_config(name: str, image_size: int) -> dict:
    # dynamic_img_size: attention masks are built for the actual input, so any resolution works (the official code
    # precomputes them for one size).
    return {
        "backbone": _SWIN_TIMM_NAMES[name],
        "backbone_kwargs": {"features_only": False, "img_size": image_size, "dynamic_img_size": True},
    }


def _swin_convert(tensors: dict, backbone: nn.Module) -> tuple[dict, dict]:
    from timm.models.swin_transformer import checkpoint_filter_fn

    recomputed = {f"model.{k}": v for k, v in tensors.items() if k.rsplit(".", 1)[-1] in _SWIN_RECOMPUTED}
    weights = {k: v for k, v in tensors.items() if f"model.{k}" not in recomputed}
    return {f"model.{k}": v for k, v in checkpoint_filter_fn(weights, backbone.model).items()}, recomputed


SWIN = OfficialBackboneFamily(tuple(_SWIN_TIMM_NAMES), _swin_config, _swin_convert)


# -- CvT ----------------------------------------------------------------------------------------------------------


def _cvt_config(name: str, image_size: int) -> dict:
    from transformers import CvtConfig

    # CvT-w24 (Wu et al., 2021): widths 192/768/1024, depths 2/2/20, a class token in the last stage.
    backbone = CvtConfig(embed_dim=[192, 768, 1024], num_heads=[3, 12, 16], depth=[2, 2, 20], cls_token=[False, False, True])
    # The authors' CvT uses QuickGELU in every MLP where transformers' CvtModel has exact GELU.
    return {
        "backbone": None,
        "backbone_config": backbone,
        "backbone_hidden_act": "quick_gelu",
        "backbone_output_layer_norm": True,
    }


_CVT_RULES = [
    (r"stage(\d)\.patch_embed\.proj\.(\w+)", r"model.encoder.stages.\1.embedding.convolution_embeddings.projection.\2"),
    (r"stage(\d)\.patch_embed\.norm\.(\w+)", r"model.encoder.stages.\1.embedding.convolution_embeddings.normalization.\2"),
    (r"stage(\d)\.cls_token", r"model.encoder.stages.\1.cls_token"),
    (r"stage(\d)\.blocks\.(\d+)\.norm1\.(\w+)", r"model.encoder.stages.\1.layers.\2.layernorm_before.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.norm2\.(\w+)", r"model.encoder.stages.\1.layers.\2.layernorm_after.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.conv_proj_(q|k|v)\.conv\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.attention.convolution_projection_{\3}.convolution_projection.convolution.\4"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.conv_proj_(q|k|v)\.bn\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.attention.convolution_projection_{\3}.convolution_projection.normalization.\4"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.proj_(q|k|v)\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.attention.projection_{\3}.\4"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.proj\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.output.dense.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"model.encoder.stages.\1.layers.\2.intermediate.dense.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"model.encoder.stages.\1.layers.\2.output.dense.\3"),
    (r"norm\.(\w+)", r"output_norm.\1"),
]  # fmt: skip
_QKV_NAMES = {"q": "query", "k": "key", "v": "value"}


def rename_by_rules(key: str, rules: list[tuple[str, str]]) -> str | None:
    """The target of the first (pattern, target) rule whose pattern matches all of `key`, or None."""
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(target)
    return None


def _cvt_key(key: str) -> str:
    renamed = rename_by_rules(key, _CVT_RULES)
    if renamed is None:
        raise KeyError(key)
    return renamed.format(**_QKV_NAMES)


def _cvt_convert(tensors: dict, backbone: nn.Module) -> tuple[dict, dict]:
    return {_cvt_key(key): value for key, value in tensors.items()}, {}


CVT = OfficialBackboneFamily(("CvT_w24",), _cvt_config, _cvt_convert)


OFFICIAL_BACKBONES: dict[str, OfficialBackboneFamily] = {
    name: family for family in (RESNET, TRESNET, SWIN, CVT) for name in family.names
}


def official_family(backbone: str) -> OfficialBackboneFamily:
    if backbone not in OFFICIAL_BACKBONES:
        raise ValueError(
            f"Unknown official backbone {backbone!r}: this converter knows {sorted(OFFICIAL_BACKBONES)}. "
            "Check the `backbone` entry of the checkpoint's JSON config."
        )
    return OFFICIAL_BACKBONES[backbone]


def _recomputed_per_forward(backbone: nn.Module, key: str) -> bool:
    """Swin blocks with dynamic masks build `attn_mask` in every forward instead of keeping a buffer."""
    module_name, _, name = key.rpartition(".")
    return name == "attn_mask" and getattr(backbone.get_submodule(module_name), "dynamic_mask", False)


def check_recomputed_buffers(backbone: nn.Module, recomputed: dict[str, torch.Tensor]) -> None:
    """Buffers our implementation recomputes must exist with the official shape (or be rebuilt in each forward)."""
    buffers = dict(backbone.named_buffers())
    wrong = [
        f"{key}: official {tuple(value.shape)}, ours {tuple(buffers[key].shape) if key in buffers else 'absent'}"
        for key, value in recomputed.items()
        if not _recomputed_per_forward(backbone, key) and (key not in buffers or buffers[key].shape != value.shape)
    ]
    if wrong:
        raise ValueError(f"Recomputed backbone buffers do not match the checkpoint: {wrong[:5]}.")


def config_from_official_args(args: dict, labels: list[str] | None = None) -> Query2LabelConfig:
    """The `Query2LabelConfig` of an official model, from its training arguments."""
    return Query2LabelConfig(**config_arguments_from_official(args, labels))


def config_arguments_from_official(args: dict, labels: list[str] | None = None) -> dict:
    """`Query2LabelConfig` arguments of an official model, from its training arguments (COCO's labels unless
    `labels` names them)."""
    required = ("backbone", "img_size", "hidden_dim", "dim_feedforward", "enc_layers", "dec_layers", "nheads")
    missing = [name for name in required if name not in args]
    if missing:
        raise ValueError(f"The official config lacks {missing}; pass the JSON written by the official training run.")
    if args.get("position_embedding", "sine") != "sine":
        raise ValueError(
            f"position_embedding={args['position_embedding']!r} is not supported: official Q2L models use 'sine'."
        )
    num_labels = int(args.get("num_class", 80))
    if labels is None:
        if num_labels != len(COCO_LABELS):
            raise ValueError(
                f"The checkpoint has {num_labels} labels; COCO's 80 names do not fit. Pass --labels voc or a file "
                "with one name per line."
            )
        labels = list(COCO_LABELS)
    if len(labels) != num_labels:
        raise ValueError(f"{len(labels)} label names given but the checkpoint has num_class={num_labels}.")
    family = official_family(args["backbone"])
    return dict(
        **family.config_kwargs(args["backbone"], int(args["img_size"])),
        image_size=int(args["img_size"]),
        hidden_size=int(args["hidden_dim"]),
        use_input_projection=bool(args.get("keep_input_proj", False)),
        encoder_layers=int(args["enc_layers"]),
        decoder_layers=int(args["dec_layers"]),
        num_attention_heads=int(args["nheads"]),
        intermediate_size=int(args["dim_feedforward"]),
        dropout=float(args.get("dropout", 0.1)),
        attention_dropout=float(args.get("dropout", 0.1)),
        pre_norm=bool(args.get("pre_norm", False)),
        keep_first_decoder_self_attention=bool(args.get("keep_first_self_attn_dec", False)),
        keep_other_decoder_self_attention=bool(args.get("keep_other_self_attn_dec", False)),
        id2label=dict(enumerate(labels)),
        label2id={name: index for index, name in enumerate(labels)},
    )
