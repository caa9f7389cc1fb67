"""The card's summary of a training run (`hub.model_card.TrainingSummary`), from the options the run actually used."""

from ..mosaics.mosaic import is_fashion_mnist_mosaic
from ..hub.model_card import TrainingSummary
from ..data.splits import DatasetSpec
from ..zoo.recipes import ONE_CYCLE, RecipeUse
from .options import ModelOptions, TrainingOptions

OPTIMIZER_NAMES = {"adamw_torch": "AdamW", "adamw_torch_fused": "AdamW (fused)", "sgd": "SGD", "adafactor": "Adafactor"}


def _schedule(training_args: TrainingOptions, model_args: ModelOptions) -> str:
    length = f"{training_args.max_steps} steps" if training_args.max_steps > 0 else f"{training_args.num_train_epochs:g} epochs"
    optimizer = str(getattr(training_args.optim, "value", training_args.optim))
    scheduler = str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type))
    rate = (
        f"one-cycle schedule with peak learning rate {training_args.learning_rate}"
        if scheduler == ONE_CYCLE
        else f"{scheduler} learning-rate schedule from {training_args.learning_rate}"
    )
    if model_args.backbone_learning_rate is not None:
        rate += f" (backbone {model_args.backbone_learning_rate})"
    return (
        f"{length}, batch {training_args.per_device_train_batch_size} per device, "
        f"{OPTIMIZER_NAMES.get(optimizer, optimizer)} (weight decay {training_args.weight_decay}), {rate}"
    )


def _loss(model_args: ModelOptions) -> str:
    if model_args.loss == "asl":
        settings = f"gamma_neg {model_args.gamma_neg}, gamma_pos {model_args.gamma_pos}, clip {model_args.clip}"
    elif model_args.loss == "focal":
        settings = f"gamma {model_args.focal_gamma}"
    else:
        settings = "plain binary cross-entropy"
    return f"`{model_args.loss}` ({settings}" + (", adaptive asymmetry" if model_args.adaptive_asymmetry else "") + ")"


def summarise_run(
    model, model_args: ModelOptions, data_args: DatasetSpec, training_args: TrainingOptions, started, saved_weights: str,
    recipe: RecipeUse | None = None,
    training_image_size: int | None = None,
) -> TrainingSummary:
    """What the run did: `started` is the `model_setup.StartingModel` it began from, `recipe` the recipe it started
    from and what it changed of it; `training_image_size` the resolution it trained at, when the model now runs at
    another (`--inference_image_size`)."""
    config = model.config
    backbone = (
        f"`{config.backbone}` (timm)"
        if config.backbone_config is None
        else f"`{config.backbone_config.model_type}` (transformers, {type(config.backbone_config).__name__})"
    )
    augmentation = (
        (f"RandAugment on (magnitude {training_args.randaugment_magnitude})" if training_args.randaugment else "RandAugment off")
        + f", cutout probability {training_args.cutout_probability}"
        + (
            f", layout randomisation with probability {training_args.layout_randomization} (new backgrounds, tints, "
            "object sizes, noise, blur and JPEG compression for the same objects)"
            if training_args.layout_randomization > 0
            else ""
        )
        + (
            f", object recomposition with probability {training_args.object_recomposition} (the boxed objects of the "
            "image and of another training image laid out again: new sizes, places, counts, overlaps and label "
            "combinations)"
            if training_args.object_recomposition > 0
            else ""
        )
        + (", horizontal flips" if training_args.horizontal_flip else "")
    )
    return TrainingSummary(
        recipe=f"`{recipe.recipe.name}` ({recipe.recipe.description})" if recipe else None,
        recipe_overrides={option: f"{ran} (recipe: {value})" for option, (value, ran) in recipe.overridden.items()} if recipe else None,
        dataset_name=data_args.dataset_name or data_args.coco_annotations,
        eval_split_name=data_args.eval_split_name,
        is_embedded_demo=is_fashion_mnist_mosaic(data_args.dataset_name),
        backbone=backbone,
        schedule=_schedule(training_args, model_args),
        loss=_loss(model_args),
        augmentation=augmentation,
        ema=f"EMA decay {model_args.ema_decay}" if model_args.ema_decay else "no EMA",
        backbone_weights=str(started.backbone_weights),
        base_model=started.backbone_weights.base_model,
        saved_weights=saved_weights,
        label_transfer=started.label_transfer,
        frozen=started.frozen,
        hub_model_id=training_args.hub_model_id,
        training_image_size=training_image_size,
    )
