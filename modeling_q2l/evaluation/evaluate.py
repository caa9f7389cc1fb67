"""Evaluate a saved model on a dataset split (the logic behind `scripts/evaluate_model.py`)."""

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..data.splits import DatasetSpec, SplitPreparer, dataset_description, load_extra_splits, load_split
from ..data.transforms import MultiLabelImageDataset, collate_multilabel, processor_at_size
from .attention_maps import LocalizationCounts, add_image, label_attention_maps, localization_summary, upsample_maps
from .final_report import FinalReportRequest, final_report
from .predict import load_classifier
from .report import EvaluationReport, area_thresholds_for, boxes_by_label, object_label_mapper, report_to_markdown

logger = logging.getLogger(__name__)


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


def run_evaluation(args, data_args: DatasetSpec) -> EvaluationReport:
    """Evaluate `args.model` on the split `data_args` names (`--eval_split_name`, alias `--split`) through the final
    report step that training uses; optionally refit and save the per-label thresholds, measure localisation and
    write the plots. `args` is an `EvaluationArguments`, `data_args` the shared `DataArguments`."""
    if args.image_size is not None and args.fit_thresholds:
        raise ValueError(
            "--fit_thresholds saves thresholds into the model folder, whose image processor keeps its own size: drop "
            "--image_size to fit them, or evaluate at --image_size without --fit_thresholds."
        )
    model, processor = load_classifier(args.model, args.device, args.dtype)
    processor = processor_at_size(processor, args.image_size, "--image_size")
    model_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    dataset = load_split(data_args)
    preparer = SplitPreparer.for_dataset(data_args, dataset)
    split = preparer.prepare(dataset, split_name=data_args.eval_split_name)
    request = FinalReportRequest(
        area_thresholds=area_thresholds_for(data_args.dataset_name, data_args.area_thresholds),
        threshold=args.threshold,
        fit_thresholds=args.fit_thresholds,
        extra_splits=load_extra_splits(data_args),
        figures_dir=Path(args.plots) if args.plots else None,
    )

    def predict(prepared):
        return predict_scores(model, MultiLabelImageDataset(prepared, preparer.image_column, processor), args.batch_size)

    report, _ = final_report(model, processor, split, preparer, predict, request)
    if args.fit_thresholds:
        save_label_thresholds(args.model, model.config.label_thresholds)
    report.model, report.dataset, report.eval_split = args.model, dataset_description(data_args), data_args.eval_split_name
    report.image_size = processor.size.height
    if args.fit_thresholds:
        report.label_thresholds_fitted_on = f"{report.dataset} ({data_args.eval_split_name} split)"
    markdown = report_to_markdown(report)
    if args.localization:
        report.localization = localization_for_split(
            model, processor, split, preparer.encoder, preparer.image_column, model_names, args.attention_layer,
            args.through_encoder, args.batch_size, head=args.attention_head,
        )
        markdown += "\n\n" + localization_markdown(report.localization)
    if args.output:
        Path(args.output).write_text(json.dumps(report.to_json(), indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n")
    print(markdown)
    return report
