"""The architectures of the Query2Label models of the paper (Liu et al., 2021, Table 1 and the official releases).

`PRESETS` maps each variant name to the `Query2LabelConfig` arguments of the official model (head: 1 encoder and 2
decoder layers, 4 heads, feed-forward 8192, hidden size equal to the backbone's channels; COCO's 80 labels), the
same arguments the converter derives from an official checkpoint's JSON. `variant_config(name, **overrides)` passes
them, with any overrides, through the config's constructor. What is known of each variant's weights (paper mAP,
release, normalisation, licence) is apart, in `pretrained.py`.
"""

from dataclasses import dataclass, fields

from ..model.configuration_query2label import Query2LabelConfig
from .official_backbones import config_arguments_from_official


@dataclass(frozen=True)
class Query2LabelVariant:
    """The architecture of a paper variant, as the official code's training arguments describe it."""

    name: str
    official_backbone: str  # the `backbone` argument of the official code
    image_size: int
    hidden_size: int  # the backbone's channels: the official models have no input projection

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


# fmt: off
VARIANTS: dict[str, Query2LabelVariant] = {
    variant.name: variant
    for variant in (
        Query2LabelVariant("Q2L-R101-448", "resnet101", 448, 2048),
        Query2LabelVariant("Q2L-R101-576", "resnet101", 576, 2048),
        Query2LabelVariant("Q2L-TResL-448", "tresnetl", 448, 2432),
        Query2LabelVariant("Q2L-TResL-22k-448", "tresnetl_v2", 448, 2048),
        Query2LabelVariant("Q2L-TResXL-640", "tresnetxl", 640, 2656),
        Query2LabelVariant("Q2L-TResL-22k-640", "tresnetl_v2", 640, 2048),
        Query2LabelVariant("Q2L-SwinL-384", "swin_L_384_22k", 384, 1536),
        Query2LabelVariant("Q2L-CvT-w24-384", "CvT_w24", 384, 1024),
    )
}
# fmt: on


def get_variant(name: str) -> Query2LabelVariant:
    if name not in VARIANTS:
        raise ValueError(f"Unknown variant {name!r}. Known variants: {', '.join(VARIANTS)}.")
    return VARIANTS[name]


# variant name -> Query2LabelConfig arguments
PRESETS: dict[str, dict] = {
    name: config_arguments_from_official(variant.official_args()) for name, variant in VARIANTS.items()
}


def variant_config(name: str, **overrides) -> Query2LabelConfig:
    """The `Query2LabelConfig` of a paper variant, e.g. `variant_config("Q2L-SwinL-384", image_size=512)`; keyword
    arguments override single fields and go through the constructor's checks like the preset's own."""
    get_variant(name)
    known = {field.name for field in fields(Query2LabelConfig)} | {"num_labels"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"Query2LabelConfig has no field {unknown[0]!r}.")
    preset = dict(PRESETS[name])
    if "num_labels" in overrides and "id2label" not in overrides:  # the preset's COCO names no longer fit
        preset.pop("id2label", None)
        preset.pop("label2id", None)
    return Query2LabelConfig(**{**preset, **overrides})


def check_official_args_match(name: str, args: dict) -> None:
    """An official checkpoint's arguments must describe the variant it is converted as."""
    expected = get_variant(name).official_args()
    different = {
        key: (args.get(key), value) for key, value in expected.items() if key in args and args[key] != value
    }
    if different:
        raise ValueError(
            f"The checkpoint's config does not describe {name}: (checkpoint, variant) differ for {different}."
        )
