"""Evaluate a saved model on a dataset split (the logic behind `scripts/evaluate.py`)."""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.labels import detect_label_format, parse_label_names, resolve_label_column
from ..data.loading import load_coco_instances, load_raw_datasets, prepare_split
from ..data.transforms import MultiLabelImageDataset, collate_multilabel
from .attention_maps import LocalizationCounts, add_image, label_attention_maps, localization_summary, upsample_maps
from .predict import load_classifier
from .report import (
    area_thresholds_for,
    boxes_by_label,
    labels_in_model_order,
    object_label_mapper,
    report_for_split,
    report_to_markdown,
)
from .thresholds import fit_label_thresholds

logger = logging.getLogger(__name__)


@dataclass
class EvaluationArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub id, local folder or parquet file."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    split: str = field(default="validation", metadata={"help": "Split to evaluate."})
    coco_annotations: str | None = field(default=None, metadata={"help": "COCO instances JSON instead of a dataset."})
    coco_image_dir: str | None = field(default=None, metadata={"help": "Image folder of --coco_annotations."})
    image_column_name: str = field(default="image", metadata={"help": "Image column."})
    label_column_name: str | None = field(default=None, metadata={"help": "Label column (default: auto)."})
    label_format: str = field(default="auto", metadata={"help": "auto, ids, names, multi_hot or objects."})
    class_names: str | None = field(default=None, metadata={"help": "Names of integer class ids (file or list)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate the first N samples only."})
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: CUDA when present)."})
    threshold: float = field(
        default=0.5, metadata={"help": "One threshold for the CP/CR/OP/OR metrics (also reported at the model's per-label thresholds)."}
    )
    fit_thresholds: bool = field(
        default=False,
        metadata={"help": "Refit the per-label thresholds on this split (F1-maximising) and save them into the model folder's config."},
    )
    area_thresholds: list[int] | None = field(
        default=None,
        metadata={"help": "Box areas splitting small/medium/large (default: the dataset card's, else COCO's 1024 9216)."},
    )
    skip_bad_samples: bool = field(default=False, metadata={"help": "Drop (and count) bad samples."})
    allow_empty_labels: bool = field(default=False, metadata={"help": "Keep samples without labels."})
    localization: bool = field(
        default=False,
        metadata={"help": "Also measure where the label queries look (pointing game, attention mass in boxes); needs boxes."},
    )
    attention_layer: int = field(default=-1, metadata={"help": "Decoder layer of the maps for --localization (-1: last)."})
    through_encoder: bool = field(
        default=False, metadata={"help": "Carry the maps back through the encoder's self-attention (rollout)."}
    )
    attention_head: int | None = field(
        default=None, metadata={"help": "Measure one attention head's maps instead of the mean over heads."}
    )
    plots: str | None = field(
        default=None, metadata={"help": "Write evaluation plots (PR curves, AP per label, mAP by size, F1 vs threshold) here."}
    )
    output: str | None = field(default=None, metadata={"help": "Write the report as JSON here."})
    markdown: str | None = field(default=None, metadata={"help": "Write the Markdown tables here."})


@torch.no_grad()
def predict_scores(model, dataset, batch_size: int = 64, num_workers: int = 0, progress: bool = True) -> np.ndarray:
    """Sigmoid scores `(num_images, num_labels)` for a dataset yielding `pixel_values`, with a progress bar."""
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_multilabel
    )
    scores = []
    with tqdm(total=len(dataset), unit="image", desc="Evaluating", disable=not progress) as bar:
        for batch in loader:
            pixels = batch["pixel_values"].to(device, model.dtype)
            scores.append(torch.sigmoid(model(pixel_values=pixels).logits.float()).cpu())
            bar.update(len(pixels))
    return torch.cat(scores).numpy()


@torch.no_grad()
def localization_for_split(
    model,
    processor,
    split,
    encoder,
    image_column: str,
    label_names: list[str],
    layer: int = -1,
    through_encoder: bool = False,
    batch_size: int = 32,
    progress: bool = True,
    head: int | None = None,
) -> dict:
    """Pointing game and attention mass in boxes of each present label's map (see `attention_maps`), per label and
    overall, with the chance level of a uniform map, on a prepared split with an `objects` column."""
    from tqdm.auto import tqdm

    from ..data.loading import open_image, to_rgb

    if "objects" not in split.dataset.features:
        raise ValueError("--localization needs boxes: the split has no `objects` column (COCO-style bbox + category).")
    category_to_label = object_label_mapper(encoder, label_names)
    device = next(model.parameters()).device
    counts = LocalizationCounts.zeros(len(label_names))
    dataset = split.dataset
    with tqdm(total=len(dataset), unit="image", desc="Localisation", disable=not progress) as bar:
        for start in range(0, len(dataset), batch_size):
            rows = dataset[start : start + batch_size]
            images = [to_rgb(open_image(value)) for value in rows[image_column]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device, model.dtype)
            attention = label_attention_maps(model, pixels, layer=layer, through_encoder=through_encoder, head=head)
            maps = upsample_maps(attention.maps, tuple(pixels.shape[-2:]))
            for image, image_maps, annotation in zip(images, maps, rows["objects"]):
                add_image(counts, image_maps, boxes_by_label(annotation, category_to_label), (image.height, image.width))
            bar.update(len(images))
    summary = localization_summary(counts, label_names)
    summary.update({"layer": layer, "through_encoder": through_encoder, "head": head})
    return summary


