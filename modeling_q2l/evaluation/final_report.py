"""The final report of a model on its evaluation split: one step shared by training (`train.py`) and evaluation
(`evaluate_model.py`).

predict the split -> fit per-label thresholds (optional) -> the full report at one threshold and at the per-label
ones -> the extra splits' summaries -> evaluation plots and attention figures (optional).
How a split is predicted is the caller's: the Trainer's prediction loop in training, `predict_scores` in evaluation.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.splits import PreparedSplit, SplitPreparer
from ..extras import MissingExtraError, require
from .report import EvaluationReport, labels_in_model_order, report_for_split
from .thresholds import fit_label_thresholds

logger = logging.getLogger(__name__)


@dataclass
class FinalReportRequest:
    """What the final report covers besides the evaluation split itself."""

    area_thresholds: tuple[int, int]
    threshold: float = 0.5
    fit_thresholds: bool = False  # refit `model.config.label_thresholds` on the evaluation split
    extra_splits: dict = field(default_factory=dict)  # {name: raw Dataset}, prepared with the evaluation split's labels
    figures_dir: Path | None = None  # evaluation plots (and attention figures) go here; None writes none
    attention_figures: int = 0  # evaluation images whose attention maps are drawn into `figures_dir`


def final_report(
    model,
    processor,
    split: PreparedSplit,
    preparer: SplitPreparer,
    predict: Callable[[PreparedSplit], np.ndarray],
    request: FinalReportRequest,
    scores: np.ndarray | None = None,
) -> tuple[EvaluationReport, np.ndarray]:
    """(report, scores) of `model` on `split`. `predict(split)` gives sigmoid scores in the model's label order
    (skipped when `scores` are given). With `request.fit_thresholds` the F1-optimal threshold of each label is fitted
    on the split and stored in `model.config.label_thresholds` (the pipeline's default)."""
    label_names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    scores = predict(split) if scores is None else scores
    if request.fit_thresholds:
        model.config.label_thresholds = fit_label_thresholds(scores, labels_in_model_order(split, preparer.encoder, label_names))
    label_thresholds = model.config.label_thresholds
    report = report_for_split(
        scores, split, preparer.encoder, label_names, request.area_thresholds, request.threshold, label_thresholds
    )
    for name, dataset in request.extra_splits.items():
        extra = preparer.prepare(dataset, split_name=name)
        extra_report = report_for_split(
            predict(extra), extra, preparer.encoder, label_names, request.area_thresholds, request.threshold, label_thresholds
        )
        report.extra_splits[name] = extra_report.summary()
        logger.info("%s split: mAP %.2f on %d images.", name, 100 * extra_report.mAP, extra_report.num_images)
    if request.figures_dir is not None:
        report.figures = save_figures(
            Path(request.figures_dir), model, processor, scores, split, preparer, report, request.attention_figures
        )
    return report, scores


def save_figures(figures_dir: Path, model, processor, scores, split, preparer, report, attention_figures: int) -> dict:
    """The evaluation plots and the attention figures of the first `attention_figures` images of the split, in
    `figures_dir`; returns {name: path}. Without matplotlib nothing is drawn and a warning says why."""
    from ..data.loading import open_image
    from .attention_figures import explain_image, save_attention_figure
    from .plots import write_evaluation_plots

    try:
        require("matplotlib", "Drawing the evaluation figures")
    except MissingExtraError as error:  # the model, its card and the report are saved all the same
        logger.warning("No figures in %s: %s.", figures_dir, error)
        return {}
    label_names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    labels = labels_in_model_order(split, preparer.encoder, label_names)
    paths = write_evaluation_plots(figures_dir, scores, labels, label_names, report, model.config.label_thresholds)
    if model.config.classifier_head == "query2label":
        model.eval()
        for index in range(min(attention_figures, len(split.dataset))):
            explained = explain_image(model, processor, open_image(split.dataset[index][preparer.image_column]))
            paths[f"attention_{index}"] = str(figures_dir / f"attention_{index}.png")
            save_attention_figure(explained, paths[f"attention_{index}"])
    return paths
