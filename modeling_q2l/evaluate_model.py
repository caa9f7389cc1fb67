"""Evaluate a saved model on a dataset (the logic behind `scripts/evaluate.py`)."""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path


from .data import (
    MultiLabelImageDataset,
    PreparedSplit,
    build_transforms,
    detect_label_format,
    load_coco_instances,
    load_raw_datasets,
    parse_label_names,
    prepare_split,
    resolve_label_column,
)
from .evaluation import COCO_AREA_THRESHOLDS, evaluation_report, largest_object_areas, predict_scores, report_to_markdown
from .inference import load_classifier

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
        default=None, metadata={"help": "Box areas splitting small/medium/large (default COCO's 1024 9216)."}
    )
    skip_bad_samples: bool = field(default=False, metadata={"help": "Drop (and count) bad samples."})
    allow_empty_labels: bool = field(default=False, metadata={"help": "Keep samples without labels."})
    output: str | None = field(default=None, metadata={"help": "Write the report as JSON here."})
    markdown: str | None = field(default=None, metadata={"help": "Write the Markdown tables here."})


def _load_split(args):
    if args.coco_annotations:
        return load_coco_instances(args.coco_annotations, args.coco_image_dir or ".")
    if not args.dataset_name:
        raise ValueError("Pass --dataset_name or --coco_annotations.")
    raw = load_raw_datasets(args.dataset_name, args.dataset_config_name)
    if args.split not in raw:
        raise ValueError(f"No split {args.split!r} in {args.dataset_name} (splits: {list(raw)}).")
    return raw[args.split]


def align_to_model(split: PreparedSplit, dataset_names: list[str], model_names: list[str]) -> PreparedSplit:
    """Reorder the dataset's label columns into the model's label order; the two label sets must be equal."""
    if sorted(dataset_names) != sorted(model_names):
        raise ValueError(
            f"The dataset's labels {sorted(dataset_names)} differ from the model's {sorted(model_names)}: evaluate "
            "on data with the model's label set."
        )
    order = [dataset_names.index(name) for name in model_names]
    return PreparedSplit(split.dataset, split.labels[:, order], split.skipped)


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
    split = align_to_model(split, encoder.names, model_names)
    size = processor.size["height"]
    transform = build_transforms(size, processor.image_mean, processor.image_std, train=False)
    scores, labels = predict_scores(model, MultiLabelImageDataset(split, args.image_column_name, transform), args.batch_size)

    areas = None
    if "objects" in split.dataset.features:
        to_model = {name: model_names.index(name) for name in encoder.names}

        def category_to_label(category):
            return to_model[encoder.names[encoder.label_index(category)]]

        areas = largest_object_areas(split.dataset["objects"], category_to_label, len(model_names))
    thresholds = tuple(args.area_thresholds or COCO_AREA_THRESHOLDS)
    report = evaluation_report(scores, labels, model_names, areas, thresholds, args.threshold)
    report.update(
        {
            "model": args.model,
            "dataset": args.dataset_name or args.coco_annotations,
            "eval_split": args.split,
            "skipped_samples": split.skipped,
        }
    )
    markdown = report_to_markdown(report)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n")
    print(markdown)
    return report
