"""The card describes what a run actually did: its backbone's library, optimizer, schedule and loss."""

from types import SimpleNamespace

from helpers import tiny_config, transformers_config

from modeling_q2l import Query2LabelForMultiLabelClassification
from modeling_q2l.cli.arguments import DataArguments, ModelArguments, Query2LabelTrainingArguments
from modeling_q2l.evaluation.report import EvaluationReport
from modeling_q2l.training.summary import summarise_run
from modeling_q2l.zoo.backbone_weights import BackboneWeights


def summary_of(config, tmp_path, **training):
    model = Query2LabelForMultiLabelClassification(config)
    started = SimpleNamespace(backbone_weights=BackboneWeights("a file", "timm/resnet18.a1_in1k"), label_transfer=None, frozen=None)
    training_args = Query2LabelTrainingArguments(output_dir=str(tmp_path), **training)
    return summarise_run(model, ModelArguments(loss="focal"), DataArguments(dataset_name="org/data"), training_args, started, "ema")


def test_the_summary_names_the_backbones_library_and_the_runs_options(tmp_path):
    timm_run = summary_of(tiny_config(), tmp_path)
    assert timm_run.backbone == "`test_resnet` (timm)"
    assert timm_run.schedule.startswith("8 epochs, batch 32 per device, AdamW") and "one-cycle" in timm_run.schedule
    assert timm_run.loss == "`focal` (gamma 2.0)" and timm_run.base_model == "timm/resnet18.a1_in1k"
    transformers_run = summary_of(transformers_config(), tmp_path, optim="sgd", lr_scheduler_type="linear", max_steps=50)
    assert "(timm)" not in transformers_run.backbone and "transformers" in transformers_run.backbone
    assert transformers_run.schedule.startswith("50 steps") and "SGD" in transformers_run.schedule
    assert "linear learning-rate schedule" in transformers_run.schedule
    assert not transformers_run.is_embedded_demo and transformers_run.dataset_name == "org/data"


def test_the_card_uses_the_summary(tmp_path):
    from modeling_q2l.hub.model_card import training_model_card

    config = transformers_config()
    summary = summary_of(config, tmp_path, optim="sgd")
    report = EvaluationReport.from_json({"mAP": 0.5, "num_images": 4, "per_label": [], "threshold": 0.5})
    text = str(training_model_card(config, report, summary))
    assert "SGD (weight decay" in text and "(timm)" not in text and "`focal` (gamma 2.0)" in text
    assert "layout randomisation" not in text  # off unless asked for
    with_layouts = summary_of(config, tmp_path, layout_randomization=0.8)
    assert "layout randomisation with probability 0.8" in with_layouts.augmentation
    assert "recomposition" not in with_layouts.augmentation
    recomposed = summary_of(config, tmp_path, object_recomposition=0.5)
    assert "object recomposition with probability 0.5" in recomposed.augmentation
