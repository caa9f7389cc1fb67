import pytest
import torch
from helpers import tiny_config
from transformers import ResNetConfig

from modeling_q2l import (
    Query2LabelConfig,
    Query2LabelForMultiLabelClassification,
    Query2LabelModel,
)


def test_logits_shape_and_any_input_resolution(tiny_model):
    for height, width in [(64, 64), (96, 160), (200, 72)]:
        logits = tiny_model(torch.randn(2, 3, height, width)).logits
        assert logits.shape == (2, 5)
        assert torch.isfinite(logits).all()


def test_cross_attention_maps_per_decoder_layer(tiny_model):
    outputs = tiny_model(torch.randn(2, 3, 96, 160), output_attentions=True, output_hidden_states=True)
    assert len(outputs.cross_attentions) == tiny_model.config.decoder_layers
    for maps in outputs.cross_attentions:
        assert maps.shape == (2, 4, 5, 3, 5)  # (batch, heads, labels, height/32, width/32)
        torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, 4, 5))
    # the decoder state before the first layer and after each layer
    assert len(outputs.decoder_hidden_states) == 3 and outputs.decoder_hidden_states[0].shape == (2, 5, 32)
    assert outputs.decoder_attentions == (None, None)  # no self-attention among label queries by default


def test_sdpa_and_eager_attention_agree(tiny_model):
    pixels = torch.randn(2, 3, 64, 64)
    sdpa = tiny_model(pixels).logits
    eager = tiny_model(pixels, output_attentions=True).logits  # maps force the eager path
    torch.testing.assert_close(sdpa, eager, rtol=1e-5, atol=1e-5)


def test_loss_is_asl_averaged_over_images(tiny_model):
    pixels = torch.randn(4, 3, 64, 64)
    labels = (torch.rand(4, 5) < 0.4).float()
    labels[0, 2] = -1
    outputs = tiny_model(pixels, labels=labels)
    from modeling_q2l import AsymmetricLoss

    config = tiny_model.config
    expected = AsymmetricLoss(config.asl_gamma_neg, config.asl_gamma_pos, config.asl_clip, config.asl_eps)(
        outputs.logits, labels
    ) / 4
    torch.testing.assert_close(outputs.loss, expected)
    doubled = tiny_model(pixels.repeat(2, 1, 1, 1), labels=labels.repeat(2, 1)).loss
    torch.testing.assert_close(doubled, outputs.loss, rtol=1e-5, atol=1e-5)  # independent of batch size
    with pytest.raises(ValueError, match="multi-hot"):
        tiny_model(pixels, labels=torch.zeros(4, dtype=torch.long))


def test_backward_reaches_every_trainable_parameter():
    model = Query2LabelForMultiLabelClassification(tiny_config(frozen_backbone_modules=["conv1"])).train()
    loss = model(torch.randn(2, 3, 64, 64), labels=torch.ones(2, 5)).loss
    loss.backward()
    for name, parameter in model.named_parameters():
        if "backbone.model.conv1" in name:
            assert not parameter.requires_grad
        else:
            assert parameter.grad is not None, name


def test_save_and_load_round_trip_exactly(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path).eval()
    pixels = torch.randn(2, 3, 64, 96)
    assert torch.equal(tiny_model(pixels).logits, reloaded(pixels).logits)
    for (name, a), (_, b) in zip(tiny_model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_frozen_batch_norm_and_modules_survive_reloading(tmp_path):
    config = tiny_config(freeze_backbone_batch_norm=True, frozen_backbone_modules=["conv1", "layer1"])
    Query2LabelForMultiLabelClassification(config).save_pretrained(tmp_path)
    model = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path)
    # transformers hands back trainable tensors; freezing is re-applied explicitly (the Trainer does it)
    model.apply_backbone_freezing()
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(".conv1." in name or ".layer1." in name for name in frozen)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.model.backbone.modules())


