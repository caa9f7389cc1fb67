"""`scripts/quantize.py`'s mistakes are one line each, found before any data is read: a backend whose package is not
installed names its extra, an unknown layer group lists the groups."""

import sys

import pytest
from helpers import save_model_folder

from modeling_q2l.cli.commands import quantize
from modeling_q2l.extras import MissingExtraError

NO_DATASET = "no/such-dataset"  # reading it would fail differently: the checks come first


def test_the_pytorch_backend_without_torchao_names_its_extra(tmp_path, monkeypatch):
    folder = save_model_folder(tmp_path / "model")
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao -> ImportError
    with pytest.raises(MissingExtraError, match=r'needs torchao, which is not installed: pip install "modeling-q2l\[int8\]"'):
        quantize(["--model", str(folder), "--dataset_name", NO_DATASET, "--backend", "pytorch"])


def test_an_unknown_layer_group_lists_the_groups(tmp_path):
    folder = save_model_folder(tmp_path / "model")
    with pytest.raises(ValueError, match=r"unknown layer groups \['softmax'\]; the groups are first_convolution, depthwise_convolutions"):
        quantize(["--model", str(folder), "--dataset_name", NO_DATASET, "--backend", "pytorch", "--keep_float", "softmax"])
