"""Held-out mosaic layouts: test splits that differ from the training mosaics in background, tint, object size,
overlap, contrast and noise, to measure whether a model learnt the objects or the look of its data.

Every layout draws its objects from the source's held-out split (Fashion-MNIST's test split), which training and
validation never use, and its classes independently (no outfits). `DEVELOPMENT_LAYOUTS` were looked at while the
training recipe was chosen; `SEALED_LAYOUTS` were built before and first evaluated by the run that reports them, so
they measure the recipe on conditions nobody tuned it on. Layouts stay sealed for one round: `pattern`, `crowded` and
`faint` were sealed until the first run of issue #18's recipe, `busy` and `washed_out` (which change several things at
once) until that issue's second round's final run, and all have been looked at since; `dim` and `mixed` were added
sealed before the third round's final run.
"""

import dataclasses
from dataclasses import dataclass

from .mosaic import BACKGROUND_STYLES, MosaicSpec


@dataclass(frozen=True)
class HeldOutLayout:
    """A named test layout: how its mosaics differ from the training ones, and how they are drawn."""

    description: str
    changes: dict  # MosaicSpec fields that differ from the training spec
    jpeg_quality: int = 85
    sealed: bool = False

    def spec(self, training_spec: MosaicSpec) -> MosaicSpec:
        return dataclasses.replace(training_spec, outfits=(), outfit_probability=0.0, **self.changes)


HELD_OUT_LAYOUTS = {
    "light": HeldOutLayout(
        "pale flat or gradient backgrounds with dark objects (the training mosaics' objects are mostly lighter than "
        "their background)",
        {"background_styles": ("light",)},
    ),
    "small_objects": HeldOutLayout(
        "up to 6 small objects, sides of 10 to 28 pixels (training: up to 4, 16 to 80), on dark or varied backgrounds",
        {"background_styles": ("dark", "varied"), "min_object_size": 10, "max_object_size": 28, "max_objects": 6},
    ),
    "noisy": HeldOutLayout(
        "varied backgrounds, blurred, strong pixel noise (standard deviation 18) and JPEG quality 30",
        {"background_styles": ("varied",), "blur_radius": 0.8, "noise_std": 18.0},
        jpeg_quality=30,
    ),
    "pattern": HeldOutLayout(
        "stripes, checks and dots behind the objects (periods of 4 to 20 pixels), any tint",
        {"background_styles": ("pattern",)},
    ),
    "crowded": HeldOutLayout(
        "large objects (sides of 48 to 100 pixels) that may cover 60% of each other",
        {"background_styles": ("dark", "varied"), "min_object_size": 48, "max_object_size": 100, "max_overlap": 0.6},
    ),
    "faint": HeldOutLayout(
        "low-contrast objects (their colour 60% of the way to the background's) on varied backgrounds",
        {"background_styles": ("varied",), "object_contrast": 0.4},
    ),
    "busy": HeldOutLayout(
        "coloured-noise backgrounds, up to 5 objects of 20 to 60 pixels that may cover 40% of each other, slight noise",
        {"background_styles": ("noise",), "min_object_size": 20, "max_object_size": 60, "max_objects": 5, "max_overlap": 0.4, "noise_std": 6.0},
    ),
    "washed_out": HeldOutLayout(
        "pale backgrounds with pale objects (their colour 45% of the way to the background's), blurred",
        {"background_styles": ("light",), "object_contrast": 0.55, "blur_radius": 1.0},
    ),
    "dim": HeldOutLayout(
        "dark backgrounds with dim objects (their colour half of the way to the background's), sides of 12 to 48 pixels, "
        "up to 5 of them, slight noise",
        {"background_styles": ("dark",), "object_contrast": 0.5, "min_object_size": 12, "max_object_size": 48, "max_objects": 5, "noise_std": 4.0},
        sealed=True,
    ),
    "mixed": HeldOutLayout(
        "any background style, objects of 20 to 90 pixels that may cover half of each other, blurred, JPEG quality 50",
        {"background_styles": BACKGROUND_STYLES, "min_object_size": 20, "max_object_size": 90, "max_overlap": 0.5, "blur_radius": 0.5},
        jpeg_quality=50,
        sealed=True,
    ),
}
DEVELOPMENT_LAYOUTS = tuple(name for name, layout in HELD_OUT_LAYOUTS.items() if not layout.sealed)
SEALED_LAYOUTS = tuple(name for name, layout in HELD_OUT_LAYOUTS.items() if layout.sealed)
LAYOUT_SPLIT_PREFIX = "layout_"


def layout_split_name(name: str) -> str:
    """The dataset split holding layout `name`'s mosaics."""
    return f"{LAYOUT_SPLIT_PREFIX}{name}"


def held_out_layout(name: str) -> HeldOutLayout:
    if name not in HELD_OUT_LAYOUTS:
        raise ValueError(f"Unknown held-out layout {name!r}: choose from {list(HELD_OUT_LAYOUTS)}.")
    return HELD_OUT_LAYOUTS[name]
