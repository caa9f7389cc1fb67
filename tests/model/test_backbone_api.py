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


def test_efficientnet_feature_models_stop_at_their_last_output():
    """timm's EfficientNet feature model runs every stage even when `out_indices` stops at stride 16; ours leaves the
    later stages out and gives the same feature map."""
    import timm

    from modeling_q2l import Query2LabelConfig
    from modeling_q2l.model.modeling_query2label import _build_timm_backbone

    config = Query2LabelConfig(backbone="tf_efficientnet_lite0", backbone_kwargs={"out_indices": [3]}, image_size=64)
    ours, channels, _ = _build_timm_backbone(config)
    full = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=[3]).eval()
    assert len(ours.blocks) == 5 < len(full.blocks) and channels == 112
    assert not full.load_state_dict(ours.state_dict(), strict=False).unexpected_keys
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(pixels)[-1], full(pixels)[-1])
    whole, _, _ = _build_timm_backbone(Query2LabelConfig(backbone="tf_efficientnet_lite0", image_size=64))
    assert len(whole.blocks) == len(full.blocks)  # the last stage's output needs every stage


def test_fused_feature_levels_give_a_dense_grid_that_carries_the_last_stage(tmp_path):
    """`fuse_feature_levels`: the queries attend to the finest listed level's grid, with the coarser levels projected
    and added onto it; the projections start at zero (the finest level alone) and are saved and loaded."""
    from modeling_q2l import Query2LabelForMultiLabelClassification

    torch.manual_seed(0)
    config = tiny_config(num_labels=7, backbone_kwargs={"out_indices": [2, 4]}, fuse_feature_levels=True)
    model = Query2LabelForMultiLabelClassification(config).eval()
    backbone = model.get_backbone()
    assert len(backbone.level_fusion) == 1 and all(not conv.weight.any() for conv in backbone.level_fusion)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        finest = backbone.model(pixels)[0]
        torch.testing.assert_close(backbone(pixels), finest)  # zero projections: the finest level alone
        for conv in backbone.level_fusion:
            torch.nn.init.normal_(conv.weight, std=0.1)
        fused = backbone(pixels)
        assert fused.shape == finest.shape and not torch.allclose(fused, finest)
        attentions = model(pixels, output_attentions=True).cross_attentions[-1]
        assert attentions.shape[-2:] == finest.shape[-2:]  # 8 x 8 at 64 px (stride 8)
        expected = model(pixels).logits
    model.save_pretrained(tmp_path)
    loaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, expected)
    with pytest.raises(ValueError, match="fuse_feature_levels needs a timm feature backbone with two or more"):
        Query2LabelForMultiLabelClassification(tiny_config(fuse_feature_levels=True))


def test_fusion_at_a_width_of_its_own_projects_every_level_there(tmp_path):
    """`feature_fusion_channels`: every level, the finest too, goes through a 1x1 convolution of its own to that
    width before they are added (a feature pyramid's sum), so the transformer sees that many channels; the coarser
    projections still start at zero; saved and loaded with the model."""
    from modeling_q2l import Query2LabelForMultiLabelClassification

    torch.manual_seed(0)
    config = tiny_config(num_labels=7, backbone_kwargs={"out_indices": [2, 4]}, fuse_feature_levels=True, feature_fusion_channels=40)
    model = Query2LabelForMultiLabelClassification(config).eval()
    backbone = model.get_backbone()
    assert backbone.num_features == 40 and model.model.input_projection.in_channels == 40
    assert [conv.out_channels for conv in backbone.level_fusion] == [40] and not backbone.level_fusion[0].weight.any()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        finest, coarsest = backbone.model(pixels)
        torch.testing.assert_close(backbone(pixels), backbone.finest_level_projection(finest))  # coarser at zero
        torch.nn.init.normal_(backbone.level_fusion[0].weight, std=0.1)
        upsampled = torch.nn.functional.interpolate(backbone.level_fusion[0](coarsest), size=finest.shape[-2:], mode="nearest")
        torch.testing.assert_close(backbone(pixels), backbone.finest_level_projection(finest) + upsampled)
        expected = model(pixels).logits
    model.save_pretrained(tmp_path)
    loaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.feature_fusion_channels == 40
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, expected)
