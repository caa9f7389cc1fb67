"""Per-label decision thresholds, fitted on held-out data."""

import numpy as np

from .metrics import _validate

DEFAULT_THRESHOLD = 0.5


def fit_label_thresholds(scores, labels) -> list[float]:
    """The F1-maximising threshold of each label on `(scores, labels)` (`(num_images, num_labels)`; -1 unknown).

    A label is predicted when its score reaches the threshold. Each threshold lies halfway between the lowest score
    still predicted and the next one below, so it does not sit on a score of this split; a label without a positive
    example keeps 0.5.
    """
    scores, labels = _validate(scores, labels)
    num_images = len(scores)
    order = np.argsort(-scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    positive = np.take_along_axis(labels == 1, order, axis=0)
    known = np.take_along_axis(labels != -1, order, axis=0)
    true_positives = np.cumsum(positive, axis=0)
    predicted = np.cumsum(known, axis=0)
    num_positives = positive.sum(axis=0)
    f1 = 2 * true_positives / np.maximum(predicted + num_positives, 1)
    # A threshold can only fall between two different scores: tied scores are predicted together.
    group_end = np.ones_like(positive)
    group_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    f1 = np.where(group_end & known, f1, -1.0)
    best = f1.argmax(axis=0)  # (num_labels,): the last rank still predicted
    columns = np.arange(scores.shape[1])
    lowest_kept = sorted_scores[best, columns]
    next_below = np.where(best + 1 < num_images, sorted_scores[np.minimum(best + 1, num_images - 1), columns], 0.0)
    thresholds = (lowest_kept + next_below) / 2
    thresholds = np.where(num_positives > 0, thresholds, DEFAULT_THRESHOLD)
    return [float(value) for value in thresholds]
