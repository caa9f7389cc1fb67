"""The architectures of the Query2Label models of the paper (Liu et al., 2021, Table 1 and the official releases),
as registered by their backbone families (`families/*.py`, `family.register_family`).

`PRESETS` maps each variant name to the `Query2LabelConfig` arguments of the official model (head: 1 encoder and 2
decoder layers, 4 heads, feed-forward 8192, hidden size equal to the backbone's channels; COCO's 80 labels), the
same arguments the converter derives from an official checkpoint's JSON. `variant_config(name, **overrides)` passes
them, with any overrides, through the config's constructor. What is known of each variant's weights (paper mAP,
release, normalisation, licence) is in `pretrained.py`.
"""

from collections.abc import Iterator, Mapping
from dataclasses import fields

from ..model.configuration_query2label import Query2LabelConfig
from .family import VARIANTS, Query2LabelVariant
from .official_backbones import config_arguments_from_official

__all__ = ["PRESETS", "VARIANTS", "Query2LabelVariant", "check_official_args_match", "get_variant", "variant_config"]


def get_variant(name: str) -> Query2LabelVariant:
    if name not in VARIANTS:
        raise ValueError(f"Unknown variant {name!r}. Known variants: {', '.join(sorted(VARIANTS))}.")
    return VARIANTS[name]


class _Presets(Mapping):
    """variant name -> Query2LabelConfig arguments, for every registered variant (derived when read)."""

    def __getitem__(self, name: str) -> dict:
        return config_arguments_from_official(get_variant(name).official_args())

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(VARIANTS))

    def __len__(self) -> int:
        return len(VARIANTS)


PRESETS: Mapping[str, dict] = _Presets()


def variant_config(name: str, **overrides) -> Query2LabelConfig:
    """The `Query2LabelConfig` of a paper variant, e.g. `variant_config("Q2L-SwinL-384", image_size=512)`; keyword
    arguments override single fields and go through the constructor's checks like the preset's own."""
    preset = dict(PRESETS[name])
    known = {field.name for field in fields(Query2LabelConfig)} | {"num_labels"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"Query2LabelConfig has no field {unknown[0]!r}.")
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
