"""transformers' common model-test discipline (`ModelTesterMixin`'s checks), written for Query2Label and run on a
tiny timm backbone and a tiny transformers backbone."""

import pytest
import torch
from helpers import tiny_config, transformers_config
from safetensors.torch import load_file, save_file

from modeling_q2l import (
    Query2LabelConfig,
    Query2LabelForMultiLabelClassification,
    Query2LabelModel,
)

NUM_LABELS = 7


def timm_config(**overrides):
    return tiny_config(num_labels=NUM_LABELS, dropout=0.0, attention_dropout=0.0, **overrides)


BACKBONES = {"timm": timm_config, "transformers": transformers_config}


@pytest.fixture(params=sorted(BACKBONES))
def make_config(request):
    return BACKBONES[request.param]


def new_model(config, seed=0):
    torch.manual_seed(seed)
    return Query2LabelForMultiLabelClassification(config).eval()


def pixels(batch=3, height=64, width=96, seed=1):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_save_and_load_round_trip(make_config, tmp_path):
    model = new_model(make_config())
    model.save_pretrained(tmp_path)
    reloaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path).eval()
    saved, loaded = model.config.to_dict(), reloaded.config.to_dict()
    saved.pop("_name_or_path"), loaded.pop("_name_or_path")
    assert type(reloaded.config) is Query2LabelConfig and loaded == saved
    torch.testing.assert_close(reloaded(pixels()).logits, model(pixels()).logits, rtol=0, atol=0)
    assert reloaded.state_dict().keys() == model.state_dict().keys()


def test_from_pretrained_initialises_every_weight_the_checkpoint_lacks(make_config, tmp_path):
    """`from_pretrained` builds on the meta device: what the file lacks must be initialised as a new model would."""
    model = new_model(make_config())
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = ["model.label_embeddings.weight", "classifier.weight", "model.decoder.layers.0.cross_attn.q_proj.weight",
               "model.decoder.layers.0.cross_attn.q_proj.bias", "model.decoder.layer_norm.weight"]  # fmt: skip
    for key in dropped:
        del weights[key]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    reloaded = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path)
    state = reloaded.state_dict()
    hidden = model.config.hidden_size
    assert 0.6 < state["model.label_embeddings.weight"].std() < 1.4  # N(0, 1)
    assert state["classifier.weight"].abs().max() <= hidden**-0.5  # uniform(-1/sqrt(d), 1/sqrt(d))
    assert state["classifier.weight"].std() > 0.1 * hidden**-0.5
    xavier = (6 / (2 * hidden)) ** 0.5
    assert 0 < state["model.decoder.layers.0.cross_attn.q_proj.weight"].abs().max() <= xavier
    assert torch.equal(state["model.decoder.layers.0.cross_attn.q_proj.bias"], torch.zeros(hidden))
    assert torch.equal(state["model.decoder.layer_norm.weight"], torch.ones(hidden))
    for key, value in model.state_dict().items():  # everything else is loaded untouched
        if key not in dropped:
            assert torch.equal(state[key], value), key
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


def test_a_body_checkpoint_loads_into_the_classifier(make_config, tmp_path):
    body = Query2LabelModel(make_config())
    body.save_pretrained(tmp_path)
    model = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path)
    for key, value in body.state_dict().items():
        assert torch.equal(model.model.state_dict()[key], value), key
    assert torch.isfinite(model.classifier.weight).all() and model.classifier.weight.abs().max() > 0


def test_batching_equivalence(make_config):
    model = new_model(make_config())
    batch = pixels(batch=4)
    together = model(batch).logits
    alone = torch.cat([model(batch[i : i + 1]).logits for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_attention_and_hidden_state_outputs(make_config):
    config = make_config(encoder_layers=2, decoder_layers=3, keep_other_decoder_self_attention=True)
    model = new_model(config)
    outputs = model(pixels(batch=2), output_attentions=True, output_hidden_states=True)
    heads, hidden = config.num_attention_heads, config.hidden_size
    height, width = model.model.backbone(pixels(batch=2)).shape[-2:]
    assert len(outputs.encoder_attentions) == 2
    assert outputs.encoder_attentions[0].shape == (2, heads, height * width, height * width)
    assert len(outputs.encoder_hidden_states) == 3 and outputs.encoder_hidden_states[0].shape == (2, height * width, hidden)
    assert len(outputs.decoder_hidden_states) == 4 and outputs.decoder_hidden_states[-1].shape == (2, NUM_LABELS, hidden)
    assert outputs.decoder_attentions[0] is None  # the first decoder layer has no self-attention by default
    assert outputs.decoder_attentions[1].shape == (2, heads, NUM_LABELS, NUM_LABELS)
    assert len(outputs.cross_attentions) == 3
    for maps in outputs.cross_attentions:
        assert maps.shape == (2, heads, NUM_LABELS, height, width)
        torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, heads, NUM_LABELS))
    plain = model(pixels(batch=2))
    assert plain.cross_attentions is None and plain.encoder_attentions is None and plain.decoder_hidden_states is None
    assert outputs.to_tuple()[0] is outputs.logits  # no loss without labels: logits come first


def test_return_dict_false_gives_a_tuple(make_config):
    model = new_model(make_config())
    labels = torch.ones(3, NUM_LABELS)
    loss, logits = model(pixels(), labels=labels, return_dict=False)
    assert loss.ndim == 0 and logits.shape == (3, NUM_LABELS)


def test_gradient_checkpointing_gives_the_same_gradients(make_config):
    config = make_config()
    assert Query2LabelForMultiLabelClassification.supports_gradient_checkpointing
    labels = (torch.rand(3, NUM_LABELS, generator=torch.Generator().manual_seed(2)) < 0.5).float()

    def gradients(checkpointing: bool):
        model = new_model(config).train()
        if checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.23
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert all(layer.gradient_checkpointing for layer in model.model.encoder.layers)
            assert all(layer.gradient_checkpointing for layer in model.model.decoder.layers)
            assert model.model.backbone.gradient_checkpointing
        model(pixels(), labels=labels).loss.backward()
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_training_step_reduces_the_loss(make_config):
    model = new_model(make_config()).train()
    batch, labels = pixels(batch=4), (torch.rand(4, NUM_LABELS, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = model(batch, labels=labels).loss
    first.backward()
    untouched = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert untouched == []
    optimizer.step()
    optimizer.zero_grad()
    for _ in range(4):
        loss = model(batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss < first


def test_eager_and_sdpa_attention_agree(make_config, tmp_path):
    new_model(make_config()).save_pretrained(tmp_path)
    eager = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    sdpa = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    torch.testing.assert_close(sdpa(pixels()).logits, eager(pixels()).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_matches_eager_mode():
    model = new_model(timm_config())
    expected = model(pixels()).logits
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(pixels()).logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_loading_and_inference(make_config, tmp_path, dtype):
    model = new_model(make_config())
    model.save_pretrained(tmp_path)
    half = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path, dtype=dtype).eval()
    assert all(p.dtype == dtype for p in half.parameters())
    logits = half(pixels().to(dtype)).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    torch.testing.assert_close(logits.float(), model(pixels()).logits, rtol=0.1, atol=0.1)
    labels = torch.ones(3, NUM_LABELS)
    assert half(pixels().to(dtype), labels=labels).loss.dtype == torch.float32  # the loss is computed in float32


def test_device_map_auto_loading(make_config, tmp_path):
    model = new_model(make_config())
    model.save_pretrained(tmp_path)
    mapped = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path, device_map="auto").eval()
    torch.testing.assert_close(mapped(pixels()).logits, model(pixels()).logits, rtol=0, atol=0)
    # Spread over small devices, whole encoder and decoder layers land on one device each (`_no_split_modules`).
    from accelerate import infer_auto_device_map

    size = sum(p.numel() * 4 for p in model.parameters())
    device_map = infer_auto_device_map(
        model, max_memory={0: size // 3, 1: size // 3, "cpu": 10 * size}, no_split_module_classes=model._no_split_modules
    )
    assert len(set(device_map.values())) > 1
    for name in device_map:  # e.g. model.encoder.layers.0, never inside it
        assert not name.startswith(("model.encoder.layers.", "model.decoder.layers.")) or name.count(".") == 3, name
