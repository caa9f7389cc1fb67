"""Training recipes: named sets of option values a training run starts from. Every value can be overridden by its
own option on the command line; the card of the trained model names the recipe and each value that was overridden.

- `general`: the options' own documented defaults (`python scripts/train.py --help`), for a user's own dataset:
  everything trained, the saved processor, the final evaluation and the fitted thresholds at the training size, no
  extra evaluation splits, no demo-specific augmentation.
- `fashion-mnist-mosaic`: the settings tuned for the embedded Fashion-MNIST mosaics (BENCHMARKS.md); only
  meaningful on that dataset (it asks for its held-out layout splits). `scripts/train.py` implies it when it trains on
  the embedded dataset, its default.
- one recipe per paper variant (`Q2L-R101-448`, ... `zoo.variants.VARIANTS`): the variant's architecture and
  resolution, and the authors' COCO training recipe (the README command of github SlongLiu/query2labels and the
  paper, section 4.1).

Option names are those of `cli.arguments` (`ModelArguments`, `DataArguments`, `Query2LabelTrainingArguments`);
the benchmarks build the demo's model from its recipe too.
"""

from dataclasses import MISSING, dataclass, field, fields

from ..mosaics.layouts import HELD_OUT_LAYOUTS, layout_split_name
from .architecture import ARCHITECTURE_OPTIONS, CONFIG_OPTIONS, config_from_options
from .variants import VARIANTS, variant_config

GENERAL = "general"

# The official recipe's schedule: one-cycle, stepped every iteration (`lr_scheduler_type="one_cycle"`, which only
# `training.trainer.Query2LabelTrainer` knows).
ONE_CYCLE = "one_cycle"

FASHION_MNIST_MOSAIC = "fashion-mnist-mosaic"


@dataclass(frozen=True)
class Recipe:
    """A named set of option values. `values` maps option names to values; options it leaves out keep their
    documented defaults."""

    name: str
    description: str  # one line, for `--help`, the log and the card
    values: dict = field(default_factory=dict)


# The embedded demo's recipe (the main job). Every held-out test split reported apart (out_of_layout and the
# layout_* splits of `mosaics.layouts`), where the queries look on out_of_layout, layout randomisation so that layouts
# it never saw keep the accuracy, and the settings the tuning rounds in BENCHMARKS.md chose.
_FASHION_MNIST_MOSAIC_VALUES = {
    # the model: every option its config depends on (`architecture.CONFIG_OPTIONS`), so that it is the same model
    # whatever the general defaults become, and the benchmarks build it from here (`recipe_config`)
    "variant": None,
    "backbone": "tf_efficientnet_lite0",
    "backbone_kwargs": None,
    "image_size": 128,
    "min_feature_grid": 6,
    "fuse_feature_levels": True,
    "feature_fusion_channels": 256,
    "classifier_head": "query2label",
    "hidden_size": 256,
    "encoder_layers": 0,
    "decoder_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "dropout": 0.1,
    "pre_norm": False,
    "label_groups": None,
    "loss": "asl",
    "gamma_neg": 2.0,
    "gamma_pos": 0.0,
    "clip": 0.0,
    "focal_gamma": 2.0,
    # how it is trained, evaluated and saved
    "inference_image_size": 160,
    "frozen_backbone_stages": 3,
    "extra_eval_split_names": ["out_of_layout", *(layout_split_name(name) for name in HELD_OUT_LAYOUTS)],
    "localization_split_name": "out_of_layout",
    "num_train_epochs": 9,
    "per_device_train_batch_size": 32,
    "learning_rate": 5e-4,
    "layout_randomization": 0.6,
    "output_dir": "outputs/q2l-fashion-mnist-mosaic",
}

# The authors' COCO recipe, the same for every variant: AdamW with weight decay 1e-2 on every parameter, a one-cycle
# schedule (peak 1e-4, a fifth of the steps warming up) stepped every iteration, 80 epochs, batch 64 on one GPU
# (128 over two), RandAugment, no flip, EMA 0.9997 with the better of EMA and regular weights kept, ASL (gamma_neg 2,
# gamma_pos 0, no clip). The authors' cutout drew no patch (`--cutout` with `--cut_fact` ignored, length -1), so the
# paper's numbers were trained without one: off here too. Not carried over: their early stop (this trainer runs the
# epochs asked for) and mixed precision (`--bf16` or `--fp16` on a GPU; see the README).
PAPER_TRAINING_VALUES = {
    "optim": "adamw_torch",
    "learning_rate": 1e-4,
    "weight_decay": 1e-2,
    "lr_scheduler_type": ONE_CYCLE,
    "num_train_epochs": 80,
    "per_device_train_batch_size": 64,
    "randaugment": True,
    "cutout_probability": 0.0,
    "horizontal_flip": False,
    "ema_decay": 0.9997,
    "exempt_norm_and_bias_from_decay": False,
    "loss": "asl",
    "gamma_neg": 2.0,
    "gamma_pos": 0.0,
    "clip": 0.0,
}

