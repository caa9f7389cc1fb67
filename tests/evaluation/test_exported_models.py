"""Which int8 model `--dtype int8` loads from a folder: the one `scripts/quantize.py` wrote last, else the one there is,
else one line saying how to make one."""

import json

import pytest

from modeling_q2l.evaluation.exported_models import int8_file


def test_the_int8_model_quantized_last_is_the_one_loaded(tmp_path):
    for name in ("model.int8.onnx", "model.int8.pt2"):
        (tmp_path / name).write_bytes(b"")
    for written in ("model.int8.pt2", "model.int8.onnx"):
        (tmp_path / "quantization.json").write_text(json.dumps({"int8_model": str(tmp_path / written)}))
        assert int8_file(tmp_path) == written


def test_without_a_record_the_int8_model_there_is_is_loaded(tmp_path):
    (tmp_path / "model.int8.pt2").write_bytes(b"")
    assert int8_file(tmp_path) == "model.int8.pt2"
    # a record naming a file that is gone (or written elsewhere with --output) does not hide the one there is
    (tmp_path / "quantization.json").write_text(json.dumps({"int8_model": "/elsewhere/model.int8.onnx"}))
    assert int8_file(tmp_path) == "model.int8.pt2"


def test_a_folder_without_an_int8_model_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"No int8 model \(model.int8.onnx or model.int8.pt2\) in .*python scripts/quantize.py --model"):
        int8_file(tmp_path)
