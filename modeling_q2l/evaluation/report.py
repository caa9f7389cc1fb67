"""Evaluation reports: one type (`EvaluationReport`) with every metric, per-label AP, mAP by object size, the other
splits' summaries, localisation, figures and what was evaluated; written as `eval_results.json` (`to_json`, read back
by `from_json`) and rendered as Markdown by one renderer (`report_to_markdown` and the tables it is made of, which the
model cards use too).

Training (`training.main`) and `scripts/evaluate_model.py` both build their report with `report_for_split`, so they
agree on label order and on the object-size convention of the dataset (`area_thresholds_for`).
"""

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..data.labels import LabelEncoder, object_category_key
from ..data.splits import PreparedSplit
from .metrics import average_precision_per_label, multilabel_metrics

logger = logging.getLogger(__name__)

COCO_AREA_THRESHOLDS = (32**2, 96**2)


@dataclass
class ThresholdMetrics:
    """The metrics that need a decision threshold (fractions in [0, 1]; None where undefined): per-label (`C*`) and
    overall (`O*`) precision, recall and F1, and the same among each image's three best scores (`*_top3`)."""

    CP: float | None = None
    CR: float | None = None
    CF1: float | None = None
    OP: float | None = None
    OR: float | None = None
    OF1: float | None = None
    CP_top3: float | None = None
    CR_top3: float | None = None
    CF1_top3: float | None = None
    OP_top3: float | None = None
    OR_top3: float | None = None
    OF1_top3: float | None = None


@dataclass
class LabelResult:
    label: str
    AP: float | None  # None: no positive example in the split
    positives: int
    threshold: float | None = None  # the label's own decision threshold, when the model has them


@dataclass
class ObjectSizeResults:
    """mAP restricted to objects of each size (the paper's Table 7), with the box areas that split the sizes."""

    area_thresholds: tuple[int, int]
    mAP_small: float | None = None
    mAP_medium: float | None = None
    mAP_large: float | None = None
    num_objects_small: int = 0
    num_objects_medium: int = 0
    num_objects_large: int = 0


@dataclass
class SplitSummary:
    """Another split the final model was evaluated on, in brief."""

    num_images: int | None = None
    mAP: float | None = None
    mAP_voc: float | None = None
    CF1: float | None = None
    OF1: float | None = None
    mAP_small: float | None = None
    mAP_medium: float | None = None
    mAP_large: float | None = None
    CF1_at_label_thresholds: float | None = None
    OF1_at_label_thresholds: float | None = None


@dataclass
class RunFacts:
    """How a training run went, for its final report and card (absent from `scripts/evaluate_model.py`'s)."""

    weights: str  # "regular" or "ema": the weights saved
    backbone_weights: str  # where the backbone's weights came from
    train_runtime_s: float
    total_runtime_s: float
    torch_threads: int
    world_size: int = 1
    distributed_type: str = "NO"
    streamed: bool = False
    final_gamma_neg: float | None = None
    label_transfer: dict | None = None  # of a fine-tuning run: {"source", "matched", "new", "dropped"}
    trainable_parameters: int | None = None
    skipped_training_samples: dict = field(default_factory=dict)
    hub_url: str | None = None