def _paper_recipe(name: str) -> Recipe:
    config = variant_config(name)
    variant = VARIANTS[name]
    return Recipe(
        name=name,
        description=f"the paper's architecture at {variant.image_size} px and the authors' COCO training recipe",
        values={
            "variant": name,
            **{option: getattr(config, option) for option in ARCHITECTURE_OPTIONS},
            # the backbone's last feature map, as the paper attends to
            "backbone_kwargs": None, "min_feature_grid": 0, "fuse_feature_levels": False, "feature_fusion_channels": None,
            "focal_gamma": 2.0,
            **PAPER_TRAINING_VALUES,
            "output_dir": f"outputs/{name}",
        },
    )


# the recipes that are not a paper variant's; each registered variant has its own (`_paper_recipe`)
NAMED_RECIPES: dict[str, Recipe] = {
    GENERAL: Recipe(GENERAL, "the documented defaults, for any dataset"),
    FASHION_MNIST_MOSAIC: Recipe(
        FASHION_MNIST_MOSAIC,
        "the embedded Fashion-MNIST mosaics' tuned settings (held-out layout splits, 128 px trained, 160 px saved)",
        _FASHION_MNIST_MOSAIC_VALUES,
    ),
}


def all_recipes() -> dict[str, Recipe]:
    """Every recipe: the named ones and one per registered paper variant."""
    return {**NAMED_RECIPES, **{name: _paper_recipe(name) for name in sorted(VARIANTS)}}


def get_recipe(name: str) -> Recipe:
    if name in NAMED_RECIPES:
        return NAMED_RECIPES[name]
    if name in VARIANTS:
        return _paper_recipe(name)
    raise ValueError(f"Unknown recipe {name!r}. Recipes: {', '.join(all_recipes())}.")


def choose_recipe(recipe: str | None, variant: str | None, default_dataset_recipe: str | None = None) -> Recipe:
    """The recipe a run starts from: `--recipe` when given, else the `--variant`'s, else the recipe of the entry
    point's default dataset when the run trains on it (`default_dataset_recipe`), else `general`."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}. Variants: {', '.join(sorted(VARIANTS))}.")
    if recipe is not None:
        chosen = get_recipe(recipe)
        owner = chosen.values.get("variant")
        if variant is not None and owner != variant:
            raise ValueError(
                f"--recipe {recipe} is the recipe of {owner}, not of --variant {variant}." if owner
                else f"--recipe {recipe} sets its own model: drop --variant {variant}, or drop --recipe."
            )
        return chosen
    if variant is not None:
        return _paper_recipe(variant)
    return get_recipe(default_dataset_recipe or GENERAL)


@dataclass(frozen=True)
class RecipeUse:
    """The recipe a run started from and each of its values the run changed: {option: (recipe's, run's)}."""

    recipe: Recipe
    overridden: dict

    @classmethod
    def of_run(cls, name: str | None, *argument_objects) -> "RecipeUse":
        recipe = get_recipe(name or GENERAL)
        return cls(recipe, overridden_values(recipe, *argument_objects))

    def __str__(self) -> str:
        changed = ", ".join(f"{option} {ran!r} (recipe: {value!r})" for option, (value, ran) in self.overridden.items())
        return f"{self.recipe.name} ({self.recipe.description})" + (f"; overridden: {changed}" if changed else "")


# The options a recipe is made of: a run that changes one of them from its recipe's value (or, where the recipe
# leaves it, from the option's documented default) says so in its log and its card. Where the data and the output go,
# how the run logs and checkpoints, are not recipe values.
RECIPE_OPTIONS = (
    *CONFIG_OPTIONS, "inference_image_size", "freeze_backbone", "frozen_backbone_stages", "backbone_weights",
    "ema_decay", "exempt_norm_and_bias_from_decay", "backbone_learning_rate", "adaptive_asymmetry",
    "target_probability_gap", "asymmetry_step_size", "extra_eval_split_names", "localization_split_name",
    "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
    "weight_decay", "optim", "lr_scheduler_type", "warmup_steps", "randaugment", "randaugment_magnitude",
    "cutout_probability", "horizontal_flip", "layout_randomization", "object_recomposition", "seed", "bf16", "fp16",
)  # fmt: skip


def _plain(value):
    return getattr(value, "value", value)  # transformers' enums (lr_scheduler_type, optim) as their strings


def _documented_default(option):
    if option.default is not MISSING:
        return option.default
    return option.default_factory() if option.default_factory is not MISSING else None


def overridden_values(recipe: Recipe, *argument_objects) -> dict:
    """{option: (the recipe's value, the value the run used)} for each recipe option (`RECIPE_OPTIONS`) the run did
    not keep: where the recipe has no value for it, its documented default (the argument dataclass's) counts."""
    changed = {}
    for arguments in argument_objects:
        for option in fields(arguments):
            if option.name not in RECIPE_OPTIONS:
                continue
            expected = recipe.values[option.name] if option.name in recipe.values else _documented_default(option)
            ran = _plain(getattr(arguments, option.name))
            if ran != _plain(expected):
                changed[option.name] = (_plain(expected), ran)
    return changed


def recipe_config(name: str, label_names: list[str]):
    """The `Query2LabelConfig` a run with the recipe `name` builds for `label_names` (before a command-line option
    changes it), e.g. the demo's model for the benchmarks."""
    return config_from_options(get_recipe(name).values, label_names)


def recipes_help() -> str:
    return "; ".join(f"{recipe.name}: {recipe.description}" for recipe in all_recipes().values())
