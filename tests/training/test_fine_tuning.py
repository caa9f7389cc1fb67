"""Fine-tuning a saved Query2Label model on another label set, and freezing for small datasets."""

import json

import pytest
import torch
from helpers import (
    EMBEDDED_DATASET,
    tiny_config,
    tiny_training_argv,
    transformers_config,
)

from modeling_q2l import (
    Query2LabelBaselineForMultiLabelClassification,
    Query2LabelForMultiLabelClassification,
)
from modeling_q2l.cli.commands import train as main
from modeling_q2l.model import match_labels
from modeling_q2l.training.model_setup import load_with_labels

SOURCE = ["person", "dog", "Motor-Cycle", "cat", "car", "tree", "boat"]
TARGET = ["cat", "bus", "motorbike", "DOG", "horse", "car", "bicycle", "train"]


@pytest.fixture
def source_folder(tmp_path):
    config = tiny_config(num_labels=7, id2label=dict(enumerate(SOURCE)), label2id={n: i for i, n in enumerate(SOURCE)}, label_thresholds=[0.4] * 7)
    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(config).eval()
    model.save_pretrained(tmp_path / "source")
    return tmp_path / "source", model


def test_labels_are_matched_by_name_and_mapping():
    transfer = match_labels(TARGET, SOURCE, {"motorbike": "Motor-Cycle"})
    assert transfer["matched"] == {"cat": "cat", "motorbike": "Motor-Cycle", "DOG": "dog", "car": "car"}
    assert transfer["new"] == ["bus", "horse", "bicycle", "train"]
    assert transfer["dropped"] == ["person", "tree", "boat"]
    assert match_labels(["motor cycle"], SOURCE)["matched"] == {"motor cycle": "Motor-Cycle"}  # punctuation and case
    with pytest.raises(ValueError, match=r"\['plane'\] are not among the new labels"):
        match_labels(TARGET, SOURCE, {"plane": "person"})
    with pytest.raises(ValueError, match=r"\['airplane'\] are not labels of the model"):
        match_labels(TARGET, SOURCE, {"bus": "airplane"})


def test_matched_labels_keep_their_weights_exactly(source_folder):
    folder, source = source_folder
    model, transfer = load_with_labels(str(folder), TARGET, '{"motorbike": "Motor-Cycle"}')
    assert model.config.id2label == dict(enumerate(TARGET)) and model.config.label_thresholds is None
    new_state, old_state = model.state_dict(), source.state_dict()
    for new_name, old_name in transfer["matched"].items():
        new_row, old_row = TARGET.index(new_name), SOURCE.index(old_name)
        for key in ("model.label_embeddings.weight", "classifier.weight", "classifier.bias"):
            assert torch.equal(new_state[key][new_row], old_state[key][old_row]), (key, new_name)
    for key, value in new_state.items():  # everything that is not label-specific, as it was
        if key not in ("model.label_embeddings.weight", "classifier.weight", "classifier.bias"):
            assert torch.equal(value, old_state[key]), key
    # new labels start as a new model starts: N(0, 1) queries, uniform classifier rows within 1/sqrt(d)
    new_rows = [TARGET.index(name) for name in transfer["new"]]
    assert new_state["classifier.weight"][new_rows].abs().max() <= 32**-0.5
    assert 0.5 < new_state["model.label_embeddings.weight"][new_rows].std() < 1.5
    with torch.no_grad():
        pixels = torch.randn(2, 3, 64, 64)
        old_logits, new_logits = source(pixels).logits, model.eval()(pixels).logits
    for new_name, old_name in transfer["matched"].items():  # a shared label scores as before fine-tuning
        torch.testing.assert_close(new_logits[:, TARGET.index(new_name)], old_logits[:, SOURCE.index(old_name)])


