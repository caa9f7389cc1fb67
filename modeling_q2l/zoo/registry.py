"""The model zoo's front door, in the style of timm (`list_models`, `create_model`) and open_clip
(`create_model_and_transforms`): list the paper variants, and create one with or without weights.

    from modeling_q2l import create_model, list_variants
    list_variants()                                    # ['Q2L-CvT-w24-384', 'Q2L-R101-448', ...]
    list_variants("*R101*", pretrained=True)           # those whose authors released weights
    model = create_model("Q2L-R101-448")               # random weights, the paper's architecture
    model = create_model("Q2L-R101-448", pretrained="q2l-r101-448/")        # a converted folder (or its Hub id)
    model = create_model("Q2L-R101-448", pretrained="Q2L-R101-448.pkl", official_config="config_new.json")
    model, processor = create_model_and_processor("Q2L-SwinL-384", image_size=512)
"""

import fnmatch
from pathlib import Path

from ..model import Query2LabelImageProcessor, model_class_for
from ..saved_models import saved_model_errors
from .pretrained import PRETRAINED, get_pretrained_facts, normalisation
from .variants import VARIANTS, get_variant, variant_config


def list_variants(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """The variant names matching a shell-style `pattern`, sorted; `pretrained=True` keeps those whose authors
    released weights (the others exist as architectures only)."""
    names = sorted(name for name in VARIANTS if fnmatch.fnmatch(name, pattern))
    return [name for name in names if PRETRAINED[name].official_weights] if pretrained else names


def create_model(name: str, pretrained: bool | str = False, official_config: str | None = None, **overrides):
    """A `Query2LabelForMultiLabelClassification` of the variant `name`.

    pretrained:
        False: random weights (the paper's architecture; config fields can be overridden, e.g. `image_size=512`).
        True: the converted weights from the variant's Hub repository (`get_pretrained_facts(name).hub_id`).
        a path or Hub id: a saved Query2Label model folder of this variant, or an official checkpoint file
        (`.pkl`/`.pth`, converted on the fly; its JSON config goes in `official_config`).
    """
    get_variant(name)
    if pretrained is False or pretrained is None:
        config = variant_config(name, **overrides)
        return model_class_for(config)(config)
    source = pretrained
    if pretrained is True:
        source = get_pretrained_facts(name).hub_id
        if source is None:
            raise ValueError(
                f"{name} has no published Hub repository yet: convert the authors' checkpoint "
                f"(`scripts/convert_official_checkpoint.py --variant {name}`) and pass pretrained=FOLDER, or pass the "
                "checkpoint file itself with official_config=JSON."
            )
    if Path(str(source)).is_file():
        return _convert_official(name, str(source), official_config, overrides)
    return _load_saved(name, str(source), overrides)


def _convert_official(name: str, checkpoint: str, official_config: str | None, overrides: dict):
    from .convert_official import convert_official_checkpoint

    if official_config is None:
        raise ValueError(f"{checkpoint} is an official checkpoint file: pass its JSON config as official_config=PATH.")
    if overrides:
        raise ValueError(f"An official checkpoint defines its own configuration: {sorted(overrides)} cannot be changed.")
    model, _ = convert_official_checkpoint(checkpoint, official_config, output_dir=None, variant=name)
    return model


def _load_saved(name: str, source: str, overrides: dict):
    from ..model import Query2LabelConfig

    with saved_model_errors(source):
        config = Query2LabelConfig.from_pretrained(source, **overrides)
    expected = variant_config(name)
    if (config.backbone, config.hidden_size) != (expected.backbone, expected.hidden_size):
        raise ValueError(
            f"{source} holds a {config.backbone or config.backbone_config.model_type} model with hidden size "
            f"{config.hidden_size}, not {name} ({expected.backbone or expected.backbone_config.model_type}, hidden size "
            f"{expected.hidden_size})."
        )
    with saved_model_errors(source):
        return model_class_for(config).from_pretrained(source, config=config)


def create_model_and_processor(name: str, pretrained: bool | str = False, **kwargs):
    """(model, image processor): the processor resizes to the model's resolution and normalises as the variant's
    official model was trained."""
    model = create_model(name, pretrained, **kwargs)
    mean, std = normalisation(name)
    size = model.config.image_size
    processor = Query2LabelImageProcessor(size={"height": size, "width": size}, image_mean=list(mean), image_std=list(std))
    return model, processor
