"""One record per backbone family of the paper's models, registered from one file each (`zoo/families/*.py`), in
the style of timm's `@register_model` with `generate_default_cfgs` and `checkpoint_filter_fn` side by side:

- how the authors' backbone names map onto a maintained implementation (`config_kwargs`) and how their tensors are
  renamed (`convert`), with the input normalisation their models were trained with;
- the paper variants built on the family (`Query2LabelVariant`: architecture), each with what is known of its
  weights (`PretrainedFacts`: paper mAP, release, the pretrained backbone, licence, Hub repository);
- what the model cards say of the family (`feature_stride`, `conversion_check`).

`register_family` checks a record when it is registered (a missing or malformed fact fails at import) and fills the
registries the rest of the package reads: `VARIANTS` (the zoo's `list_variants`, `create_model`, `variant_config`,
the training recipes and `--variant`), `PRETRAINED`, `OFFICIAL_BACKBONES` (the converter) and `FAMILIES` (the cards).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, fields

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


@dataclass(frozen=True)
class PretrainedFacts:
    """What is known of a variant's weights, apart from its architecture."""

    backbone_name: str  # in words, for model cards
    pretraining: str  # of the backbone
    paper_coco_map: float  # MS-COCO 2014 val2014, as the paper reports it (quoted, not measured with this package)
    official_weights: bool  # whether the authors' release holds weights for this variant
    base_model: str  # the pretrained backbone on the Hub that the official model starts from
    hub_id: str | None = None  # this package's conversion on the Hub; None: not published yet
    license: str = "mit"  # the authors' code and release


@dataclass(frozen=True)
class Query2LabelVariant:
    """The architecture of a paper variant, as the official code's training arguments describe it, and what is known
    of its weights."""

    name: str
    official_backbone: str  # the `backbone` argument of the official code
    image_size: int
    hidden_size: int  # the backbone's channels: the official models have no input projection
    facts: PretrainedFacts

    def official_args(self) -> dict:
        """The official training arguments of this variant (those its JSON config holds)."""
        return {
            "backbone": self.official_backbone,
            "img_size": self.image_size,
            "hidden_dim": self.hidden_size,
            "dim_feedforward": 8192,
            "enc_layers": 1,
            "dec_layers": 2,
            "nheads": 4,
            "dropout": 0.1,
            "pre_norm": False,
            "keep_input_proj": False,
            "keep_first_self_attn_dec": False,
            "keep_other_self_attn_dec": False,
            "position_embedding": "sine",
            "num_class": 80,
        }


@dataclass(frozen=True)
class BackboneFamily:
    """One family of the authors' backbones mapped onto a maintained implementation, with its paper variants.

    Args:
        name: the family's short name, e.g. "resnet".
        official_names: the official `backbone` names of the family.
        config_kwargs: (official name, image size) -> `Query2LabelConfig` arguments for the backbone.
        convert: (official backbone tensors, our `Query2LabelBackbone`) -> (tensors to load, recomputed buffers),
            both keyed relative to `Query2LabelBackbone`.
        feature_stride: the stride of the feature map the label queries attend to (the cards say it).
        conversion_check: what has been checked of the family's conversion, in the cards' words.
        variants: the paper variants built on this family.
        image_mean, image_std: the input normalisation the official models were trained with.
    """

    name: str
    official_names: tuple[str, ...]
    config_kwargs: Callable[[str, int], dict]
    convert: Callable
    feature_stride: int
    conversion_check: str
    variants: tuple[Query2LabelVariant, ...] = ()
    image_mean: tuple = tuple(IMAGENET_DEFAULT_MEAN)
    image_std: tuple = tuple(IMAGENET_DEFAULT_STD)


# the cards' words for a family whose conversion has no numerical parity test yet
CHECKED_KEY_BY_KEY = (
    "The conversion is tested key by key and shape by shape against the official checkpoint's manifest; no numerical "
    "parity test exists for this backbone family yet."
)