@dataclass
class EvaluationReport:
    """A model's results on its evaluation split: what evaluation produces, `eval_results.json` holds (`to_json`),
    the printed summary and the model card show."""

    num_images: int
    threshold: float  # of `at_threshold`
    mAP: float | None
    mAP_voc: float | None
    at_threshold: ThresholdMetrics
    per_label: list[LabelResult]
    label_thresholds: list[float] | None = None
    at_label_thresholds: ThresholdMetrics | None = None  # at the per-label `label_thresholds`
    by_size: ObjectSizeResults | None = None  # where the split has boxes
    skipped_samples: dict = field(default_factory=dict)
    extra_splits: dict[str, SplitSummary] = field(default_factory=dict)
    localization: dict | None = None  # `evaluation.evaluate.localization_for_split`
    figures: dict[str, str] = field(default_factory=dict)  # figure name -> path
    # what was evaluated
    dataset: str | None = None
    eval_split: str | None = None
    model: str | None = None
    image_size: int | None = None
    label_thresholds_fitted_on: str | None = None
    run: RunFacts | None = None  # a training run's final report

    def summary(self) -> SplitSummary:
        sizes = self.by_size or ObjectSizeResults((0, 0))
        at_labels = self.at_label_thresholds or ThresholdMetrics()
        return SplitSummary(
            self.num_images, self.mAP, self.mAP_voc, self.at_threshold.CF1, self.at_threshold.OF1, sizes.mAP_small,
            sizes.mAP_medium, sizes.mAP_large, at_labels.CF1, at_labels.OF1,
        )  # fmt: skip

    def to_json(self) -> dict:
        """The report as `eval_results.json` holds it: metrics at the top level, as in every release before."""
        data = {"num_images": self.num_images, "threshold": self.threshold, "mAP": self.mAP, "mAP_voc": self.mAP_voc}
        data.update(asdict(self.at_threshold))
        data["per_label"] = [{key: value for key, value in asdict(row).items() if key != "threshold" or value is not None} for row in self.per_label]
        if self.label_thresholds is not None:
            data["label_thresholds"] = list(self.label_thresholds)
        if self.at_label_thresholds is not None:
            data["at_label_thresholds"] = asdict(self.at_label_thresholds)
        if self.by_size is not None:
            data.update(asdict(self.by_size))
            data["area_thresholds"] = list(self.by_size.area_thresholds)
        data["skipped_samples"] = self.skipped_samples
        data["extra_splits"] = {name: _summary_json(summary) for name, summary in self.extra_splits.items()}
        if self.localization is not None:
            data["localization"] = self.localization
        data["figures"] = dict(self.figures)
        for key in ("dataset", "eval_split", "model", "image_size", "label_thresholds_fitted_on"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.run is not None:
            run = asdict(self.run)
            data["skipped_samples"] = {"train": run.pop("skipped_training_samples"), "evaluation": self.skipped_samples}
            data.update({key: value for key, value in run.items() if value is not None or key == "label_transfer"})
        return data

    @classmethod
    def from_json(cls, data: dict) -> "EvaluationReport":
        """A report from `eval_results.json` (this package's `scripts/train.py` or `scripts/evaluate_model.py`)."""
        if not isinstance(data, dict) or "mAP" not in data:
            raise ValueError("not a report of scripts/evaluate_model.py or scripts/train.py (it has no mAP)")
        by_size = None
        if data.get("area_thresholds") is not None or data.get("mAP_small") is not None:
            thresholds = tuple(data.get("area_thresholds") or COCO_AREA_THRESHOLDS)
            by_size = ObjectSizeResults(thresholds, **_known(ObjectSizeResults, data, skip={"area_thresholds"}))
        skipped = data.get("skipped_samples") or {}
        run = None
        if "weights" in data and "train_runtime_s" in data:
            run = RunFacts(**_known(RunFacts, data, skip={"skipped_training_samples"}), skipped_training_samples=skipped.get("train", {}))
            skipped = skipped.get("evaluation", {})
        return cls(
            num_images=data.get("num_images"),
            threshold=data.get("threshold", 0.5),
            mAP=data["mAP"],
            mAP_voc=data.get("mAP_voc"),
            at_threshold=ThresholdMetrics(**_known(ThresholdMetrics, data)),
            per_label=[LabelResult(**_known(LabelResult, row)) for row in data.get("per_label", [])],
            label_thresholds=data.get("label_thresholds"),
            at_label_thresholds=ThresholdMetrics(**_known(ThresholdMetrics, data["at_label_thresholds"])) if data.get("at_label_thresholds") else None,
            by_size=by_size,
            skipped_samples=skipped,
            extra_splits={name: _summary_from_json(row) for name, row in (data.get("extra_splits") or {}).items()},
            localization=data.get("localization"),
            figures=dict(data.get("figures") or data.get("plots") or {}),
            run=run,
            **{key: data.get(key) for key in ("dataset", "eval_split", "model", "image_size", "label_thresholds_fitted_on")},
        )  # fmt: skip


def _known(kind, data: dict, skip=frozenset()) -> dict:
    """The entries of `data` that are fields of the dataclass `kind`."""
    return {item.name: data[item.name] for item in fields(kind) if item.name in data and item.name not in skip}


def _summary_json(summary: SplitSummary) -> dict:
    data = {key: value for key, value in asdict(summary).items() if not key.endswith("_at_label_thresholds")}
    data = {key: value for key, value in data.items() if value is not None or not key.startswith("mAP_") or key == "mAP_voc"}
    if summary.CF1_at_label_thresholds is not None:
        data["at_label_thresholds"] = {"CF1": summary.CF1_at_label_thresholds, "OF1": summary.OF1_at_label_thresholds}
    return data


def _summary_from_json(row: dict) -> SplitSummary:
    at = row.get("at_label_thresholds") or {}
    return SplitSummary(**_known(SplitSummary, row), CF1_at_label_thresholds=at.get("CF1"), OF1_at_label_thresholds=at.get("OF1"))
SIZE_BUCKETS = ("small", "medium", "large")


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


def map_by_object_size(scores, labels, areas, thresholds=COCO_AREA_THRESHOLDS) -> ObjectSizeResults:
    """mAP restricted to objects of each size (the paper's Table 7): for bucket b a positive counts only when the
    label's largest object in the image falls in b; other positives are ignored, negatives stay negatives."""
    small, large = thresholds
    bucket = np.where(areas < small, 0, np.where(areas < large, 1, 2))
    results = ObjectSizeResults(tuple(int(value) for value in thresholds))
    for index, name in enumerate(SIZE_BUCKETS):
        restricted = np.where((labels == 1) & (bucket != index), -1, labels)
        ap, _ = average_precision_per_label(scores, restricted)
        evaluated = ~np.isnan(ap)
        setattr(results, f"mAP_{name}", float(ap[evaluated].mean()) if evaluated.any() else None)
        setattr(results, f"num_objects_{name}", int(((labels == 1) & (bucket == index)).sum()))
    return results


def evaluation_report(
    scores,
    labels,
    label_names,
    areas=None,
    area_thresholds=COCO_AREA_THRESHOLDS,
    threshold=0.5,
    label_thresholds=None,
) -> EvaluationReport:
    """Every metric, the per-label AP table and (with `areas`) mAP by object size.

    The threshold metrics (CP ... OF1_top3) are at `threshold`; with `label_thresholds` (one per label) they are also
    given at those (`at_label_thresholds`), and each label's row holds its threshold."""
    metrics = multilabel_metrics(scores, labels, threshold=threshold)
    per_label = [
        LabelResult(name, ap, int((labels[:, i] == 1).sum()), None if label_thresholds is None else float(label_thresholds[i]))
        for i, (name, ap) in enumerate(zip(label_names, metrics.pop("AP")))
    ]
    at_label_thresholds = None
    if label_thresholds is not None:
        at_thresholds = multilabel_metrics(scores, labels, threshold=np.asarray(label_thresholds))
        at_label_thresholds = ThresholdMetrics(**_known(ThresholdMetrics, at_thresholds))
    return EvaluationReport(
        num_images=int(len(scores)),
        threshold=threshold,
        mAP=metrics["mAP"],
        mAP_voc=metrics["mAP_voc"],
        at_threshold=ThresholdMetrics(**_known(ThresholdMetrics, metrics)),
        per_label=per_label,
        label_thresholds=None if label_thresholds is None else [float(value) for value in label_thresholds],
        at_label_thresholds=at_label_thresholds,
        by_size=map_by_object_size(scores, labels, areas, area_thresholds) if areas is not None else None,
    )


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
) -> EvaluationReport:
    """The report of `scores` (`(num_images, num_labels)` in the order of `label_names`, the model's) on a prepared
    split whose labels follow `encoder.names`; mAP by object size when the split has boxes; the threshold metrics at
    `threshold` and, when given, at the per-label `label_thresholds`."""
    labels = labels_in_model_order(split, encoder, label_names)
    areas = None
    if "objects" in split.dataset.features:
        category_to_label = object_label_mapper(encoder, label_names)
        areas = largest_object_areas(split.dataset["objects"], category_to_label, len(label_names))
    report = evaluation_report(scores, labels, label_names, areas, area_thresholds, threshold, label_thresholds)
    report.skipped_samples = split.skipped
    return report