def localization_markdown(summary: dict) -> str:
    """The localisation summary as a Markdown table (percent)."""
    source = "rolled out through the encoder" if summary.get("through_encoder") else "cross-attention"
    lines = [
        f"Localisation ({summary['pairs']} image-label pairs with boxes; decoder layer {summary['layer']}, "
        + ("mean over heads" if summary.get("head") is None else f"head {summary['head']}")
        + f", {source}):",
        "",
        "| label | pairs | pointing game | attention mass in boxes | chance (box share of the image) |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows = [*summary["per_label"], {"label": "**all**", **{k: summary[k] for k in ("pairs", "pointing_game", "mass_in_boxes", "chance")}}]
    for row in rows:
        cells = ["n/a" if row[key] is None else f"{100 * row[key]:.1f}" for key in ("pointing_game", "mass_in_boxes", "chance")]
        lines.append(f"| {row['label']} | {row['pairs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_label_thresholds(model_dir: str, thresholds: list[float]) -> None:
    """Write fitted thresholds into a saved model folder's config (the pipeline and predict.py read them there)."""
    from ..model import Query2LabelConfig

    if not Path(model_dir, "config.json").is_file():
        raise ValueError(f"--fit_thresholds saves into the model's config: {model_dir} is not a local model folder.")
    config = Query2LabelConfig.from_pretrained(model_dir)
    config.label_thresholds = [float(value) for value in thresholds]
    config.save_pretrained(model_dir)
    logger.info("Saved %d fitted label thresholds into %s/config.json.", len(thresholds), model_dir)


def _load_split(args):
    if args.coco_annotations:
        return load_coco_instances(args.coco_annotations, args.coco_image_dir or ".")
    if not args.dataset_name:
        raise ValueError("Pass --dataset_name or --coco_annotations.")
    raw = load_raw_datasets(args.dataset_name, args.dataset_config_name)
    if args.split not in raw:
        raise ValueError(f"No split {args.split!r} in {args.dataset_name} (splits: {list(raw)}).")
    return raw[args.split]


def run_evaluation(args: EvaluationArguments) -> dict:
    model, processor = load_classifier(args.model, args.device)
    model_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    dataset = _load_split(args)
    if args.max_eval_samples is not None:
        dataset = dataset.select(range(min(args.max_eval_samples, len(dataset))))
    label_column = resolve_label_column(dataset, args.label_column_name)
    encoder = detect_label_format(
        dataset, label_column, parse_label_names(args.class_names), args.label_format, args.allow_empty_labels
    )
    split = prepare_split(
        dataset, encoder, args.image_column_name, label_column, skip_bad_samples=args.skip_bad_samples, split_name=args.split
    )
    scores = predict_scores(model, MultiLabelImageDataset(split, args.image_column_name, processor), args.batch_size)
    label_thresholds = model.config.label_thresholds
    if args.fit_thresholds:
        label_thresholds = fit_label_thresholds(scores, labels_in_model_order(split, encoder, model_names))
        save_label_thresholds(args.model, label_thresholds)
    area_thresholds = area_thresholds_for(args.dataset_name, args.area_thresholds)
    report = report_for_split(scores, split, encoder, model_names, area_thresholds, args.threshold, label_thresholds)
    report.update({"model": args.model, "dataset": args.dataset_name or args.coco_annotations, "eval_split": args.split})
    if args.fit_thresholds:
        report["label_thresholds_fitted_on"] = f"{report['dataset']} ({args.split} split)"
    markdown = report_to_markdown(report)
    if args.localization:
        report["localization"] = localization_for_split(
            model, processor, split, encoder, args.image_column_name, model_names, args.attention_layer,
            args.through_encoder, args.batch_size, head=args.attention_head,
        )
        markdown += "\n\n" + localization_markdown(report["localization"])
    if args.plots:
        from .plots import write_evaluation_plots

        labels = labels_in_model_order(split, encoder, model_names)
        report["plots"] = write_evaluation_plots(args.plots, scores, labels, model_names, report, label_thresholds)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n")
    print(markdown)
    return report