def test_weight_initialisation_follows_the_official_recipe(tiny_model):
    bound = 1 / 32**0.5
    assert tiny_model.classifier.weight.abs().max() <= bound
    assert 0.7 < tiny_model.model.label_embeddings.weight.std() < 1.3  # N(0, 1)
    attention = tiny_model.model.decoder.layers[0].cross_attn
    assert torch.equal(attention.q_proj.bias, torch.zeros(32))
    xavier_bound = (6 / (32 + 32)) ** 0.5
    assert attention.q_proj.weight.abs().max() <= xavier_bound


def test_decoder_self_attention_options():
    model = Query2LabelForMultiLabelClassification(tiny_config(decoder_layers=3, keep_other_decoder_self_attention=True))
    kept = [layer.has_self_attention for layer in model.model.decoder.layers]
    assert kept == [False, True, True]
    assert not hasattr(model.model.decoder.layers[0], "self_attn")


def test_pre_norm_adds_a_final_encoder_norm():
    assert Query2LabelForMultiLabelClassification(tiny_config(pre_norm=True)).model.encoder.layer_norm is not None
    assert Query2LabelForMultiLabelClassification(tiny_config()).model.encoder.layer_norm is None


def test_transformers_backbone_config(tmp_path):
    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], out_features=["stage2"], layer_type="basic"
    )
    config = Query2LabelConfig(
        backbone_config=backbone, num_labels=3, hidden_size=16, intermediate_size=32, num_attention_heads=2
    )
    model = Query2LabelForMultiLabelClassification(config).eval()
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 3)
    model.save_pretrained(tmp_path)
    reloaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path).eval()
    pixels = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(pixels).logits, reloaded(pixels).logits)


def test_base_model_returns_label_embeddings(tiny_model):
    outputs = tiny_model.model(torch.randn(2, 3, 64, 64))
    assert outputs.last_hidden_state.shape == (2, 5, 32)
    assert outputs.feature_map_size == (2, 2)
    assert isinstance(tiny_model.model, Query2LabelModel)
    assert isinstance(tiny_model(torch.randn(1, 3, 64, 64), return_dict=False), tuple)


def test_configuration_errors_name_the_fix():
    with pytest.raises(ValueError, match="use_input_projection=True"):
        Query2LabelForMultiLabelClassification(tiny_config(use_input_projection=False))
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(hidden_size=30)
    with pytest.raises(ValueError, match="timm"):
        Query2LabelForMultiLabelClassification(tiny_config(backbone="no_such_net"))
    with pytest.raises(ValueError, match="activation_function"):
        tiny_config(activation_function="tanhh")
    with pytest.raises(ValueError, match="frozen_backbone_modules"):
        Query2LabelForMultiLabelClassification(tiny_config(frozen_backbone_modules=["layer9"]))


def test_config_defaults_are_the_official_model():
    config = Query2LabelConfig(num_labels=80)
    assert (config.backbone, config.hidden_size, config.encoder_layers, config.decoder_layers) == ("resnet101", 2048, 1, 2)
    assert (config.num_attention_heads, config.intermediate_size, config.image_size) == (4, 8192, 448)
    assert config.problem_type == "multi_label_classification"
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification", "AutoImageProcessor"}