def percent(value) -> str:
    """A fraction as the reports print it: percent with two decimals, `n/a` where undefined."""
    return "n/a" if value is None else f"{100 * value:.2f}"


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header), *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


SUMMARY_COLUMNS = ("mAP", "mAP_voc", *(item.name for item in fields(ThresholdMetrics)))


def metrics_table(report: EvaluationReport, columns=SUMMARY_COLUMNS) -> list[str]:
    """The report's metrics at its threshold as one Markdown table row (values in percent)."""
    values = {"mAP": report.mAP, "mAP_voc": report.mAP_voc, **asdict(report.at_threshold)}
    return markdown_table(list(columns), [[percent(values[column]) for column in columns]])


def label_thresholds_table(report: EvaluationReport, columns=None) -> list[str]:
    at = asdict(report.at_label_thresholds)
    columns = [column for column in (columns or at) if column in at]
    return markdown_table(columns, [[percent(at[column]) for column in columns]])


def object_size_table(report: EvaluationReport) -> list[str]:
    sizes = report.by_size
    return markdown_table(list(SIZE_BUCKETS), [[percent(getattr(sizes, f"mAP_{name}")) for name in SIZE_BUCKETS]])


def per_label_table(report: EvaluationReport, with_positives: bool = True) -> list[str]:
    with_thresholds = report.label_thresholds is not None
    header = ["label", "AP"] + (["positives"] if with_positives else []) + (["threshold"] if with_thresholds else [])
    rows = [
        [row.label, percent(row.AP)] + ([row.positives] if with_positives else []) + ([f"{row.threshold:.3f}"] if with_thresholds else [])
        for row in report.per_label
    ]
    return markdown_table(header, rows)


