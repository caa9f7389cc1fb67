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
from .predict import load_classifier
from .report import area_thresholds_for, report_for_split, report_to_markdown

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
    threshold: float = field(default=0.5, metadata={"help": "Threshold of the CP/CR/OP/OR metrics."})
    area_thresholds: list[int] | None = field(
        default=None,
        metadata={"help": "Box areas splitting small/medium/large (default: the dataset card's, else COCO's 1024 9216)."},
    )
    skip_bad_samples: bool = field(default=False, metadata={"help": "Drop (and count) bad samples."})
    allow_empty_labels: bool = field(default=False, metadata={"help": "Keep samples without labels."})
    output: str | None = field(default=None, metadata={"help": "Write the report as JSON here."})
    markdown: str | None = field(default=None, metadata={"help": "Write the Markdown tables here."})


@torch.no_grad()
def predict_scores(model, dataset, batch_size: int = 64, num_workers: int = 0) -> np.ndarray:
    """Sigmoid scores `(num_images, num_labels)` for a dataset yielding `pixel_values`."""
    model.eval()
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_multilabel
    )
    scores = [torch.sigmoid(model(pixel_values=batch["pixel_values"].to(device)).logits.float()).cpu() for batch in loader]
    return torch.cat(scores).numpy()


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
    model, processor = load_classifier(args.model)
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
    thresholds = area_thresholds_for(args.dataset_name, args.area_thresholds)
    report = report_for_split(scores, split, encoder, model_names, thresholds, args.threshold)
    report.update({"model": args.model, "dataset": args.dataset_name or args.coco_annotations, "eval_split": args.split})
    markdown = report_to_markdown(report)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n")
    print(markdown)
    return report