def test_the_same_labels_change_nothing(source_folder):
    folder, source = source_folder
    model, transfer = load_with_labels(str(folder), SOURCE)
    assert transfer["new"] == [] and transfer["dropped"] == [] and len(transfer["matched"]) == 7
    assert model.config.label_thresholds == [0.4] * 7  # kept: the labels did not change
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_the_baseline_head_transfers_too(tmp_path):
    config = tiny_config(num_labels=7, classifier_head="global_average_pooling", id2label=dict(enumerate(SOURCE)), label2id={n: i for i, n in enumerate(SOURCE)})
    source = Query2LabelBaselineForMultiLabelClassification(config)
    source.save_pretrained(tmp_path)
    model, transfer = load_with_labels(str(tmp_path), TARGET)
    assert isinstance(model, Query2LabelBaselineForMultiLabelClassification)
    assert torch.equal(model.classifier.weight[TARGET.index("cat")], source.classifier.weight[SOURCE.index("cat")])


def test_freezing_the_backbone_and_its_first_stages(tmp_path):
    model = Query2LabelForMultiLabelClassification(tiny_config())
    groups = model.get_backbone().stage_groups()
    assert len(groups) == 5 and groups[0][0].startswith("conv1")  # stem, layer1..layer4 of timm's test_resnet
    frozen = model.freeze_backbone(stages=1)
    assert frozen and all(name.startswith(("conv1", "bn1", "layer1.")) for name in frozen)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any(".layer2." in name for name in trainable) and any(name.startswith("model.decoder.") for name in trainable)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.model.backbone.model.layer1.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.model.backbone.model.layer2.modules())
    with pytest.raises(ValueError, match="lie in 0..4"):
        Query2LabelForMultiLabelClassification(tiny_config()).freeze_backbone(stages=5)
    # saved with frozen stages (no BatchNorm counters there), it loads complete: no "newly initialized" report
    model.save_pretrained(tmp_path / "frozen")
    loaded, loading = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path / "frozen", output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"]
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in model.state_dict().items())

    head_only = Query2LabelForMultiLabelClassification(tiny_config())
    head_only.freeze_backbone()
    assert not any(p.requires_grad for p in head_only.model.backbone.parameters())
    assert all(p.requires_grad for name, p in head_only.named_parameters() if ".backbone." not in f".{name}")


@pytest.mark.slow
def test_fine_tuning_onto_other_labels_from_the_command_line(tmp_path):
    # a source model with 5 other labels, 3 of them shared with the embedded set's under other spellings
    names = ["t shirt/TOP", "sandal", "ankle-boot", "hat", "scarf"]
    config = tiny_config(num_labels=5, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    torch.manual_seed(0)
    source = Query2LabelForMultiLabelClassification(config)
    source.save_pretrained(tmp_path / "source")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"Bag": "hat"}))
    report = main(tiny_training_argv(
        tmp_path / "out", "--model_name_or_path", str(tmp_path / "source"), "--label_mapping", str(mapping),
        "--freeze_backbone", "true", "--ema_decay", "0",
    ))  # fmt: skip
    transfer = report.run.label_transfer
    assert transfer["matched"] == {"T-shirt/top": "t shirt/TOP", "Sandal": "sandal", "Bag": "hat", "Ankle boot": "ankle-boot"}
    assert transfer["dropped"] == ["scarf"] and len(transfer["new"]) == 6
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Sandal" in card and "scarf" in card and "Bag (from hat)" in card and "only the Query2Label head" in card
    trained = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path / "out")
    for key, value in source.state_dict().items():  # the frozen backbone did not move
        if ".backbone." in f".{key}" and not key.endswith("num_batches_tracked"):  # a counter frozen BN does not keep
            assert torch.equal(trained.state_dict()[key], value), key
    assert report.run.trainable_parameters < sum(p.numel() for p in trained.parameters())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"]["0"] == "T-shirt/top"
    assert EMBEDDED_DATASET.is_dir()


def test_stage_groups_of_a_transformers_backbone():
    model = Query2LabelForMultiLabelClassification(transformers_config())
    groups = model.get_backbone().stage_groups()
    assert [group[0].split(".")[:3] for group in groups] == [
        ["embedder", "embedder", "convolution"], ["encoder", "stages", "0"], ["encoder", "stages", "1"],
    ]  # fmt: skip
    assert sum(len(group) for group in groups) == len(list(model.model.backbone.model.parameters()))
    model.freeze_backbone(stages=1)
    assert not any(p.requires_grad for p in model.model.backbone.model.encoder.stages[0].parameters())
    assert all(p.requires_grad for p in model.model.backbone.model.encoder.stages[1].parameters())
