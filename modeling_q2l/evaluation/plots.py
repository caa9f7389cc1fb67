"""Evaluation plots (`scripts/evaluate_model.py --plots DIR`): precision-recall curves, AP per label, mAP by object size,
F1 against the threshold with the per-label thresholds marked. PNG files written with matplotlib's Agg backend."""

from pathlib import Path

import numpy as np

from ..extras import require

from .metrics import _validate

THRESHOLD_GRID = np.linspace(0.0, 1.0, 101)
MAX_LABELS_IN_LEGEND = 20


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray, known: np.ndarray | None = None):
    """Precision and recall at every distinct score (highest first) of one ranking; `positive` and `known` are
    boolean arrays like `scores` (unknown entries count nowhere). Flattened over all labels it is the micro curve."""
    known = np.ones_like(positive, dtype=bool) if known is None else known
    scores, positive = scores[known], positive[known]
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    true_positives = np.cumsum(positive)
    predicted = np.arange(1, len(scores) + 1)
    last_of_tie = np.r_[scores[:-1] != scores[1:], True]  # tied scores are predicted together
    precision = (true_positives / predicted)[last_of_tie]
    recall = (true_positives / max(int(positive.sum()), 1))[last_of_tie]
    return np.r_[1.0, precision], np.r_[0.0, recall]


def f1_against_threshold(scores: np.ndarray, labels: np.ndarray, grid: np.ndarray = THRESHOLD_GRID):
    """Per-label F1 `(len(grid), num_labels)` and overall (micro) F1 `(len(grid),)` when predicting score >= t."""
    positive, known = labels == 1, labels != -1
    per_label, overall = [], []
    for threshold in grid:
        predicted = (scores >= threshold) & known
        true_positives = (predicted & positive).sum(axis=0)
        denominator = predicted.sum(axis=0) + positive.sum(axis=0)
        per_label.append(2 * true_positives / np.maximum(denominator, 1))
        overall.append(2 * true_positives.sum() / max(denominator.sum(), 1))
    return np.array(per_label), np.array(overall)


def pyplot():
    matplotlib = require("matplotlib", "Drawing plots and figures")

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _label_colors(plt, count: int):
    return plt.get_cmap("tab20" if count > 10 else "tab10")(np.arange(count) % 20)


def plot_precision_recall(path, scores, labels, label_names, report) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 6))
    show_legend = len(label_names) <= MAX_LABELS_IN_LEGEND
    ap_of = {row.label: row.AP for row in report.per_label}
    for index, (name, color) in enumerate(zip(label_names, _label_colors(plt, len(label_names)))):
        if not (labels[:, index] == 1).any():
            continue
        precision, recall = precision_recall_curve(scores[:, index], labels[:, index] == 1, labels[:, index] != -1)
        legend = f"{name} (AP {100 * ap_of[name]:.1f})" if show_legend else None
        axes.plot(recall, precision, color=color if show_legend else "0.7", linewidth=1, label=legend)
    precision, recall = precision_recall_curve(scores.ravel(), labels.ravel() == 1, labels.ravel() != -1)
    axes.plot(recall, precision, color="black", linewidth=2.5, label="micro (all labels)")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axes.set_title(f"Precision-recall, {report.num_images} images (mAP {100 * report.mAP:.2f})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_ap_per_label(path, report) -> None:
    plt = pyplot()
    rows = sorted((row for row in report.per_label if row.AP is not None and not np.isnan(row.AP)), key=lambda row: row.AP)
    figure, axes = plt.subplots(figsize=(7, max(3, 0.28 * len(rows) + 1)))
    axes.barh([row.label for row in rows], [100 * row.AP for row in rows], color="tab:blue")
    axes.axvline(100 * report.mAP, color="black", linestyle="--", label=f"mAP {100 * report.mAP:.2f}")
    axes.set(xlabel="AP (%)", xlim=(0, 100))
    axes.set_title("Average precision per label")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_map_by_size(path, report) -> None:
    plt = pyplot()
    names = ("small", "medium", "large")
    sizes = report.by_size
    values = [getattr(sizes, f"mAP_{name}") for name in names]
    figure, axes = plt.subplots(figsize=(5, 4))
    bars = axes.bar(names, [100 * (value or 0) for value in values], color=["tab:orange", "tab:green", "tab:purple"])
    for bar, name, value in zip(bars, names, values):
        text = "n/a" if value is None else f"{100 * value:.1f}\n({getattr(sizes, f'num_objects_{name}')} objects)"
        axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    small, large = sizes.area_thresholds
    axes.set(ylabel="mAP (%)", ylim=(0, 110), xlabel=f"largest box of the label (area < {small}, < {large}, larger)")
    axes.set_title("mAP by object size")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_f1_against_threshold(path, scores, labels, label_names, label_thresholds=None) -> None:
    plt = pyplot()
    per_label, overall = f1_against_threshold(scores, labels)
    figure, axes = plt.subplots(figsize=(7, 5))
    show_legend = len(label_names) <= MAX_LABELS_IN_LEGEND
    for index, (name, color) in enumerate(zip(label_names, _label_colors(plt, len(label_names)))):
        color = color if show_legend else "0.7"
        axes.plot(THRESHOLD_GRID, per_label[:, index], color=color, linewidth=1, label=name if show_legend else None)
        if label_thresholds is not None:  # each label's own threshold, on its own curve
            value = label_thresholds[index]
            axes.plot([value], [np.interp(value, THRESHOLD_GRID, per_label[:, index])], "o", color=color, markersize=5)
    axes.plot(THRESHOLD_GRID, overall, color="black", linewidth=2.5, label="overall F1 (OF1), one threshold")
    title = "F1 against the threshold"
    if label_thresholds is not None:
        title += " (dots: the per-label thresholds)"
    axes.set(xlabel="threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower center", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_evaluation_plots(output_dir, scores, labels, label_names, report, label_thresholds=None) -> dict[str, str]:
    """Write the evaluation figures of `scores`/`labels` (`(num_images, num_labels)`, model order) and the report of
    `evaluation_report`; returns {figure name: file path}."""
    scores, labels = _validate(scores, labels)
    if label_thresholds is not None and len(label_thresholds) != len(label_names):
        raise ValueError(f"{len(label_thresholds)} label thresholds for {len(label_names)} labels.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: str(output_dir / f"{name}.png") for name in ("precision_recall", "ap_per_label", "f1_threshold")}
    plot_precision_recall(paths["precision_recall"], scores, labels, label_names, report)
    plot_ap_per_label(paths["ap_per_label"], report)
    plot_f1_against_threshold(paths["f1_threshold"], scores, labels, label_names, label_thresholds)
    if report.by_size is not None:
        paths["map_by_size"] = str(output_dir / "map_by_size.png")
        plot_map_by_size(paths["map_by_size"], report)
    return paths