def test_cvt_and_convnext_backbones_from_transformers():
    from transformers import ConvNextConfig, CvtConfig

    cvt = CvtConfig(embed_dim=[8, 16, 32], depth=[1, 2, 3], num_heads=[1, 2, 4], cls_token=[False, False, True])
    convnext = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, out_features=["stage2"])
    for backbone, channels, output_norm, stride in [(cvt, 32, True, 16), (convnext, 16, False, 8)]:
        config = Query2LabelConfig(
            backbone_config=backbone, backbone_output_layer_norm=output_norm, num_labels=3, hidden_size=channels,
            intermediate_size=32, num_attention_heads=2,
        )  # fmt: skip
        model = Query2LabelForMultiLabelClassification(config).eval()
        outputs = model(torch.randn(2, 3, 64, 96), output_attentions=True)
        assert outputs.logits.shape == (2, 3) and outputs.cross_attentions[0].shape[-2:] == (64 // stride, 96 // stride)
        assert (model.model.backbone.output_norm is not None) == output_norm


def test_swin_backbone_through_forward_features_at_any_size(tmp_path):
    # The layout the Swin converter uses: the whole timm network, final LayerNorm included, masks built per input.
    config = Query2LabelConfig(
        backbone="swin_tiny_patch4_window7_224", backbone_kwargs={"features_only": False, "dynamic_img_size": True},
        num_labels=3, hidden_size=768, intermediate_size=64, num_attention_heads=4, encoder_layers=0, decoder_layers=1,
    )  # fmt: skip
    with torch.device("meta"):
        keys = set(Query2LabelForMultiLabelClassification(config).state_dict())
    assert "model.backbone.model.norm.weight" in keys and not any("head" in key for key in keys)
    model = Query2LabelForMultiLabelClassification(config).eval()
    for height, width in [(224, 224), (160, 288)]:
        outputs = model(torch.randn(1, 3, height, width), output_attentions=True)
        assert outputs.logits.shape == (1, 3) and outputs.cross_attentions[0].shape[-2:] == (height // 32, width // 32)
    # Swin's relative position index is not saved: loading on the meta device must rebuild it.
    model.save_pretrained(tmp_path)
    reloaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path).eval()
    pixels = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(reloaded(pixels).logits, model(pixels).logits)


def tiny_cvt_config(**overrides):
    from transformers import CvtConfig

    cvt = CvtConfig(embed_dim=[8, 16, 32], depth=[1, 2, 3], num_heads=[1, 2, 4], cls_token=[False, False, True])
    kwargs = dict(
        backbone_config=cvt, backbone_output_layer_norm=True, num_labels=6, hidden_size=32, intermediate_size=32,
        num_attention_heads=2, image_size=64,
    )  # fmt: skip
    kwargs.update(overrides)
    return Query2LabelConfig(**kwargs)


def test_cvt_uses_the_authors_quick_gelu():
    """The authors' CvT computes every MLP as fc2(x * sigmoid(1.702 x)) with x = fc1(input); transformers' CvtModel
    has exact GELU. `backbone_hidden_act="quick_gelu"` makes ours the authors' construction."""
    torch.manual_seed(0)
    quick = Query2LabelForMultiLabelClassification(tiny_cvt_config(backbone_hidden_act="quick_gelu")).eval()
    exact = Query2LabelForMultiLabelClassification(tiny_cvt_config()).eval()
    exact.load_state_dict(quick.state_dict())
    backbone = quick.model.backbone.model
    assert not any(isinstance(module, torch.nn.GELU) for module in backbone.modules())
    intermediates = [module for module in backbone.modules() if type(module).__name__ == "CvtIntermediate"]
    assert len(intermediates) == 6  # one per block: depths 1 + 2 + 3
    inputs = torch.randn(2, 5, 8)
    block = intermediates[0]
    projected = block.dense(inputs)
    torch.testing.assert_close(block(inputs), projected * torch.sigmoid(1.702 * projected))  # the authors' QuickGELU
    pixels = torch.randn(2, 3, 64, 64)
    assert (quick(pixels).logits - exact(pixels).logits).abs().max() > 1e-4  # the activation matters


@pytest.mark.slow
def test_quick_gelu_is_rebuilt_from_a_saved_folder_with_remote_code(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from modeling_q2l import Query2LabelImageProcessor
    from modeling_q2l.hub.remote_code_check import check_folder_without_package

    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(tiny_cvt_config(backbone_hidden_act="quick_gelu")).eval()
    model.save_pretrained(tmp_path)
    processor = Query2LabelImageProcessor(size={"height": 64, "width": 64})
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["backbone_hidden_act"] == "quick_gelu"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    seen = check_folder_without_package(tmp_path, tmp_path / "image.png")
    with torch.no_grad():
        expected = torch.sigmoid(model(**processor(image, return_tensors="pt")).logits[0])
    got = torch.tensor([seen["sigmoid_of_logits"][model.config.id2label[i]] for i in range(6)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_unknown_backbone_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="backbone_hidden_act='quick_gelu2'"):
        tiny_cvt_config(backbone_hidden_act="quick_gelu2")
