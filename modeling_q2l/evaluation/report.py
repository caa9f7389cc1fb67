"""Evaluation reports: every metric, per-label AP and mAP by object size, as JSON-ready dicts and Markdown.

Training (`training.main`) and `scripts/evaluate_model.py` both build their report with `report_for_split`, so they
agree on label order and on the object-size convention of the dataset (`area_thresholds_for`).
"""

import logging
from pathlib import Path

import numpy as np

from ..data.labels import LabelEncoder, object_category_key
from ..data.loading import PreparedSplit
from .metrics import average_precision_per_label, multilabel_metrics

logger = logging.getLogger(__name__)

COCO_AREA_THRESHOLDS = (32**2, 96**2)
SIZE_BUCKETS = ("small", "medium", "large")
THRESHOLD_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3")  # fmt: skip
SUMMARY_KEYS = ("mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3")  # fmt: skip


def largest_object_areas(objects: list[dict], category_to_label, num_labels: int) -> np.ndarray:
    """`(num_images, num_labels)` area of each label's largest box in each image (0 where the label is absent)."""
    areas = np.zeros((len(objects), num_labels))
    for row, annotation in enumerate(objects):
        for box, category in zip(annotation["bbox"], annotation[_category_key(annotation)]):
            label = category_to_label(category)
            areas[row, label] = max(areas[row, label], float(box[2]) * float(box[3]))
    return areas


def _category_key(annotation: dict) -> str:
    key = object_category_key(annotation)
    if key is None:
        raise ValueError(f"Objects without a category list: {sorted(annotation)}.")
    return key


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


def evaluation_report(
    scores,
    labels,
    label_names,
    areas=None,
    area_thresholds=COCO_AREA_THRESHOLDS,
    threshold=0.5,
    label_thresholds=None,
) -> dict:
    """Every metric, the per-label AP table and (with `areas`) mAP by object size, as one JSON-ready dict.

    The threshold metrics (CP ... OF1_top3) are at `threshold`; with `label_thresholds` (one per label) they are also
    given at those, under `at_label_thresholds`, and each label's row holds its threshold."""
    metrics = multilabel_metrics(scores, labels, threshold=threshold)
    per_label = [
        {"label": name, "AP": ap, "positives": int((labels[:, i] == 1).sum())}
        for i, (name, ap) in enumerate(zip(label_names, metrics.pop("AP")))
    ]
    report = {"num_images": int(len(scores)), "threshold": threshold, **metrics, "per_label": per_label}
    if label_thresholds is not None:
        at_thresholds = multilabel_metrics(scores, labels, threshold=np.asarray(label_thresholds))
        report["label_thresholds"] = [float(value) for value in label_thresholds]
        report["at_label_thresholds"] = {key: at_thresholds[key] for key in THRESHOLD_KEYS}
        for row, value in zip(per_label, label_thresholds):
            row["threshold"] = float(value)
    if areas is not None:
        report["area_thresholds"] = list(area_thresholds)
        report.update(map_by_object_size(scores, labels, areas, area_thresholds))
    return report


def area_thresholds_for(dataset_name: str | None, requested=None) -> tuple[int, int]:
    """The box areas splitting small / medium / large objects: `requested`, else the dataset card's
    `object_size_area_thresholds` (the embedded mosaics declare 24^2 and 48^2), else COCO's 32^2 and 96^2."""
    if requested:
        if len(requested) != 2 or not 0 < requested[0] < requested[1]:
            raise ValueError(f"area_thresholds must be two increasing areas (small/medium, medium/large), got {requested}.")
        return int(requested[0]), int(requested[1])
    declared = None
    local = Path(dataset_name or "").exists()
    card_path = Path(dataset_name or "") / "README.md"
    if dataset_name and (card_path.is_file() or not local):  # a local dataset's card is read from disk, never the Hub
        from huggingface_hub import DatasetCard

        try:
            card = DatasetCard.load(card_path if card_path.is_file() else dataset_name, repo_type="dataset")
            declared = card.data.to_dict().get("object_size_area_thresholds")
        except Exception as error:  # no card, or the Hub cannot be reached: fall back to COCO's convention
            logger.info("No object-size convention for %s (%s); using COCO's.", dataset_name, type(error).__name__)
    return area_thresholds_for(None, declared) if declared else COCO_AREA_THRESHOLDS


def labels_in_model_order(split: PreparedSplit, encoder: LabelEncoder, label_names: list[str]) -> np.ndarray:
    """The split's multi-hot labels (in `encoder.names` order) reordered into the model's `label_names` order."""
    if sorted(encoder.names) != sorted(label_names):
        raise ValueError(
            f"The dataset's labels {sorted(encoder.names)} differ from the model's {sorted(label_names)}: evaluate "
            "on data with the model's label set."
        )
    return split.labels[:, [encoder.names.index(name) for name in label_names]]


