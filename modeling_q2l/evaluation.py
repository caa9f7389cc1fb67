"""Evaluation of a multi-label model on a dataset: scores, every metric, per-label AP and mAP by object size."""

import numpy as np
import torch

from .data import OBJECT_LABEL_KEYS
from .metrics import average_precision_per_label, multilabel_metrics

COCO_AREA_THRESHOLDS = (32**2, 96**2)
SIZE_BUCKETS = ("small", "medium", "large")
SUMMARY_KEYS = ("mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3")  # fmt: skip


@torch.no_grad()
def predict_scores(model, dataset, batch_size: int = 64, num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores and labels for a dataset yielding `pixel_values` and `labels`."""
    from .data import collate_multilabel

    model.eval()
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_multilabel
    )
    scores, labels = [], []
    for batch in loader:
        logits = model(pixel_values=batch["pixel_values"].to(device)).logits
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(scores), np.concatenate(labels)


def largest_object_areas(objects: list[dict], category_to_label, num_labels: int) -> np.ndarray:
    """`(num_images, num_labels)` area of each label's largest box in each image (0 where the label is absent)."""
    areas = np.zeros((len(objects), num_labels))
    for row, annotation in enumerate(objects):
        for box, category in zip(annotation["bbox"], annotation[_category_key(annotation)]):
            label = category_to_label(category)
            areas[row, label] = max(areas[row, label], float(box[2]) * float(box[3]))
    return areas


def _category_key(annotation: dict) -> str:
    for key in OBJECT_LABEL_KEYS:
        if key in annotation:
            return key
    raise ValueError(f"Objects without a category list: {sorted(annotation)}.")


def map_by_object_size(scores, labels, areas, thresholds=COCO_AREA_THRESHOLDS) -> dict:
    """mAP restricted to objects of each size (the paper's Table 7): for bucket b a positive counts only when the
    label's largest object in the image falls in b; other positives are ignored, negatives stay negatives."""
    small, large = thresholds
    bucket = np.where(areas < small, 0, np.where(areas < large, 1, 2))
    results = {}
    for index, name in enumerate(SIZE_BUCKETS):
        restricted = np.where((labels == 1) & (bucket != index), -1, labels)
        ap, _ = average_precision_per_label(scores, restricted)
        evaluated = ~np.isnan(ap)
        results[f"mAP_{name}"] = float(ap[evaluated].mean()) if evaluated.any() else None
        results[f"num_objects_{name}"] = int(((labels == 1) & (bucket == index)).sum())
    return results


def evaluation_report(scores, labels, label_names, areas=None, area_thresholds=COCO_AREA_THRESHOLDS, threshold=0.5) -> dict:
    """Every metric, the per-label AP table and (with `areas`) mAP by object size, as one JSON-ready dict."""
    metrics = multilabel_metrics(scores, labels, threshold=threshold)
    per_label = [
        {"label": name, "AP": ap, "positives": int((labels[:, i] == 1).sum())}
        for i, (name, ap) in enumerate(zip(label_names, metrics.pop("AP")))
    ]
    report = {"num_images": int(len(scores)), "threshold": threshold, **metrics, "per_label": per_label}
    if areas is not None:
        report["area_thresholds"] = list(area_thresholds)
        report.update(map_by_object_size(scores, labels, areas, area_thresholds))
    return report


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def report_to_markdown(report: dict) -> str:
    """The report as Markdown tables (values in percent)."""
    lines = [
        f"Evaluated on {report['num_images']} images (threshold {report['threshold']}).",
        "",
        "| " + " | ".join(SUMMARY_KEYS) + " |",
        "|" + " --- |" * len(SUMMARY_KEYS),
        "| " + " | ".join(_percent(report.get(key)) for key in SUMMARY_KEYS) + " |",
    ]
    if "mAP_small" in report:
        lines += [
            "",
            f"mAP by object size (box area thresholds {report['area_thresholds'][0]} and {report['area_thresholds'][1]} px):",
            "",
            "| small | medium | large |",
            "| --- | --- | --- |",
            "| " + " | ".join(_percent(report[f"mAP_{name}"]) for name in SIZE_BUCKETS) + " |",
        ]
    lines += ["", "| label | AP | positives |", "| --- | --- | --- |"]
    lines += [f"| {row['label']} | {_percent(row['AP'])} | {row['positives']} |" for row in report["per_label"]]
    return "\n".join(lines)
