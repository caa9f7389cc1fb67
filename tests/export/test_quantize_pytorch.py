"""int8 through PyTorch's PT2E flow (`scripts/quantize.py --backend pytorch`): one command writes `model.int8.pt2`
beside the weights and measures it; `--dtype int8` then loads that file (the one quantized last; evaluation's path is the command's own
measurement), compiles it and answers as the float32 model does within int8's rounding; the layer groups kept in float32 are what was asked."""

import json

import pytest
import torch
from helpers import EMBEDDED_DATASET, FASHION_NAMES, save_model_folder, tiny_config

pytest.importorskip("torchao")

# quantizes and compiles: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow

KEPT = ["first_convolution", "input_projection"]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from modeling_q2l.cli.commands import quantize

    labels = {"id2label": dict(enumerate(FASHION_NAMES)), "label2id": {name: index for index, name in enumerate(FASHION_NAMES)}}
    torch.manual_seed(0)
    folder = save_model_folder(tmp_path_factory.mktemp("int8-pt2e"), tiny_config(num_labels=10, **labels))
    result = quantize([
        "--model", str(folder), "--dataset_name", str(EMBEDDED_DATASET), "--backend", "pytorch", "--num_calibration", "16",
        "--max_eval_samples", "8", "--keep_float", *KEPT,
    ])  # fmt: skip
    return folder, result


def test_one_command_writes_the_pt2_model_and_its_measured_answers(quantized):
    folder, result = quantized
    assert (folder / "model.int8.pt2").is_file() and not (folder / "model.onnx").exists()
    record = json.loads((folder / "quantization.json").read_text())
    assert record["backend"] == "pytorch" and record["keep_float"] == KEPT and record["reduce_range"] is True
    assert record["calibration_method"] == "histogram"  # torchao's x86 quantizer's observer for static int8
    rows = record["measured"]["validation"]
    assert rows["float32"]["decisions_unchanged"] == 1.0
    # a random tiny model on 8 images: int8 rounding moves its mAP a little and few of its 80 decisions
    assert abs(rows["int8"]["mAP"] - rows["float32"]["mAP"]) < 0.1 and rows["int8"]["decisions_unchanged"] > 0.9


def test_convolutions_and_linear_layers_are_int8_except_the_groups_kept_in_float(quantized):
    """In the saved graph a quantized layer reads its weight through `dequantize_per_channel` (int8 storage)."""
    from modeling_q2l.export.pt2e import module_groups
    from modeling_q2l.model import Query2LabelForMultiLabelClassification

    folder, _ = quantized
    groups = module_groups(Query2LabelForMultiLabelClassification.from_pretrained(folder))
    graph = torch.export.load(str(folder / "model.int8.pt2")).graph
    layers = {}  # module name -> whether its weight is int8
    for node in graph.nodes:
        if node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            module = list(node.meta["nn_module_stack"].values())[-1][0]
            weight = node.args[1]
            layers[module] = "dequantize_per_channel" in str(getattr(weight, "target", ""))
    kept = {name for group in KEPT for name in groups[group]}
    assert kept and groups["transformer"] and groups["backbone"]
    for name in kept:
        assert layers[name] is False, name
    for name in groups["transformer"] + [name for name in groups["backbone"] if name not in kept]:
        assert layers[name] is True, name


def test_prediction_takes_the_pt2_model_at_any_batch_size(quantized, capsys, caplog, tmp_path):
    from helpers import validation_images

    from modeling_q2l.cli.commands import predict
    from modeling_q2l.evaluation.exported_models import CompiledInt8Classifier
    from modeling_q2l.evaluation.predict import load_classifier

    folder, _ = quantized
    model, processor = load_classifier(str(folder), "cpu", "int8")
    assert isinstance(model, CompiledInt8Classifier)
    reference, _ = load_classifier(str(folder), "cpu", "float32")
    images = validation_images(3)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = reference(pixel_values=pixels).logits
    for batch in (pixels[:1], pixels, pixels):  # the exported batch size is free: 1 and 3 both run
        assert (model(pixel_values=batch).logits - expected[: len(batch)]).abs().max() < 0.25
    # the wait of each new batch size is announced, once
    compiling = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Compiling model.int8.pt2")]
    assert compiling == ["Compiling model.int8.pt2 for batches of 1: once per batch size and process (about a minute on two cores; Inductor's cache shortens it in later processes).", "Compiling model.int8.pt2 for batches of 3: once per batch size and process (about a minute on two cores; Inductor's cache shortens it in later processes)."]
    images[0].save(tmp_path / "image.png")
    assert predict(["--model", str(folder), "--dtype", "int8", "--threshold", "0", str(tmp_path / "image.png")]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert len(answer["labels"]) == 10
    with pytest.raises(ValueError, match="for inference: train the float32 model"):
        model.train()
