"""The model owns its backbone API (get it, freeze stages), its label set (grow, shrink, reorder) and its shipped
files; it builds without patching torch for other threads."""

import threading

import pytest
import torch
from helpers import tiny_config

from modeling_q2l import (
    Query2LabelBackbone,
    Query2LabelBaselineForMultiLabelClassification,
    Query2LabelForMultiLabelClassification,
    Query2LabelModel,
    model_class_for,
)
from modeling_q2l.model import inference_query2label, modeling_query2label

LABELS = ["person", "dog", "Motor-Cycle", "cat", "car", "tree"]


def labelled_config(**overrides):
    return tiny_config(num_labels=6, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}, **overrides)


def test_every_model_class_hands_out_its_backbone():
    for model_class in (Query2LabelModel, Query2LabelForMultiLabelClassification, Query2LabelBaselineForMultiLabelClassification):
        config = tiny_config(classifier_head="global_average_pooling") if model_class is Query2LabelBaselineForMultiLabelClassification else tiny_config()
        backbone = model_class(config).get_backbone()
        assert isinstance(backbone, Query2LabelBackbone) and hasattr(backbone.model, "feature_info")
    assert model_class_for(tiny_config()) is Query2LabelForMultiLabelClassification
    assert model_class_for(tiny_config(classifier_head="global_average_pooling")) is Query2LabelBaselineForMultiLabelClassification


def test_set_labels_grows_shrinks_and_reorders_in_place():
    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(labelled_config(label_thresholds=[0.3] * 6)).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(pixels).logits
    new = ["cat", "bus", "motorbike", "DOG", "horse", "car", "bicycle", "train"]  # 8 labels: grows
    plan = model.set_labels(new, {"motorbike": "Motor-Cycle"})
    assert plan == {"matched": {"cat": "cat", "motorbike": "Motor-Cycle", "DOG": "dog", "car": "car"},
                    "new": ["bus", "horse", "bicycle", "train"], "dropped": ["person", "tree"]}  # fmt: skip
    assert model.config.num_labels == 8 and model.config.label_thresholds is None
    assert model.model.label_embeddings.weight.shape == (8, 32) and model.classifier.weight.shape == (8, 32)
    with torch.no_grad():
        after = model(pixels).logits
    assert after.shape == (2, 8)
    for name, source in plan["matched"].items():  # a shared label scores as before
        torch.testing.assert_close(after[:, new.index(name)], before[:, LABELS.index(source)])
    model.set_labels(["car", "cat"])  # shrinks
    assert model.config.id2label == {0: "car", 1: "cat"} and model(pixels).logits.shape == (2, 2)


def test_set_labels_refuses_what_it_cannot_keep():
    model = Query2LabelForMultiLabelClassification(labelled_config())
    with pytest.raises(ValueError, match=r"\['airplane'\] are not labels of the model"):
        model.set_labels(["bus"], {"bus": "airplane"})
    grouped = Query2LabelForMultiLabelClassification(labelled_config(label_groups=2))
    assert grouped.set_labels(LABELS)["new"] == []  # the same labels: nothing to do
    with pytest.raises(ValueError, match="label_groups"):
        grouped.set_labels(["cat", "dog"])


def test_building_a_reference_backbone_leaves_other_threads_alone():
    """The meta-device parameters of a reference build are this thread's only: a model built meanwhile in another
    thread keeps real parameters."""
    inside, other_done, results = threading.Event(), threading.Event(), {}

    def other_thread():
        inside.wait(timeout=30)
        results["other"] = torch.nn.Linear(4, 4).weight.device.type
        other_done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with modeling_query2label._parameters_on_meta():
        results["inside"] = torch.nn.Linear(4, 4).weight.device.type
        inside.set()
        other_done.wait(timeout=30)
    thread.join()
    assert results == {"inside": "meta", "other": "cpu"}
    assert torch.nn.Linear(4, 4).weight.device.type == "cpu"  # and nothing stays patched


def test_without_the_private_onednn_entry_point_the_head_uses_pytorchs_linear(monkeypatch):
    torch.manual_seed(0)
    fast = Query2LabelForMultiLabelClassification(tiny_config(hidden_size=64, intermediate_size=128)).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = fast(pixels).logits
    monkeypatch.setattr(inference_query2label, "_ONEDNN_LINEAR", None)
    torch.manual_seed(0)
    fallback = Query2LabelForMultiLabelClassification(tiny_config(hidden_size=64, intermediate_size=128)).eval()
    assert not any(getattr(m, "fast_cpu_inference", False) for m in fallback.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        torch.testing.assert_close(fallback(pixels).logits, expected, atol=1e-5, rtol=1e-5)


def test_the_configuration_file_has_no_import_side_effects():
    import ast
    from pathlib import Path

    source = Path(modeling_query2label.__file__).with_name("configuration_query2label.py").read_text()
    functions = [node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    assert functions == []  # the pipeline is shipped by `save_pretrained`, not by an import kept for its side effect
