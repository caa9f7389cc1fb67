import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_score, recall_score

from modeling_q2l.evaluation.metrics import (
    average_precision_per_label,
    multilabel_metrics,
)


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 9)) < 0.25).astype(int)
    labels[:, 4] = 0  # a label without positives is left out of the means
    scores = np.round(rng.random((300, 9)) * 10) / 10 * 0.7 + labels * 0.3  # many tied scores
    return scores, labels


def test_map_equals_scikit_learn_macro_average_precision(scored):
    scores, labels = scored
    evaluated = labels.sum(0) > 0
    expected = average_precision_score(labels[:, evaluated], scores[:, evaluated], average="macro")
    result = multilabel_metrics(scores, labels)
    assert result["mAP"] == pytest.approx(expected, abs=1e-12)
    assert result["num_evaluated_labels"] == 8
    assert result["AP"][4] is None
    for k in np.flatnonzero(evaluated):
        assert result["AP"][k] == pytest.approx(average_precision_score(labels[:, k], scores[:, k]))


def test_threshold_metrics_equal_scikit_learn(scored):
    scores, labels = scored
    predicted = scores >= 0.5
    evaluated = labels.sum(0) > 0
    result = multilabel_metrics(scores, labels)
    cp = precision_score(labels[:, evaluated], predicted[:, evaluated], average="macro", zero_division=0)
    cr = recall_score(labels[:, evaluated], predicted[:, evaluated], average="macro", zero_division=0)
    assert result["CP"] == pytest.approx(cp)
    assert result["CR"] == pytest.approx(cr)
    assert result["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    op = precision_score(labels.ravel(), predicted.ravel())
    orr = recall_score(labels.ravel(), predicted.ravel())
    assert result["OP"] == pytest.approx(op)
    assert result["OR"] == pytest.approx(orr)
    assert result["OF1"] == pytest.approx(2 * op * orr / (op + orr))


def test_hand_worked_average_precisions():
    # Ranking of one label: +, -, +, -, + (scores strictly decreasing).
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    labels = np.array([[1], [0], [1], [0], [1]])
    ap, ap_voc = average_precision_per_label(scores, labels)
    assert ap[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert ap_voc[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)  # precision already decreasing
    # -, +, +: interpolation lifts nothing, but +, -, -, +, + lifts the 2nd positive's precision 2/4 to 3/5.
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    labels = np.array([[1], [0], [0], [1], [1]])
    ap, ap_voc = average_precision_per_label(scores, labels)
    assert ap[0] == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)
    assert ap_voc[0] == pytest.approx((1 + 3 / 5 + 3 / 5) / 3)


def test_tied_scores_share_one_threshold():
    scores = np.array([[0.5], [0.5], [0.1]])
    labels = np.array([[0], [1], [1]])
    ap, _ = average_precision_per_label(scores, labels)
    assert ap[0] == pytest.approx(average_precision_score(labels[:, 0], scores[:, 0]))
    assert ap[0] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_top_k_metrics_follow_the_ml_gcn_convention():
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.95, 0.4]])
    labels = np.array([[1, 0, 0, 1], [0, 1, 1, 0]])
    result = multilabel_metrics(scores, labels, threshold=0.5, top_k=2)
    # Image 1 predicts labels 0, 1 (top-2, both >= 0.5); image 2 predicts label 2 only (0.4 < 0.5).
    assert result["OP_top2"] == pytest.approx(2 / 3)
    assert result["OR_top2"] == pytest.approx(2 / 4)
    # Without top-k image 1 also predicts labels 2 and 3.
    assert result["OP"] == pytest.approx(3 / 5)
    assert set(multilabel_metrics(scores, labels)) >= {"CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3"}


def test_unknown_labels_are_ignored():
    rng = np.random.default_rng(3)
    scores, labels = rng.random((50, 4)), (rng.random((50, 4)) < 0.4).astype(int)
    masked = labels.copy()
    masked[:10, 1] = -1
    result = multilabel_metrics(scores, masked)
    expected = average_precision_score(labels[10:, 1], scores[10:, 1])
    assert result["AP"][1] == pytest.approx(expected)
    subset = multilabel_metrics(scores[10:], labels[10:])
    assert result["AP"][0] != pytest.approx(subset["AP"][0])  # other labels still use every image


def test_accepts_torch_tensors_and_rejects_bad_input():
    scores, labels = torch.rand(5, 3), (torch.rand(5, 3) < 0.5).long()
    labels[0] = 1
    assert 0 <= multilabel_metrics(scores, labels)["mAP"] <= 1
    with pytest.raises(ValueError, match="num_images, num_labels"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="multi-hot"):
        multilabel_metrics(np.zeros((2, 2)), np.full((2, 2), 2))
    with pytest.raises(ValueError, match="NaN"):
        multilabel_metrics(np.full((2, 2), np.nan), np.ones((2, 2)))


def test_fitted_thresholds_maximise_each_labels_f1():
    from modeling_q2l.evaluation.thresholds import fit_label_thresholds

    rng = np.random.default_rng(3)
    labels = (rng.random((300, 12)) < 0.3).astype(int)
    labels[:, 11] = 0  # a label without positives keeps 0.5
    labels[:40, 3] = -1  # unknown entries count neither way
    scores = np.round(np.clip(0.35 * (labels == 1) + 0.65 * rng.random((300, 12)), 0, 1), 2)  # ties included
    thresholds = fit_label_thresholds(scores, labels)
    assert thresholds[11] == 0.5

    def f1(column, threshold):
        known = labels[:, column] != -1
        predicted = (scores[:, column] >= threshold) & known
        positive = labels[:, column] == 1
        return 2 * (predicted & positive).sum() / (predicted.sum() + positive.sum())

    for column in range(11):
        best = max(f1(column, candidate) for candidate in np.unique(scores[:, column]))
        assert f1(column, thresholds[column]) == pytest.approx(best)
        assert thresholds[column] not in scores[:, column]  # halfway between two scores, not on one
    per_label = multilabel_metrics(scores, labels, threshold=np.array(thresholds))
    assert per_label["CF1"] > multilabel_metrics(scores, labels)["CF1"]
    with pytest.raises(ValueError, match="one per label"):
        multilabel_metrics(scores, labels, threshold=np.full(5, 0.5))


def test_the_evaluate_module_gives_the_same_numbers():
    import evaluate

    from modeling_q2l.evaluation.metrics import MULTILABEL_METRICS_MODULE
    from modeling_q2l.training.trainer import compute_multilabel_metrics

    rng = np.random.default_rng(5)
    scores = rng.random((120, 12))
    labels = (rng.random((120, 12)) < 0.3).astype(int)
    labels[:5, 2] = -1
    metric = evaluate.load(MULTILABEL_METRICS_MODULE)
    assert metric.compute(predictions=scores, references=labels) == multilabel_metrics(scores, labels)
    thresholds = np.linspace(0.3, 0.7, 12)
    assert metric.compute(predictions=scores, references=labels, threshold=thresholds) == multilabel_metrics(scores, labels, threshold=thresholds)
    # the Trainer's compute_metrics goes through the module, on sigmoid scores
    from transformers import EvalPrediction

    logits = np.log(scores / (1 - scores))
    trainer_metrics = compute_multilabel_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    expected = multilabel_metrics(scores, labels)
    for key in ("mAP", "mAP_voc", "CF1", "OF1_top3"):
        assert trainer_metrics[key] == pytest.approx(expected[key], abs=1e-9)
