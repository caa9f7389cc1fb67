"""The `Query2LabelConfig` a set of training options describes: a paper variant's (with the options that differ from
it applied on top) or a new model's, whose label queries attend to the feature grid the options choose. Training
(`training.model_setup`) and the benchmarks (the demo's recipe, `zoo.recipes.recipe_config`) build their models here.

Options are keyed by the training command's option names (`cli.arguments.ModelArguments`).
"""

import json
import logging
from types import SimpleNamespace

from ..model import Query2LabelConfig
from .variants import variant_config

logger = logging.getLogger(__name__)

# Training options that are `Query2LabelConfig` fields of the same name and meaning: a paper variant's recipe takes
# them from the variant's config, and a value given on the command line overrides that field.
ARCHITECTURE_OPTIONS = (
    "backbone", "image_size", "classifier_head", "hidden_size", "encoder_layers", "decoder_layers",
    "num_attention_heads", "intermediate_size", "dropout", "pre_norm", "label_groups",
)  # fmt: skip

# every option the config depends on: the architecture's, how the feature grid is chosen, and the loss's
CONFIG_OPTIONS = (
    *ARCHITECTURE_OPTIONS, "variant", "backbone_kwargs", "min_feature_grid", "fuse_feature_levels",
    "feature_fusion_channels", "loss", "gamma_neg", "gamma_pos", "clip", "focal_gamma",
)  # fmt: skip


def _json_object(value) -> dict | None:
    """`--backbone_kwargs` as given: a JSON string on the command line, a dict from Python or a recipe."""
    return json.loads(value) if isinstance(value, str) else value


def config_from_options(options: dict, label_names: list[str]) -> Query2LabelConfig:
    """The config of a new model for `label_names` from training options (`CONFIG_OPTIONS`; others are ignored)."""
    missing = [name for name in CONFIG_OPTIONS if name not in options]
    if missing:
        raise ValueError(f"Options missing for the model's config: {missing}.")
    chosen = SimpleNamespace(**{name: options[name] for name in CONFIG_OPTIONS})
    labels = {"id2label": dict(enumerate(label_names)), "label2id": {name: index for index, name in enumerate(label_names)}}
    loss = loss_settings(chosen.loss, chosen.gamma_neg, chosen.gamma_pos, chosen.clip, chosen.focal_gamma)
    return _variant_config(chosen, labels, loss) if chosen.variant else _new_config(chosen, labels, loss)


def loss_settings(loss: str, gamma_neg: float, gamma_pos: float, clip: float, focal_gamma: float = 2.0) -> dict:
    """Config values that make the model's loss the ASL, focal loss or plain binary cross-entropy."""
    if loss == "asl":
        return {"asl_gamma_neg": gamma_neg, "asl_gamma_pos": gamma_pos, "asl_clip": clip}
    if loss == "focal":
        return {"asl_gamma_neg": focal_gamma, "asl_gamma_pos": focal_gamma, "asl_clip": 0.0}
    if loss == "bce":
        return {"asl_gamma_neg": 0.0, "asl_gamma_pos": 0.0, "asl_clip": 0.0}
    raise ValueError(f"--loss must be asl, focal or bce, got {loss!r}.")


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


def _new_config(options: SimpleNamespace, labels: dict, loss: dict) -> Query2LabelConfig:
    """The config of a new model from the architecture options."""
    given = _json_object(options.backbone_kwargs)
    backbone_kwargs = backbone_kwargs_for_grid(options.backbone, given, options.image_size, options.min_feature_grid, options.fuse_feature_levels)
    fuse = options.fuse_feature_levels and len((backbone_kwargs or {}).get("out_indices") or []) > 1
    if options.feature_fusion_channels and not fuse:
        raise ValueError(
            f"--feature_fusion_channels sets the width of fused feature levels, but this run's queries attend to one "
            f"level (backbone_kwargs {backbone_kwargs}): drop the option, or fuse levels (--fuse_feature_levels with "
            "a --min_feature_grid that picks an earlier stage, or two --backbone_kwargs out_indices)."
        )
    return Query2LabelConfig(
        **{name: getattr(options, name) for name in ARCHITECTURE_OPTIONS},
        backbone_kwargs=backbone_kwargs,
        fuse_feature_levels=fuse,
        feature_fusion_channels=options.feature_fusion_channels,
        use_input_projection=True,
        attention_dropout=options.dropout,
        **labels,
        **loss,
    )


def _variant_config(options: SimpleNamespace, labels: dict, loss: dict) -> Query2LabelConfig:
    """The config of a paper variant (its backbone at its last stage, its head), with each architecture option that
    differs from the variant's own value applied on top (e.g. `--image_size 224`)."""
    preset = variant_config(options.variant)
    overrides = {name: getattr(options, name) for name in ARCHITECTURE_OPTIONS if getattr(options, name) != getattr(preset, name)}
    if "hidden_size" in overrides:  # the paper's head runs at the backbone's width: another width needs a projection
        overrides["use_input_projection"] = True
    if "dropout" in overrides:
        overrides["attention_dropout"] = overrides["dropout"]
    if options.backbone_kwargs:
        overrides["backbone_kwargs"] = {**(preset.backbone_kwargs or {}), **_json_object(options.backbone_kwargs)}
    if options.feature_fusion_channels:
        raise ValueError(f"--feature_fusion_channels: {options.variant} attends to its backbone's last stage only, as the paper does.")
    if overrides:
        logger.info("%s with %s instead of the variant's own values.", options.variant, overrides)
    return variant_config(options.variant, **overrides, **labels, **loss)
