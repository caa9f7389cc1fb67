"""Build and document a mosaic dataset (the logic behind `scripts/build_mosaic_dataset.py`)."""

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from ..data.labels import FASHION_MNIST_LABELS
from .layouts import held_out_layout, layout_split_name
from .mosaic import (
    MOSAIC_AREA_THRESHOLDS,
    MosaicSpec,
    build_mosaics,
    load_fashion_mnist,
    save_mosaic_splits,
    to_grayscale_array,
)


def _source(args, split: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    split = split or args.dataset_split
    if args.dataset_name is None:
        if args.fashion_mnist_dir is None:
            raise ValueError("Pass --fashion_mnist_dir (the folder of Fashion-MNIST's idx files) or --dataset_name.")
        images, labels = load_fashion_mnist(args.fashion_mnist_dir, split)
        return images, labels, list(FASHION_MNIST_LABELS), f"Fashion-MNIST ({split} split)"
    from datasets import ClassLabel

    from ..data.loading import load_raw_datasets

    splits = load_raw_datasets(args.dataset_name, args.dataset_config_name)
    if split not in splits:
        raise ValueError(f"No split {split!r} in {args.dataset_name} (splits: {list(splits)}).")
    dataset = splits[split]
    feature = dataset.features.get(args.label_column_name)
    if not isinstance(feature, ClassLabel):
        raise ValueError(
            f"Column {args.label_column_name!r} of {args.dataset_name} is not a ClassLabel; mosaics need a "
            "single-label dataset (pass --label_column_name)."
        )
    images = np.stack([to_grayscale_array(image) for image in dataset[args.image_column_name]])
    return images, np.asarray(dataset[args.label_column_name]), feature.names, f"{args.dataset_name} ({split} split)"


def build_mosaic_dataset(args) -> dict:
    """Draw train and validation mosaics from disjoint parts of the source split; write parquet and a card."""
    layouts = list(args.held_out_layouts or []) if args.num_per_layout > 0 else []
    for name in layouts:
        held_out_layout(name)  # an unknown name stops here, before anything is drawn or written
    if args.output_dir is None:
        raise ValueError("Pass --output_dir: the folder to write the dataset into (e.g. outputs/my-mosaics).")
    output_dir = Path(args.output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()) and not getattr(args, "overwrite_output_dir", False):
        raise ValueError(
            f"{output_dir} is not empty: pass another --output_dir, or --overwrite_output_dir true to replace the "
            "dataset in it (its parquet files and card)."
        )
    images, labels, names, source = _source(args)
    order = np.random.default_rng(args.seed).permutation(len(images))
    cut = len(images) * 5 // 6  # validation mosaics never reuse a training object
    spec = MosaicSpec(
        canvas_size=args.canvas_size,
        min_object_size=args.min_object_size,
        max_object_size=args.max_object_size,
        max_objects=args.max_objects,
        outfits=() if args.dataset_name else MosaicSpec.outfits,
        outfit_probability=args.outfit_probability,
        varied_background_probability=args.varied_background_probability,
    )
    encoding = dict(image_format=args.image_format, jpeg_quality=args.jpeg_quality)
    splits = {}
    for split, pool, count, seed in [
        ("train", order[:cut], args.num_train, args.seed),
        ("validation", order[cut:], args.num_validation, args.seed + 1),
    ]:
        splits[split] = build_mosaics(images[pool], labels[pool], count, spec, seed=seed, **encoding)
    if args.out_of_layout_split and args.out_of_layout_split.lower() != "none" and (args.num_out_of_layout > 0 or layouts):
        held_out_images, held_out_labels, _, _ = _source(args, args.out_of_layout_split)
        if args.num_out_of_layout > 0:
            # another layout, from images no other split uses: every background varied, any tint, independent classes
            other_layout = dataclasses.replace(spec, outfits=(), outfit_probability=0.0, varied_background_probability=1.0)
            splits["out_of_layout"] = build_mosaics(
                held_out_images, held_out_labels, args.num_out_of_layout, other_layout, seed=args.seed + 2, **encoding
            )
        for offset, name in enumerate(layouts):
            layout = held_out_layout(name)
            splits[layout_split_name(name)] = build_mosaics(
                held_out_images, held_out_labels, args.num_per_layout, layout.spec(spec), seed=args.seed + 3 + offset,
                image_format=args.image_format, jpeg_quality=layout.jpeg_quality if args.image_format == "JPEG" else args.jpeg_quality,
            )  # fmt: skip
    for stale in (output_dir / "data").glob("*.parquet"):  # an earlier build's splits this one may not write again
        stale.unlink()
    paths = save_mosaic_splits(splits, names, args.output_dir)
    card = mosaic_dataset_card(splits, names, source, spec, args)
    (Path(args.output_dir) / "README.md").write_text(card, encoding="utf-8")
    return paths


def _statistics(records: list[dict], names: list[str], spec: MosaicSpec) -> str:
    label_counts = Counter(label for record in records for label in record["labels"])
    objects = [box for record in records for box in record["objects"]["bbox"]]
    areas = np.array([w * h for _, _, w, h in objects])
    small, large = MOSAIC_AREA_THRESHOLDS
    per_image = Counter(len(record["objects"]["category"]) for record in records)
    rows = "\n".join(f"| {name} | {label_counts.get(i, 0)} |" for i, name in enumerate(names))
    return (
        f"| label | images |\n| --- | --- |\n{rows}\n\n"
        f"Objects per image: {dict(sorted(per_image.items()))}. Object box side (square root of its area): "
        f"min {np.sqrt(areas.min()):.0f}, median {np.sqrt(np.median(areas)):.0f}, max {np.sqrt(areas.max()):.0f} px; "
        f"{np.mean(areas < small):.0%} small (area < {small}), {np.mean((areas >= small) & (areas < large)):.0%} "
        f"medium, {np.mean(areas >= large):.0%} large (area >= {large})."
    )


def _held_out_layouts_section(splits: dict, args) -> str:
    names = [name for name in args.held_out_layouts or [] if layout_split_name(name) in splits]
    if not names:
        return ""
    rows = "\n".join(
        f"| `{layout_split_name(name)}` | {len(splits[layout_split_name(name)])} | {held_out_layout(name).description} | "
        f"{'sealed' if held_out_layout(name).sealed else 'development'} |"
        for name in names
    )
    return f"""
## Held-out layout splits
Each `layout_*` split changes the look of the mosaics in one way the training mosaics never show; like
`out_of_layout`, its objects come from the {args.out_of_layout_split!r} split of the source and its classes are drawn
independently. `development` layouts were looked at while the training recipe was chosen; `sealed` ones were first
evaluated by the run that reports them.

| split | mosaics | how it differs | use |
| --- | --- | --- | --- |
{rows}
"""


def mosaic_dataset_card(splits, names, source, spec, args) -> str:
    small, large = MOSAIC_AREA_THRESHOLDS
    is_fashion = args.dataset_name is None
    licence = "mit" if is_fashion else "other"
    title = "Fashion-MNIST mosaics" if is_fashion else f"Mosaics of {args.dataset_name}"
    data_files = "\n".join(f"  - split: {name}\n    path: data/{name}-*.parquet" for name in splits)
    varied = round(100 * spec.varied_background_probability)
    outfits = round(100 * spec.outfit_probability) if spec.outfits else 0
    out_of_layout = ""
    if "out_of_layout" in splits:
        out_of_layout = f"""
## The out-of-layout test split
`out_of_layout` ({len(splits["out_of_layout"])} mosaics) tests whether a model learnt the objects rather than the look
of the training mosaics. Its objects come from {args.out_of_layout_split!r} split of the source, which train and
validation never use; every mosaic has a varied background (any colour and brightness: flat, a gradient or a smooth
texture, with pixel noise), objects of any tint (darker than the background included), and classes drawn
independently of each other (no outfits). Evaluate on it with `scripts/evaluate_model.py --split out_of_layout`.
"""
    out_of_layout += _held_out_layouts_section(splits, args)
    return f"""---
license: {licence}
pretty_name: {title}
task_categories:
- image-classification
tags:
- multi-label-image-classification
- synthetic
size_categories:
- 1K<n<10K
object_size_area_thresholds:
- {small}
- {large}
configs:
- config_name: default
  data_files:
{data_files}
---

# {title}

A small multi-label image classification set: {spec.canvas_size} x {spec.canvas_size} RGB canvases holding 1 to
{spec.max_objects} objects from {source}, each tinted, scaled to a side between {spec.min_object_size} and
{spec.max_object_size} pixels (small, medium and large objects all occur) and pasted with limited overlap.
{varied}% of the train and validation mosaics have a varied background (any colour and brightness: flat, a gradient
or a smooth texture, with pixel noise) and objects of any tint; the others a dark background and bright objects.
{f"Classes co-occur in outfits (casual, summer, winter, office, weekend) in {outfits}% of the mosaics; the other mosaics draw their classes independently." if outfits else "Classes are drawn independently."}
Train and validation mosaics draw their objects from disjoint parts of the source split.

Built with `python scripts/build_mosaic_dataset.py --num_train {args.num_train} --num_validation {args.num_validation} --num_out_of_layout {args.num_out_of_layout} --seed {args.seed}`
from the Query2Label package ({args.image_format}{f", quality {args.jpeg_quality}" if args.image_format == "JPEG" else ""}).

## Fields
- `image`: the mosaic ({args.image_format}).
- `labels`: the classes present, a list of class ids (`List(ClassLabel)`).
- `objects`: COCO-style boxes, `bbox` as `[x, y, width, height]` in pixels and `category` per object.

## Label statistics (train, {len(splits["train"])} mosaics; validation, {len(splits["validation"])})
{_statistics(splits["train"], names, spec)}
{out_of_layout}
For the object-size analysis use area thresholds 24^2 and 48^2 pixels (`object_size_area_thresholds` above, which
`scripts/train.py` and `scripts/evaluate_model.py` read): COCO's 32^2 and 96^2 leave almost no large object on a {spec.canvas_size}-pixel canvas.

## Source and licence
{"Fashion-MNIST by Zalando SE (Xiao, Rasul and Vollgraf, 2017), MIT licence, from the Debian package `dataset-fashion-mnist`. The mosaics are released under the same MIT licence." if is_fashion else f"Derived from {args.dataset_name}: its licence applies."}
"""
