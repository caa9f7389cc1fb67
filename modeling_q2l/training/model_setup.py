"""The model a training run starts from: a new one (its backbone's pretrained weights loaded explicitly) or a saved
one adapted to the dataset's labels (`Query2LabelPreTrainedModel.set_labels`), with the backbone freezing asked for.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..model import Query2LabelConfig, model_class_for
from ..saved_models import saved_model_errors
from ..zoo.backbone_weights import BackboneWeights, load_pretrained_backbone
from ..zoo.pretrained import get_pretrained_facts
from ..zoo.variants import variant_config

logger = logging.getLogger(__name__)

# `ModelArguments` fields that are `Query2LabelConfig` fields of the same name and meaning
CONFIG_FIELDS_OF_MODEL_ARGUMENTS = (
    "backbone", "image_size", "classifier_head", "hidden_size", "encoder_layers", "decoder_layers",
    "num_attention_heads", "intermediate_size", "dropout", "pre_norm", "label_groups",
)  # fmt: skip


def loss_settings(loss: str, gamma_neg: float, gamma_pos: float, clip: float, focal_gamma: float = 2.0) -> dict:
    """Config values that make the model's loss the ASL, focal loss or plain binary cross-entropy."""
    if loss == "asl":
        return {"asl_gamma_neg": gamma_neg, "asl_gamma_pos": gamma_pos, "asl_clip": clip}
    if loss == "focal":
        return {"asl_gamma_neg": focal_gamma, "asl_gamma_pos": focal_gamma, "asl_clip": 0.0}
    if loss == "bce":
        return {"asl_gamma_neg": 0.0, "asl_gamma_pos": 0.0, "asl_clip": 0.0}
    raise ValueError(f"--loss must be asl, focal or bce, got {loss!r}.")


def read_label_mapping(spec: str | dict | None) -> dict[str, str]:
    """A mapping {new label: source label} from a dict, a JSON string or a JSON file."""
    if spec is None or isinstance(spec, dict):
        return dict(spec or {})
    text = Path(spec).read_text(encoding="utf-8") if Path(spec).is_file() else spec
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--label_mapping must be a JSON object (or a file holding one), e.g. '{{\"motorbike\": \"motorcycle\"}}': {error}.") from error
    if not isinstance(mapping, dict):
        raise ValueError("--label_mapping must be a JSON object {new label: label of the starting model}.")
    return {str(key): str(value) for key, value in mapping.items()}


def load_with_labels(model_name_or_path: str, labels: list[str], label_mapping: str | dict | None = None, config_overrides: dict | None = None):
    """A saved or published Query2Label model adapted to `labels`; returns (model, {"source", "matched", "new",
    "dropped"}). Every weight that is not label-specific is loaded as it is; `config_overrides` (e.g. the loss
    settings) go through the config's constructor. See `Query2LabelPreTrainedModel.set_labels`."""
    with saved_model_errors(model_name_or_path):
        config_dict, _ = Query2LabelConfig.get_config_dict(model_name_or_path)
        config = Query2LabelConfig.from_dict({**config_dict, **(config_overrides or {})})
        model = model_class_for(config).from_pretrained(model_name_or_path, config=config)
    try:
        transfer = model.set_labels(labels, read_label_mapping(label_mapping))
    except ValueError as error:
        raise ValueError(f"{error} (--label_mapping maps dataset labels to labels of --model_name_or_path)") from error
    model.apply_backbone_freezing()
    return model, {"source": str(model_name_or_path), **transfer}


@dataclass
class StartingModel:
    model: object
    backbone_weights: BackboneWeights
    label_transfer: dict | None = None  # of a fine-tuning run: {"source", "matched", "new", "dropped"}
    frozen: str | None = None  # what of the backbone was frozen, in words


def backbone_kwargs_for_grid(
    backbone: str, backbone_kwargs: dict | None, image_size: int, min_grid: int, fuse: bool = False
) -> dict | None:
    """`backbone_kwargs` choosing the feature grid the label queries attend to: the last stage of the timm backbone
    whose grid is at least `min_grid` cells a side at `image_size` (`out_indices` [that stage], or with `fuse`
    [that stage, the last stage], for `fuse_feature_levels`), or the last stage as usual (`backbone_kwargs` kept)
    when that is it, when `min_grid` is 0, or when `backbone_kwargs` already chooses (`out_indices`, `output_stride`,
    `features_only`). At 128 px an EfficientNet's last stage (stride 32) is a 4 x 4 grid whose cells are as large as
    the objects: on the stride-16 grid (8 x 8) the queries' attention can point at them."""
    chosen = backbone_kwargs or {}
    if min_grid <= 0 or any(key in chosen for key in ("out_indices", "output_stride", "features_only")):
        return backbone_kwargs
    import timm
    import torch

    try:
        with torch.device("meta"):  # the architecture only, for its feature strides
            reductions = timm.create_model(backbone, pretrained=False, features_only=True, **chosen).feature_info.reduction()
    except Exception as error:  # not a timm feature model: its own default
        logger.info("Keeping %s's last stage (%s: %s).", backbone, type(error).__name__, error)
        return backbone_kwargs
    fitting = [index for index, reduction in enumerate(reductions) if image_size // reduction >= min_grid]
    if not fitting or fitting[-1] == len(reductions) - 1:
        return backbone_kwargs
    index = fitting[-1]
    logger.info(
        "Label queries attend to %s's stage %d%s (stride %d, a %d x %d grid at %d px): the last stage's grid would be "
        "%d x %d (--min_feature_grid %d).", backbone, index, " with the last stage added onto it" if fuse else "",
        reductions[index], image_size // reductions[index], image_size // reductions[index], image_size,
        image_size // reductions[-1], image_size // reductions[-1], min_grid,
    )  # fmt: skip
    return {**chosen, "out_indices": [index, len(reductions) - 1] if fuse else [index]}


def _new_config(model_args, labels: dict, loss: dict) -> Query2LabelConfig:
    """The config of a new model from the architecture options."""
    given = json.loads(model_args.backbone_kwargs) if model_args.backbone_kwargs else None
    backbone_kwargs = backbone_kwargs_for_grid(
        model_args.backbone, given, model_args.image_size, model_args.min_feature_grid, model_args.fuse_feature_levels
    )
    fuse = model_args.fuse_feature_levels and len((backbone_kwargs or {}).get("out_indices") or []) > 1
    if model_args.feature_fusion_channels and not fuse:
        raise ValueError(
            f"--feature_fusion_channels sets the width of fused feature levels, but this run's queries attend to one "
            f"level (backbone_kwargs {backbone_kwargs}): drop the option, or fuse levels (--fuse_feature_levels with "
            "a --min_feature_grid that picks an earlier stage, or two --backbone_kwargs out_indices)."
        )
    return Query2LabelConfig(
        **{name: getattr(model_args, name) for name in CONFIG_FIELDS_OF_MODEL_ARGUMENTS},
        backbone_kwargs=backbone_kwargs,
        fuse_feature_levels=fuse,
        feature_fusion_channels=model_args.feature_fusion_channels,
        use_input_projection=True,
        attention_dropout=model_args.dropout,
        **labels,
        **loss,
    )


def _variant_config(model_args, labels: dict, loss: dict) -> Query2LabelConfig:
    """The config of a paper variant (its backbone at its last stage, its head), with each architecture option that
    differs from the variant's own value applied on top (e.g. `--image_size 224`)."""
    preset = variant_config(model_args.variant)
    overrides = {
        name: getattr(model_args, name)
        for name in CONFIG_FIELDS_OF_MODEL_ARGUMENTS
        if getattr(model_args, name) != getattr(preset, name)
    }
    if "hidden_size" in overrides:  # the paper's head runs at the backbone's width: another width needs a projection
        overrides["use_input_projection"] = True
    if "dropout" in overrides:
        overrides["attention_dropout"] = overrides["dropout"]
    if model_args.backbone_kwargs:
        overrides["backbone_kwargs"] = {**(preset.backbone_kwargs or {}), **json.loads(model_args.backbone_kwargs)}
    if model_args.feature_fusion_channels:
        raise ValueError(f"--feature_fusion_channels: {model_args.variant} attends to its backbone's last stage only, as the paper does.")
    if overrides:
        logger.info("%s with %s instead of the variant's own values.", model_args.variant, overrides)
    return variant_config(model_args.variant, **overrides, **labels, **loss)


def build_model(model_args, label_names: list[str]) -> StartingModel:
    """A new model or a saved one adapted to the dataset's labels, with the requested backbone freezing."""
    if model_args.freeze_backbone and model_args.frozen_backbone_stages is not None:
        raise ValueError("Pass --freeze_backbone (the whole backbone) or --frozen_backbone_stages N, not both.")
    loss = loss_settings(model_args.loss, model_args.gamma_neg, model_args.gamma_pos, model_args.clip, model_args.focal_gamma)
    if model_args.model_name_or_path:
        model, transfer = load_with_labels(model_args.model_name_or_path, label_names, model_args.label_mapping, loss)
        logger.info(
            "Labels from %s: %d matched %s, %d new %s, %d dropped %s.", transfer["source"], len(transfer["matched"]),
            transfer["matched"], len(transfer["new"]), transfer["new"], len(transfer["dropped"]), transfer["dropped"],
        )  # fmt: skip
        started = StartingModel(model, BackboneWeights(f"fine-tuned from {model_args.model_name_or_path}", pretrained=False), transfer)
    else:
        labels = {"id2label": dict(enumerate(label_names)), "label2id": {name: index for index, name in enumerate(label_names)}}
        config = _variant_config(model_args, labels, loss) if model_args.variant else _new_config(model_args, labels, loss)
        model = model_class_for(config)(config)
        source = get_pretrained_facts(model_args.variant).base_model if model_args.variant else None
        started = StartingModel(model, load_pretrained_backbone(model, model_args.backbone_weights, source))
        if config.frozen_backbone_modules:  # a paper variant's ResNet: the authors' frozen stem and first stage
            started.frozen = f"The backbone's {', '.join(config.frozen_backbone_modules)} were not trained, as in the authors' recipe."
    if model_args.freeze_backbone or model_args.frozen_backbone_stages is not None:
        stages = None if model_args.freeze_backbone else model_args.frozen_backbone_stages
        try:
            frozen = started.model.freeze_backbone(stages)
        except ValueError as error:
            raise ValueError(f"--frozen_backbone_stages: {error}") from error
        logger.info("Froze %d backbone parameter tensors (no optimizer state, no BatchNorm updates).", len(frozen))
        started.frozen = (
            "The backbone was frozen: only the Query2Label head was trained."
            if stages is None
            else f"The backbone's stem and first {stages} stages were frozen."
        )
    return started
