"""Convert official Query2Label releases (github SlongLiu/query2labels) into Hugging Face model folders.

An official release is a torch pickle holding `state_dict` (keys possibly prefixed `module.`) and the JSON of the
training command's arguments. The converter builds the matching `Query2LabelConfig`, renames every key (splitting
`nn.MultiheadAttention`'s packed projections), refuses anything it cannot place, and saves safetensors weights,
the config, the image processor and the code files.
"""

import json
import pickle
from pathlib import Path

import torch

from ..model import Query2LabelForMultiLabelClassification, Query2LabelImageProcessor
from .official_backbones import (
    OFFICIAL_BACKBONES,
    check_recomputed_buffers,
    config_from_official_args,
    official_family,
    rename_by_rules,
)

__all__ = ["OFFICIAL_BACKBONES", "config_from_official_args", "convert_official_checkpoint", "convert_official_state_dict"]

# The official state dict stores its precomputed positional encoding; ours is computed for each input size.
_RECOMPUTED_KEYS = ("backbone.1.pe",)
_BACKBONE_PREFIX = "backbone.0."


# Official transformer key (DETR naming) -> our key; `{qkv}` marks packed projections to split in three.
_HEAD_RULES = [
    (r"transformer\.encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", r"model.encoder.layers.\1.self_attn.{qkv}_proj.\2"),
    (r"transformer\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"model.encoder.layers.\1.self_attn.o_proj.\2"),
    (r"transformer\.encoder\.layers\.(\d+)\.linear1\.(weight|bias)", r"model.encoder.layers.\1.mlp.fc1.\2"),
    (r"transformer\.encoder\.layers\.(\d+)\.linear2\.(weight|bias)", r"model.encoder.layers.\1.mlp.fc2.\2"),
    (r"transformer\.encoder\.layers\.(\d+)\.norm1\.(weight|bias)", r"model.encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"transformer\.encoder\.layers\.(\d+)\.norm2\.(weight|bias)", r"model.encoder.layers.\1.final_layer_norm.\2"),
    (r"transformer\.encoder\.norm\.(weight|bias)", r"model.encoder.layer_norm.\1"),
    (r"transformer\.decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", r"model.decoder.layers.\1.self_attn.{qkv}_proj.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"model.decoder.layers.\1.self_attn.o_proj.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.multihead_attn\.in_proj_(weight|bias)", r"model.decoder.layers.\1.cross_attn.{qkv}_proj.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.multihead_attn\.out_proj\.(weight|bias)", r"model.decoder.layers.\1.cross_attn.o_proj.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.linear1\.(weight|bias)", r"model.decoder.layers.\1.mlp.fc1.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.linear2\.(weight|bias)", r"model.decoder.layers.\1.mlp.fc2.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.norm1\.(weight|bias)", r"model.decoder.layers.\1.self_attn_layer_norm.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.norm2\.(weight|bias)", r"model.decoder.layers.\1.cross_attn_layer_norm.\2"),
    (r"transformer\.decoder\.layers\.(\d+)\.norm3\.(weight|bias)", r"model.decoder.layers.\1.final_layer_norm.\2"),
    (r"transformer\.decoder\.norm\.(weight|bias)", r"model.decoder.layer_norm.\1"),
    (r"query_embed\.weight", r"model.label_embeddings.weight"),
    (r"input_proj\.(weight|bias)", r"model.input_projection.\1"),
    (r"fc\.W", r"classifier.weight"),
    (r"fc\.b", r"classifier.bias"),
]  # fmt: skip


def _convert_head_key(key: str, value: torch.Tensor) -> dict[str, torch.Tensor] | None:
    new_key = rename_by_rules(key, _HEAD_RULES)
    if new_key is None:
        return None
    if key.startswith("fc."):  # GroupWiseLinear keeps a leading batch axis of 1
        return {new_key: value.squeeze(0)}
    if "{qkv}" in new_key:
        return {new_key.format(qkv=name): part for name, part in zip("qkv", value.chunk(3, dim=0))}
    return {new_key: value}


def convert_official_state_dict(state_dict: dict, backbone: str, model) -> dict[str, torch.Tensor]:
    """Rename an official state dict to the keys of `model`. Every key must land somewhere: leftovers are an error.

    Buffers that we recompute (the positional encoding, Swin's attention masks) are checked, not loaded."""
    family = official_family(backbone)
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    converted, backbone_tensors, unmapped = {}, {}, []
    for key, value in state_dict.items():
        if key in _RECOMPUTED_KEYS or key.endswith("num_batches_tracked"):
            continue
        if key.startswith(_BACKBONE_PREFIX):
            backbone_tensors[key[len(_BACKBONE_PREFIX) :]] = value
            continue
        head = _convert_head_key(key, value)
        if head is None:
            unmapped.append(key)
        else:
            converted.update(head)
    if unmapped:
        raise ValueError(f"{len(unmapped)} official keys map nowhere, e.g. {unmapped[:5]}.")
    try:
        loadable, recomputed = family.convert(backbone_tensors, model.get_backbone())
    except KeyError as error:
        raise ValueError(f"Official backbone key {_BACKBONE_PREFIX}{error.args[0]} maps nowhere.") from error
    check_recomputed_buffers(model.get_backbone(), recomputed)
    converted.update({f"model.backbone.{key}": value for key, value in loadable.items()})
    return converted


def load_into_model(model: torch.nn.Module, converted: dict[str, torch.Tensor]) -> None:
    """Load converted tensors strictly: a missing, unexpected or misshapen tensor is an error naming it."""
    expected = model.state_dict()
    # BatchNorm step counters carry no weights: keep the model's own where the checkpoint has none.
    converted = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **converted}
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    misshapen = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(converted))
        if converted[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensors have no source, e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} converted tensors fit no model tensor, e.g. {unexpected[:5]}")
    if misshapen:
        problems.append(f"{len(misshapen)} shapes differ, e.g. {misshapen[:3]}")
    if problems:
        raise ValueError("The official checkpoint does not match its config: " + "; ".join(problems) + ".")
    model.load_state_dict(converted, strict=True)


def read_official_checkpoint(path: str | Path, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint, read with `weights_only=True` unless explicitly allowed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds objects that torch.load(weights_only=True) refuses ({error}). If you trust this file, "
            "run again with --allow_unsafe_pickle to unpickle it fully."
        ) from error
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key]
        if all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            return checkpoint
    raise ValueError(f"{path} is not an official Q2L checkpoint: expected a dict holding `state_dict`.")


def convert_official_checkpoint(
    checkpoint: str | Path,
    config_json: str | Path,
    output_dir: str | Path | None = None,
    labels: list[str] | None = None,
    allow_unsafe_pickle: bool = False,
    variant: str | None = None,
) -> tuple[Query2LabelForMultiLabelClassification, Query2LabelImageProcessor]:
    """Convert an official release; with `output_dir`, save a folder that loads with `trust_remote_code`.

    With `variant` (e.g. `Q2L-R101-448`) the checkpoint's arguments must describe that paper variant."""
    args = json.loads(Path(config_json).read_text(encoding="utf-8"))
    if variant is not None:
        from .variants import check_official_args_match

        check_official_args_match(variant, args)
    config = config_from_official_args(args, labels)
    family = official_family(args["backbone"])
    state_dict = read_official_checkpoint(checkpoint, allow_unsafe_pickle)
    model = Query2LabelForMultiLabelClassification(config)
    load_into_model(model, convert_official_state_dict(state_dict, args["backbone"], model))
    model.eval()
    processor = Query2LabelImageProcessor(
        size={"height": config.image_size, "width": config.image_size},
        image_mean=list(family.image_mean),
        image_std=list(family.image_std),
    )
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor

