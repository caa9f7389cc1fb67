import argparse
import json

import pytest
import torch
from helpers import (
    FIXTURES,
    PARITY_FIXTURES,
    REPO,
    fixture_input,
    official_fixture,
    write_official_release,
)
from transformers import AutoImageProcessor, AutoModelForImageClassification

from modeling_q2l.data.labels import resolve_labels
from modeling_q2l.zoo.convert_official import (
    config_from_official_args,
    convert_official_state_dict,
    read_official_checkpoint,
)


def model_for(record):
    """The model an official config describes, on the meta device (no memory, no initialisation)."""
    from modeling_q2l import Query2LabelForMultiLabelClassification

    args = record["official_args"]
    config = config_from_official_args(args, labels=[str(i) for i in range(args["num_class"])])
    with torch.device("meta"):
        return Query2LabelForMultiLabelClassification(config)


def convert_with_script(tmp_path, record, labels_file=True):
    import importlib.util

    script = REPO / "scripts" / "convert_official_checkpoint.py"
    spec = importlib.util.spec_from_file_location("convert_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checkpoint, config = write_official_release(record, tmp_path)
    argv = ["--checkpoint", str(checkpoint), "--config", str(config), "--output_dir", str(tmp_path / "out")]
    if labels_file:
        names = tmp_path / "names.txt"
        names.write_text("\n".join(f"label {i}" for i in range(record["official_args"]["num_class"])))
        argv += ["--labels", str(names)]
    module.main(argv)
    return tmp_path / "out"


@pytest.mark.parametrize("fixture", PARITY_FIXTURES)
def test_converted_model_reproduces_the_official_logits(tmp_path, fixture):
    record = official_fixture(fixture)
    folder = convert_with_script(tmp_path, record)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(fixture_input(record)).logits
    torch.testing.assert_close(logits, torch.tensor(record["expected_logits"]), rtol=0, atol=1e-4)

    size = record["official_args"]["img_size"]
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert processor.size == {"height": size, "width": size}
    assert model.config.id2label[0] == "label 0"
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_query2label.py"} <= {
        p.name for p in folder.iterdir()
    }


def test_labels_default_to_coco_and_must_fit():
    args = official_fixture(PARITY_FIXTURES[0])["official_args"]
    assert config_from_official_args({**args, "num_class": 80}).id2label[0] == "person"
    assert config_from_official_args(args, labels=resolve_labels("voc")).id2label[19] == "tvmonitor"
    with pytest.raises(ValueError, match="--labels"):
        config_from_official_args(args)  # 20 labels: COCO's 80 names do not fit
    with pytest.raises(ValueError, match="num_class"):
        config_from_official_args(args, labels=["a", "b"])


def test_unknown_backbone_is_a_clear_error():
    args = {**official_fixture(PARITY_FIXTURES[0])["official_args"], "backbone": "vgg16"}
    with pytest.raises(ValueError, match="Unknown official backbone 'vgg16'.*resnet101"):
        config_from_official_args(args, labels=[str(i) for i in range(20)])


def test_a_key_that_maps_nowhere_is_an_error():
    record = official_fixture(PARITY_FIXTURES[0])
    state = {key: torch.zeros(1) for key, _ in record["keys"]}
    state["transformer.extra_gate.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="transformer.extra_gate.weight"):
        convert_official_state_dict(state, "resnet18", model_for(record))


def test_packed_attention_projections_are_split():
    record = official_fixture(PARITY_FIXTURES[0])
    state = {key: torch.arange(torch.Size(shape).numel()).reshape(shape).float() for key, shape in record["keys"]}
    converted = convert_official_state_dict(state, "resnet18", model_for(record))
    packed = state["transformer.decoder.layers.1.multihead_attn.in_proj_weight"]
    assert torch.equal(converted["model.decoder.layers.1.cross_attn.k_proj.weight"], packed[512:1024])
    assert converted["classifier.weight"].shape == (20, 512)
    assert "backbone.1.pe" not in str(list(converted))


def test_untrusted_pickles_need_the_explicit_option(tmp_path):
    path = tmp_path / "ckpt.pkl"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(backbone="resnet101")}, path)
    with pytest.raises(ValueError, match="--allow_unsafe_pickle"):
        read_official_checkpoint(path)
    assert set(read_official_checkpoint(path, allow_unsafe_pickle=True)) == {"w"}


def test_a_shape_mismatch_names_the_tensor(tmp_path):
    from modeling_q2l.zoo.convert_official import convert_official_checkpoint

    record = official_fixture(PARITY_FIXTURES[0])
    checkpoint, config = write_official_release(record, tmp_path)
    args = json.loads(config.read_text())
    config.write_text(json.dumps({**args, "dim_feedforward": 2048}))
    with pytest.raises(ValueError, match="linear1.weight|fc1.weight"):
        convert_official_checkpoint(checkpoint, config, labels=[str(i) for i in range(20)])


MANIFEST = json.loads((FIXTURES / "other-backbones-manifest.json").read_text())


@pytest.mark.parametrize("backbone", sorted(MANIFEST))
def test_every_official_key_of_other_backbones_maps_to_a_tensor_of_the_same_shape(backbone):
    record = MANIFEST[backbone]
    model = model_for(record)
    state = {key: torch.empty(shape, device="meta") for key, shape in record["keys"]}
    converted = convert_official_state_dict(state, backbone, model)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(converted) == set(expected), (sorted(set(expected) - set(converted))[:5], sorted(set(converted) - set(expected))[:5])
    for key, value in converted.items():
        assert value.shape == expected[key], key
    assert model.config.hidden_size == record["official_args"]["hidden_dim"]
    assert model.config.image_size == record["official_args"]["img_size"]


def test_a_swin_buffer_of_the_wrong_shape_is_reported():
    record = MANIFEST["swin_L_384_22k"]
    model = model_for(record)
    state = {key: torch.empty(shape, device="meta") for key, shape in record["keys"]}
    key = next(k for k in state if k.endswith("relative_position_index"))
    state[key] = torch.empty(3, 3, device="meta")
    with pytest.raises(ValueError, match="relative_position_index"):
        convert_official_state_dict(state, "swin_L_384_22k", model)