def object_label_mapper(encoder: LabelEncoder, label_names: list[str]):
    """A function from an object's category (name or id, as the split gives it) to the model's label index."""
    model_index = {name: label_names.index(name) for name in encoder.names}

    def category_to_label(category) -> int:
        return model_index[encoder.names[encoder.label_index(category)]]

    return category_to_label


def boxes_by_label(annotation: dict, category_to_label) -> dict[int, list]:
    """The boxes of one image's `objects` annotation, grouped by the model's label index."""
    grouped: dict[int, list] = {}
    for box, category in zip(annotation["bbox"], annotation[_category_key(annotation)]):
        grouped.setdefault(category_to_label(category), []).append([float(value) for value in box])
    return grouped


def report_for_split(
    scores: np.ndarray,
    split: PreparedSplit,
    encoder: LabelEncoder,
    label_names: list[str],
    area_thresholds=COCO_AREA_THRESHOLDS,
    threshold: float = 0.5,
    label_thresholds=None,
) -> dict:
    """The report of `scores` (`(num_images, num_labels)` in the order of `label_names`, the model's) on a prepared
    split whose labels follow `encoder.names`; mAP by object size when the split has boxes; the threshold metrics at
    `threshold` and, when given, at the per-label `label_thresholds`."""
    labels = labels_in_model_order(split, encoder, label_names)
    areas = None
    if "objects" in split.dataset.features:
        category_to_label = object_label_mapper(encoder, label_names)
        areas = largest_object_areas(split.dataset["objects"], category_to_label, len(label_names))
    report = evaluation_report(scores, labels, label_names, areas, area_thresholds, threshold, label_thresholds)
    report["skipped_samples"] = split.skipped
    return report


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def extra_splits_markdown(report: dict) -> list[str]:
    """Lines of a table of the other splits the final model was evaluated on (`extra_splits`), if any."""
    if not report.get("extra_splits"):
        return []
    lines = [
        "",
        "Other splits:",
        "",
        "| split | images | mAP | share of the evaluation split's mAP | mAP_voc | CF1 | OF1 | CF1 / OF1 at the per-label thresholds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["extra_splits"].items():
        at = row.get("at_label_thresholds", {})
        share = _percent(row["mAP"] / report["mAP"]) if row.get("mAP") is not None and report.get("mAP") else "n/a"
        lines.append(
            f"| {name} | {row['num_images']} | {_percent(row['mAP'])} | {share} | {_percent(row['mAP_voc'])} | "
            f"{_percent(row['CF1'])} | {_percent(row['OF1'])} | {_percent(at.get('CF1'))} / {_percent(at.get('OF1'))} |"
        )
    localization = report.get("localization")
    if localization:
        ratio = localization["pointing_game"] / localization["chance"] if localization.get("chance") else float("nan")
        lines += [
            "",
            f"Where the label queries look on {localization.get('split', 'the evaluation split')} ({localization['pairs']} image-label pairs with "
            f"boxes; decoder layer {localization['layer']}, mean over heads): the peak of a label's cross-attention "
            f"falls inside one of its boxes for {_percent(localization['pointing_game'])}% of the pairs (pointing "
            f"game), {_percent(localization['mass_in_boxes'])}% of the map's mass lies inside them, and a uniform map "
            f"scores {_percent(localization['chance'])}% on both (chance): {ratio:.1f} times chance.",
        ]
    return lines


def report_to_markdown(report: dict) -> str:
    """The report as Markdown tables (values in percent)."""
    lines = [
        f"Evaluated on {report['num_images']} images (threshold {report['threshold']}).",
        "",
        "| " + " | ".join(SUMMARY_KEYS) + " |",
        "|" + " --- |" * len(SUMMARY_KEYS),
        "| " + " | ".join(_percent(report.get(key)) for key in SUMMARY_KEYS) + " |",
    ]
    if "at_label_thresholds" in report:
        at_thresholds = report["at_label_thresholds"]
        lines += [
            "",
            "At the per-label thresholds (the label table gives each):",
            "",
            "| " + " | ".join(THRESHOLD_KEYS) + " |",
            "|" + " --- |" * len(THRESHOLD_KEYS),
            "| " + " | ".join(_percent(at_thresholds.get(key)) for key in THRESHOLD_KEYS) + " |",
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
    lines += extra_splits_markdown(report)
    with_thresholds = "label_thresholds" in report
    lines += ["", "| label | AP | positives |" + (" threshold |" if with_thresholds else ""), "|" + " --- |" * (3 + with_thresholds)]
    lines += [
        f"| {row['label']} | {_percent(row['AP'])} | {row['positives']} |" + (f" {row['threshold']:.3f} |" if with_thresholds else "")
        for row in report["per_label"]
    ]
    return "\n".join(lines)
