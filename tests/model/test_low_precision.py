"""bfloat16 inference as users ask for it (transformers' `dtype=`, the pipeline's, `--dtype` of the scripts): the
backbone feeds oneDNN channels-last tensors without being asked, the answers stay close to float32's, and a CPU
without native bfloat16 says once that it will be slower."""

import json
import logging

import pytest
import torch
from helpers import FASHION_NAMES, save_model_folder, tiny_config, validation_images
from transformers import AutoModelForImageClassification, pipeline

from modeling_q2l.model import inference_query2label


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    config = tiny_config(num_labels=10, id2label=dict(enumerate(FASHION_NAMES)), label2id={n: i for i, n in enumerate(FASHION_NAMES)})
    torch.manual_seed(0)
    return save_model_folder(tmp_path_factory.mktemp("bf16"), config)


def first_convolution_inputs(model) -> list[torch.Tensor]:
    seen = []
    conv = next(module for module in model.get_backbone().model.modules() if isinstance(module, torch.nn.Conv2d))
    conv.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    return seen


def test_a_model_loaded_in_bfloat16_feeds_its_convolutions_channels_last(folder):
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, dtype=torch.bfloat16).eval()
    assert model.dtype == torch.bfloat16
    seen = first_convolution_inputs(model)
    with torch.inference_mode():
        model(pixel_values=torch.randn(2, 3, 64, 64, dtype=torch.bfloat16))
    assert seen[0].dtype == torch.bfloat16 and seen[0].is_contiguous(memory_format=torch.channels_last)
    plain = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()  # float32, not optimised
    seen = first_convolution_inputs(plain)
    with torch.inference_mode():
        plain(pixel_values=torch.randn(2, 3, 64, 64))
    assert not seen[0].is_contiguous(memory_format=torch.channels_last)  # PyTorch's defaults until optimize_for_inference


def test_the_pipeline_in_bfloat16_answers_as_in_float32(folder):
    images = validation_images(4)
    full = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    half = pipeline("image-classification", model=str(folder), trust_remote_code=True, dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16
    for image in images:
        expected = {row["label"]: row["score"] for row in full(image, top_k=None)}
        got = {row["label"]: row["score"] for row in half(image, top_k=None)}
        assert got.keys() == expected.keys()
        assert max(abs(got[label] - expected[label]) for label in got) < 0.02  # bfloat16 keeps 8 bits of mantissa


def test_predict_takes_a_dtype(folder, tmp_path, capsys):
    from modeling_q2l.cli.commands import predict

    validation_images(1)[0].save(tmp_path / "image.png")
    assert predict(["--model", str(folder), "--dtype", "bfloat16", "--threshold", "0", "--device", "cpu", str(tmp_path / "image.png")]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert len(answer["labels"]) == 10
    with pytest.raises(SystemExit):  # argparse's own message for a value outside the choices
        predict(["--model", str(folder), "--dtype", "int4", str(tmp_path / "image.png")])


def test_a_cpu_without_native_bfloat16_says_so_once(folder, monkeypatch, caplog):
    monkeypatch.setattr(inference_query2label, "native_arithmetic", lambda dtype: False)
    monkeypatch.setattr(inference_query2label, "_WARNED_DTYPES", set())
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, dtype=torch.bfloat16).eval()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        for _ in range(3):
            model(pixel_values=torch.randn(1, 3, 64, 64, dtype=torch.bfloat16))
    warnings = [record for record in caplog.records if "torch.bfloat16 inference is likely slower than float32" in record.getMessage()]
    assert len(warnings) == 1 and "no AMX" in warnings[0].getMessage()


def test_native_arithmetic_follows_the_instruction_set_limit(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert inference_query2label.native_arithmetic(torch.bfloat16)
    for held in ("AVX2", "AVX512_CORE_BF16"):  # oneDNN held to an older CPU's instructions, or to AVX512-BF16 alone
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", held)
        assert not inference_query2label.native_arithmetic(torch.bfloat16), held
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert not inference_query2label.native_arithmetic(torch.bfloat16)