def extra_splits_markdown(report: EvaluationReport) -> list[str]:
    """Lines of a table of the other splits the final model was evaluated on (`extra_splits`), and of where its label
    queries look (`localization`), if any."""
    lines = []
    if report.extra_splits:
        header = ["split", "images", "mAP", "share of the evaluation split's mAP", "mAP_voc", "CF1", "OF1", "CF1 / OF1 at the per-label thresholds"]
        rows = [
            [
                name, row.num_images, percent(row.mAP), percent(row.mAP / report.mAP) if row.mAP is not None and report.mAP else "n/a",
                percent(row.mAP_voc), percent(row.CF1), percent(row.OF1),
                f"{percent(row.CF1_at_label_thresholds)} / {percent(row.OF1_at_label_thresholds)}",
            ]
            for name, row in report.extra_splits.items()
        ]  # fmt: skip
        lines += ["", "Other splits:", "", *markdown_table(header, rows)]
    localization = report.localization
    if localization:
        ratio = localization["pointing_game"] / localization["chance"] if localization.get("chance") else float("nan")
        lines += [
            "",
            f"Where the label queries look on {localization.get('split', 'the evaluation split')} ({localization['pairs']} image-label pairs with "
            f"boxes; decoder layer {localization['layer']}, mean over heads): the peak of a label's cross-attention "
            f"falls inside one of its boxes for {percent(localization['pointing_game'])}% of the pairs (pointing "
            f"game), {percent(localization['mass_in_boxes'])}% of the map's mass lies inside them, and a uniform map "
            f"scores {percent(localization['chance'])}% on both (chance): {ratio:.1f} times chance.",
        ]
    return lines


def report_to_markdown(report: EvaluationReport) -> str:
    """The report as Markdown tables (values in percent): the printed summary of training and evaluation."""
    lines = [f"Evaluated on {report.num_images} images (threshold {report.threshold}).", "", *metrics_table(report)]
    if report.at_label_thresholds is not None:
        lines += ["", "At the per-label thresholds (the label table gives each):", "", *label_thresholds_table(report)]
    if report.by_size is not None:
        low, high = report.by_size.area_thresholds
        lines += ["", f"mAP by object size (box area thresholds {low} and {high} px):", "", *object_size_table(report)]
    lines += extra_splits_markdown(report)
    lines += ["", *per_label_table(report)]
    return "\n".join(lines)