FAMILIES: dict[str, BackboneFamily] = {}
VARIANTS: dict[str, Query2LabelVariant] = {}
PRETRAINED: dict[str, PretrainedFacts] = {}
OFFICIAL_BACKBONES: dict[str, BackboneFamily] = {}
_VARIANT_NAME = re.compile(r"Q2L-[A-Za-z0-9-]+-\d+")


def _problems(family: BackboneFamily) -> list[str]:
    problems = []
    if not family.name or not family.official_names:
        problems.append("a family needs a name and at least one official backbone name")
    if not callable(family.config_kwargs) or not callable(family.convert):
        problems.append("config_kwargs and convert must be functions")
    if family.feature_stride not in (4, 8, 16, 32, 64):
        problems.append(f"feature_stride {family.feature_stride!r} is not a backbone stride")
    if not family.conversion_check.strip():
        problems.append("conversion_check (the cards' words) is empty")
    for statistic in ("image_mean", "image_std"):
        values = getattr(family, statistic)
        if len(values) != 3 or not all(isinstance(value, (int, float)) for value in values):
            problems.append(f"{statistic} must be three numbers")
    for variant in family.variants:
        where = f"variant {variant.name!r}"
        if not _VARIANT_NAME.fullmatch(variant.name):
            problems.append(f"{where}: a name like Q2L-R101-448 (family, then resolution)")
        if variant.official_backbone not in family.official_names:
            problems.append(f"{where}: official_backbone {variant.official_backbone!r} is not one of {family.official_names}")
        if not isinstance(variant.image_size, int) or not isinstance(variant.hidden_size, int):
            problems.append(f"{where}: image_size and hidden_size must be integers")
        if not isinstance(variant.facts, PretrainedFacts):
            problems.append(f"{where}: facts must be a PretrainedFacts")
            continue
        for field in fields(PretrainedFacts):
            value = getattr(variant.facts, field.name)
            if value is None and field.name != "hub_id" or value == "":
                problems.append(f"{where}: the fact {field.name!r} is missing")
        if not isinstance(variant.facts.paper_coco_map, (int, float)) or not 0 < variant.facts.paper_coco_map <= 100:
            problems.append(f"{where}: paper_coco_map must be the paper's mAP in percent")
    return problems


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Check `family` and add it and its variants to the registries; a family file ends with this call. A record
    with a missing or malformed fact, or a name already taken, is refused with every problem named."""
    problems = _problems(family)
    if family.name in FAMILIES:
        problems.append(f"a family named {family.name!r} is registered already")
    problems += [f"official backbone {name!r} belongs to {OFFICIAL_BACKBONES[name].name!r}" for name in family.official_names if name in OFFICIAL_BACKBONES]
    problems += [f"variant {variant.name!r} is registered already" for variant in family.variants if variant.name in VARIANTS]
    if problems:
        raise ValueError(f"Backbone family {family.name!r} cannot be registered: " + "; ".join(problems) + ".")
    FAMILIES[family.name] = family
    OFFICIAL_BACKBONES.update(dict.fromkeys(family.official_names, family))
    for variant in family.variants:
        VARIANTS[variant.name] = variant
        PRETRAINED[variant.name] = variant.facts
    return family


def unregister_family(name: str) -> None:
    """Remove a family and its variants from the registries (tests register stand-ins and take them away)."""
    family = FAMILIES.pop(name)
    for official_name in family.official_names:
        OFFICIAL_BACKBONES.pop(official_name, None)
    for variant in family.variants:
        VARIANTS.pop(variant.name, None)
        PRETRAINED.pop(variant.name, None)


def family_of_variant(name: str) -> BackboneFamily:
    return OFFICIAL_BACKBONES[VARIANTS[name].official_backbone]


def rename_by_rules(key: str, rules: list[tuple[str, str]]) -> str | None:
    """The target of the first (pattern, target) rule whose pattern matches all of `key`, or None."""
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(target)
    return None


def strip_prefix(key: str, prefix: str) -> str:
    """`key` without `prefix`; a key without it cannot be placed (KeyError, which the converter reports)."""
    if not key.startswith(prefix):
        raise KeyError(key)
    return key[len(prefix) :]
