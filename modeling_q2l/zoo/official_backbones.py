"""The official checkpoints' configuration: which backbone family an official `backbone` name belongs to (each family
is one record, registered from its own file in `families/`), the `Query2LabelConfig` of an official model from its
training arguments, and the check of the buffers an implementation recomputes.

Each family turns the official backbone tensors (keys after `backbone.0.`) into keys of `Query2LabelBackbone`
(`model.*`, `output_norm.*`). Buffers the implementation recomputes (Swin's relative position index and attention
masks) are reported separately so the converter can check their shapes instead of dropping them silently.
"""

import torch
from torch import nn

from ..data.labels import COCO_LABELS
from ..model.configuration_query2label import Query2LabelConfig
from . import families  # noqa: F401 (registers every family)
from .family import OFFICIAL_BACKBONES, BackboneFamily, rename_by_rules

__all__ = ["OFFICIAL_BACKBONES", "check_recomputed_buffers", "config_arguments_from_official", "config_from_official_args", "official_family", "rename_by_rules"]


def official_family(backbone: str) -> BackboneFamily:
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
