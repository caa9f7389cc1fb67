"""A saved folder on the transformers releases users have: every 5.x loads it and gives the same scores; 4.x stops at
once with one line naming the minimum. `.ci/run` builds interpreters with the oldest supported release (and 4.x) and
names them in Q2L_COMPAT_PYTHONS / Q2L_TRANSFORMERS4_PYTHON; without them only the running release is checked."""

import os
import subprocess

import pytest
import torch
from helpers import FASHION_NAMES, tiny_config, transformers_config, validation_images
from PIL import Image

from modeling_q2l import Query2LabelForMultiLabelClassification, Query2LabelImageProcessor
from modeling_q2l.hub.remote_code_check import check_folder_without_package

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow

OTHER_RELEASES = [path for path in os.environ.get("Q2L_COMPAT_PYTHONS", "").split(os.pathsep) if path]
TRANSFORMERS4 = os.environ.get("Q2L_TRANSFORMERS4_PYTHON")


@pytest.fixture(scope="module", params=["timm", "transformers"])
def folder_and_images(request, tmp_path_factory):
    """A saved folder with a timm backbone whose two feature levels are fused onto one grid (as the demo's), and one
    with a transformers backbone (a sub-config, as the CvT variant)."""
    folder = tmp_path_factory.mktemp(f"folder-{request.param}")
    labels = dict(id2label=dict(enumerate(FASHION_NAMES)), label2id={n: i for i, n in enumerate(FASHION_NAMES)}, label_thresholds=[0.45] * 10)
    if request.param == "timm":
        config = tiny_config(num_labels=10, backbone_kwargs={"out_indices": [2, 4]}, fuse_feature_levels=True, feature_fusion_channels=48, encoder_layers=0, **labels)
    else:
        config = transformers_config(num_labels=10, **labels)
    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(config)
    for name, parameter in model.named_parameters():
        if "level_fusion" in name:  # zero at the start of training: give the fused level a say in the scores
            torch.nn.init.normal_(parameter, std=0.2)
    assert request.param != "timm" or any("level_fusion" in name for name, _ in model.named_parameters())
    model.save_pretrained(folder)
    Query2LabelImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    images = {"rgb": folder.parent / "rgb.png", "rgba": folder.parent / "rgba.png"}
    validation_images(1, "RGB")[0].save(images["rgb"])
    rgba = validation_images(1, "RGBA")[0]
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))  # transparency composited on white, in every release
    rgba.save(images["rgba"])
    return folder, images


def scores(result: dict) -> dict:
    return {row["label"]: row["score"] for row in result["predictions"]}


@pytest.mark.skipif(not OTHER_RELEASES, reason="set Q2L_COMPAT_PYTHONS to interpreters with other transformers releases (.ci/run does)")
@pytest.mark.parametrize("python", OTHER_RELEASES)
def test_other_transformers_releases_load_the_folder_and_give_the_same_scores(folder_and_images, python):
    folder, images = folder_and_images
    for image in images.values():
        here, there = check_folder_without_package(folder, image), check_folder_without_package(folder, image, python=python)
        assert there["transformers_version"] != here["transformers_version"]
        assert there["pipeline_module"].endswith("pipeline_query2label") and len(there["predictions"]) == 10
        assert there["default_predictions"] == [row for row in there["predictions"] if row["score"] >= 0.45]  # the config's thresholds
        for seen in (here, there):  # the pipeline opens a path as the PIL image it was given
            assert scores({"predictions": seen["path_predictions"]}) == pytest.approx(scores(seen), abs=1e-6)
        for label, score in scores(here).items():
            assert abs(scores(there)[label] - score) < 1e-4, (image.name, label, there["transformers_version"])


@pytest.mark.skipif(not TRANSFORMERS4, reason="set Q2L_TRANSFORMERS4_PYTHON to an interpreter with transformers 4.x (.ci/run does)")
def test_transformers_4_stops_with_one_line_naming_the_minimum(folder_and_images):
    folder, _ = folder_and_images
    command = "import sys; sys.modules['modeling_q2l'] = None; from transformers import pipeline; pipeline('image-classification', model=sys.argv[1], trust_remote_code=True)"
    result = subprocess.run([TRANSFORMERS4, "-c", command, str(folder)], capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: This Query2Label model needs transformers >= 5.0 (found 4.") and 'pip install -U "transformers>=5"' in last
