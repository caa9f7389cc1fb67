"""The Hub user's path: a saved folder loads and runs where this package cannot be imported."""

import math
import re

import pytest
import torch
from helpers import save_model_folder, tiny_config
from transformers import pipeline

from modeling_q2l.hub.remote_code_check import check_folder_without_package

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow

LABELS = ["cat", "dog", "car", "tree", "person"]


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("q2l")
    config = tiny_config(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    torch.manual_seed(0)
    save_model_folder(folder, config)
    return folder


def test_saved_folder_has_auto_map_and_code_files(saved_folder):
    import json

    config = json.loads((saved_folder / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification", "AutoImageProcessor"}
    processor = json.loads((saved_folder / "preprocessor_config.json").read_text())
    assert processor["auto_map"]["AutoImageProcessor"] == "image_processing_query2label.Query2LabelImageProcessor"
    for name in ["configuration_query2label.py", "modeling_query2label.py", "image_processing_query2label.py", "asymmetric_loss.py",
                 "inference_query2label.py"]:
        text = (saved_folder / name).read_text()
        assert not re.search(r"^\s*(from|import) modeling_q2l", text, re.MULTILINE)  # flat siblings only


def test_loads_and_runs_in_a_process_without_the_package(saved_folder):
    seen = check_folder_without_package(saved_folder)
    assert seen["model_module"].startswith("transformers_modules.")
    assert seen["processor_module"].startswith("transformers_modules.")
    assert seen["pipeline_module"].startswith("transformers_modules.")  # the multi-label pipeline from the folder
    predictions = seen["predictions"]
    assert sorted(p["label"] for p in predictions) == sorted(LABELS)  # top_k=None gives every label
    for prediction in predictions:  # independent sigmoid per label, not a softmax
        assert math.isclose(prediction["score"], seen["sigmoid_of_logits"][prediction["label"]], rel_tol=1e-5)
    assert not math.isclose(sum(p["score"] for p in predictions), 1.0, rel_tol=1e-3)
    # by default: the labels that reach 0.5 (this config has no fitted thresholds), best first
    expected = sorted((p for p in predictions if p["score"] >= 0.5), key=lambda p: -p["score"])
    assert seen["default_predictions"] == expected


def test_pipeline_in_process_with_threshold(saved_folder):
    classifier = pipeline("image-classification", model=str(saved_folder), trust_remote_code=True)
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8))
    scores = classifier(image, top_k=None)
    assert len(scores) == 5
    assert len(classifier(image, top_k=2)) == 2


def test_broken_folder_reports_the_subprocess_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="does not load without this package"):
        check_folder_without_package(tmp_path)
