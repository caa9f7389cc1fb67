"""Multi-label classification metrics, vectorised over all labels at once.

Conventions (also in the README):
- `mAP`: mean over labels with at least one positive of the non-interpolated average precision, the mean of the
  precision at each positive's rank with tied scores sharing a threshold (scikit-learn's `average_precision_score`,
  torchmetrics).
- `mAP_voc`: the same mean of all-point interpolated AP (VOC-style precision envelope), the flavour of the official
  Query2Label evaluation and of the paper's numbers.
- `CP`, `CR`: per-label precision and recall averaged over labels with at least one positive (a label that is never
  predicted has precision 0); `CF1 = 2 CP CR / (CP + CR)`. `OP`, `OR`, `OF1`: the same over all (image, label) pairs.
  A label is predicted when its score >= `threshold`.
- `*_top{k}` (ML-GCN convention): a label is predicted when it is among the image's `k` highest scores and its
  score >= `threshold`.
- Labels equal to -1 are unknown: they count neither as positives nor as negatives anywhere.
All values are fractions in [0, 1].
"""

from pathlib import Path

import numpy as np

# The same metrics as a Hugging Face `evaluate` module: `evaluate.load(MULTILABEL_METRICS_MODULE)`.
MULTILABEL_METRICS_MODULE = str(Path(__file__).parent / "multilabel_metrics")


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch
        array = array.detach().float().cpu().numpy()
    return np.asarray(array)


def sigmoid_scores(logits) -> np.ndarray:
    """Probabilities from logits (numpy or torch), without overflow warnings for extreme logits."""
    logits = _as_numpy(logits).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def _validate(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = _as_numpy(scores).astype(np.float64), _as_numpy(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(
            f"scores {scores.shape} and labels {labels.shape} must both be (num_images, num_labels)."
        )
    if not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError("labels must be multi-hot: 1 present, 0 absent, -1 unknown.")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values.")
    return scores, labels.astype(np.int8)


def average_precision_per_label(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Non-interpolated and all-point interpolated AP of each label, each `(num_labels,)`, NaN without positives.

    Both come from one ranking of the images per label.
    """
    scores, labels = _validate(scores, labels)
    order = np.argsort(-scores, axis=0, kind="stable")  # rank images per label
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    positive = np.take_along_axis(labels == 1, order, axis=0)
    known = np.take_along_axis(labels != -1, order, axis=0)

    true_positives = np.cumsum(positive, axis=0)
    seen = np.maximum(np.cumsum(known, axis=0), 1)
    precision = true_positives / seen  # (num_images, num_labels): precision at each rank

    # Non-interpolated: tied scores form one threshold, so each rank takes the precision at the end of its group.
    rank = np.arange(len(scores))[:, None]
    group_end = np.ones_like(positive)
    group_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    last_index = np.minimum.accumulate(np.where(group_end, rank, len(scores) - 1)[::-1], axis=0)[::-1]
    tied_precision = np.take_along_axis(precision, last_index, axis=0)
    # Interpolated: the precision envelope, the best precision at this rank or below.
    envelope = np.maximum.accumulate(np.where(known, precision, 0.0)[::-1], axis=0)[::-1]

    num_positives = positive.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        def mean_over_positives(values):
            return np.where(num_positives > 0, (values * positive).sum(axis=0) / num_positives, np.nan)

        return mean_over_positives(tied_precision), mean_over_positives(envelope)


def _threshold_metrics(predicted: np.ndarray, labels: np.ndarray, suffix: str = "") -> dict[str, float]:
    known = labels != -1
    predicted = predicted & known
    positive = labels == 1
    true_positives = (predicted & positive).sum(axis=0).astype(np.float64)
    num_predicted = predicted.sum(axis=0).astype(np.float64)
    num_positive = positive.sum(axis=0).astype(np.float64)
    evaluated = num_positive > 0

    per_label_precision = np.divide(true_positives, num_predicted, out=np.zeros_like(true_positives), where=num_predicted > 0)
    per_label_recall = np.divide(true_positives, num_positive, out=np.zeros_like(true_positives), where=evaluated)
    cp = float(per_label_precision[evaluated].mean()) if evaluated.any() else 0.0
    cr = float(per_label_recall[evaluated].mean()) if evaluated.any() else 0.0
    op = float(true_positives.sum() / num_predicted.sum()) if num_predicted.sum() else 0.0
    orr = float(true_positives.sum() / num_positive.sum()) if num_positive.sum() else 0.0

    def f1(precision, recall):
        return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    return {
        f"CP{suffix}": cp,
        f"CR{suffix}": cr,
        f"CF1{suffix}": f1(cp, cr),
        f"OP{suffix}": op,
        f"OR{suffix}": orr,
        f"OF1{suffix}": f1(op, orr),
    }


def multilabel_metrics(scores, labels, threshold=0.5, top_k: int = 3) -> dict:
    """All multi-label metrics of the module docstring.

    Args:
        scores: `(num_images, num_labels)` probabilities (or any scores compared with `threshold`).
        labels: `(num_images, num_labels)` multi-hot targets; -1 marks unknown entries.
        threshold: score at or above which a label is predicted: one number, or one per label (`(num_labels,)`).
        top_k: `k` of the top-k metrics (suffix `_top{k}`).

    Returns:
        A dict of floats (`mAP`, `mAP_voc`, `CP`, `CR`, `CF1`, `OP`, `OR`, `OF1` and the six with suffix
        `_top{k}`), `AP`: a list with one AP per label (`None` for labels without a positive), and
        `num_evaluated_labels`.
    """
    scores, labels = _validate(scores, labels)
    ap, ap_voc = average_precision_per_label(scores, labels)
    evaluated = ~np.isnan(ap)
    results = {
        "mAP": float(ap[evaluated].mean()) if evaluated.any() else 0.0,
        "mAP_voc": float(ap_voc[evaluated].mean()) if evaluated.any() else 0.0,
    }
    threshold = np.asarray(threshold, dtype=np.float64)
    if threshold.ndim not in (0, 1) or (threshold.ndim == 1 and threshold.shape != (scores.shape[1],)):
        raise ValueError(f"threshold must be one number or one per label ({scores.shape[1]}), got shape {threshold.shape}.")
    above = scores >= threshold
    results.update(_threshold_metrics(above, labels))
    k = min(top_k, scores.shape[1])
    top = np.zeros_like(above)
    np.put_along_axis(top, np.argpartition(-scores, k - 1, axis=1)[:, :k], True, axis=1)
    results.update(_threshold_metrics(above & top, labels, suffix=f"_top{top_k}"))
    results["AP"] = [None if np.isnan(value) else float(value) for value in ap]
    results["num_evaluated_labels"] = int(evaluated.sum())
    return results


__all__ = ["MULTILABEL_METRICS_MODULE", "average_precision_per_label", "multilabel_metrics", "sigmoid_scores"]
