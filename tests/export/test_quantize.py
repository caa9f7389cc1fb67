"""int8 through ONNX Runtime: one command writes the quantized model beside the weights and measures it against
float32; prediction and evaluation load it with `--dtype int8`; the layer groups kept in float32 are what was asked."""

import json

import pytest
import torch
from helpers import EMBEDDED_DATASET, FASHION_NAMES, save_model_folder, tiny_config

# exports and quantizes: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from modeling_q2l.cli.commands import quantize

    config = tiny_config(num_labels=10, id2label=dict(enumerate(FASHION_NAMES)), label2id={n: i for i, n in enumerate(FASHION_NAMES)})
    torch.manual_seed(0)
    folder = save_model_folder(tmp_path_factory.mktemp("int8"), config)
    result = quantize([
        "--model", str(folder), "--dataset_name", str(EMBEDDED_DATASET), "--num_calibration", "16",
        "--max_eval_samples", "24", "--keep_float", "first_convolution", "attention_products",
    ])  # fmt: skip
    return folder, result


def test_one_command_writes_the_int8_model_and_its_measured_answers(quantized):
    folder, result = quantized
    assert (folder / "model.int8.onnx").is_file() and (folder / "model.onnx").is_file()
    assert result["calibration_images"] == 16 and result["keep_float"] == ["first_convolution", "attention_products"]
    rows = json.loads((folder / "quantization.json").read_text())["measured"]["validation"]
    assert set(rows) == {"float32", "int8"} and rows["float32"]["decisions_unchanged"] == 1.0
    assert 0 <= rows["int8"]["mAP"] <= 1 and 0.5 < rows["int8"]["decisions_unchanged"] <= 1.0


def test_the_int8_model_holds_int8_layers_except_the_groups_kept_in_float(quantized):
    import onnx

    from modeling_q2l.export.quantize import layer_groups

    folder, _ = quantized
    groups = layer_groups(folder / "model.onnx")
    assert groups["first_convolution"] and groups["attention_products"] and groups["transformer"]
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    quantized_inputs = {name for node in graph.node if node.op_type == "DequantizeLinear" for name in node.output}
    by_name = {node.name: node for node in graph.node}

    def quantized_node(name):  # a node reading a dequantized (int8) tensor
        return any(value in quantized_inputs for value in by_name[name].input)

    assert not any(quantized_node(name) for name in groups["first_convolution"] + groups["attention_products"])
    assert all(quantized_node(name) for name in groups["transformer"])


def test_prediction_and_evaluation_take_the_int8_model(quantized, capsys, tmp_path):
    from helpers import validation_images

    from modeling_q2l.cli.commands import evaluate, predict

    folder, _ = quantized
    validation_images(1)[0].save(tmp_path / "image.png")
    assert predict(["--model", str(folder), "--dtype", "int8", "--threshold", "0", str(tmp_path / "image.png")]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert len(answer["labels"]) == 10
    report = evaluate(["--model", str(folder), "--dtype", "int8", "--dataset_name", str(EMBEDDED_DATASET), "--max_eval_samples", "24"])
    assert report.num_images == 24 and 0 <= report.mAP <= 1


def test_an_unknown_layer_group_and_a_missing_int8_model_are_one_line(tmp_path):
    from modeling_q2l.evaluation.predict import load_classifier
    from modeling_q2l.export.quantize import quantize_onnx

    with pytest.raises(ValueError, match="unknown layer groups \\['softmax'\\]"):
        quantize_onnx(tmp_path / "model.onnx", tmp_path / "out.onnx", [], keep_float=["softmax"])
    folder = save_model_folder(tmp_path / "plain")
    with pytest.raises(ValueError, match="No int8 model \\(model.int8.onnx or model.int8.pt2\\) in .*scripts/quantize.py"):
        load_classifier(str(folder), "cpu", "int8")
