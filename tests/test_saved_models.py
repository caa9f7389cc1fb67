"""A damaged saved model (weights cut short by an interrupted save or copy, a config that is not JSON, a missing
processor file, a config edited away from its weights) ends every command that loads it in one line that names the
problem and the fix, never in a traceback; publishing refuses it before writing anything."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import REPO, save_model_folder, tiny_config

from modeling_q2l.cli.arguments import PublishArguments
from modeling_q2l.evaluation.predict import load_classifier
from modeling_q2l.export.onnx import export_saved_model
from modeling_q2l.hub.publish import publish
from modeling_q2l.training.model_setup import load_with_labels
from modeling_q2l.zoo.registry import create_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    save_model_folder(folder, tiny_config(num_labels=7))
    return folder


def damaged(saved, tmp_path, damage: str):
    folder = tmp_path / damage
    shutil.copytree(saved, folder)
    if damage == "weights_cut_short":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "config_not_json":
        with open(folder / "config.json", "a") as handle:
            handle.write("}{")
    elif damage == "no_processor":
        (folder / "preprocessor_config.json").unlink()
    elif damage == "config_of_other_weights":
        config = json.loads((folder / "config.json").read_text())
        config["id2label"] = {str(i): config["id2label"][str(i)] for i in range(5)}
        config["label2id"] = {name: int(i) for i, name in config["id2label"].items()}
        (folder / "config.json").write_text(json.dumps(config))
    return folder


DAMAGES = {
    "weights_cut_short": r"The weights of the model folder .*weights_cut_short cannot be read .*cut short or damaged; save the model again",
    "config_not_json": r"Cannot load the model folder .*config_not_json: .*config.json' is not a valid JSON file.*save the model again",
    "no_processor": r"Cannot load the model folder .*no_processor: .*preprocessor_config.json",
    "config_of_other_weights": r"The weights of the model folder .*config_of_other_weights do not fit its config.json.*put back the config.json",
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_loading_a_damaged_folder_names_the_problem_and_the_fix(saved, tmp_path, damage):
    with pytest.raises(ValueError, match=DAMAGES[damage]):
        load_classifier(str(damaged(saved, tmp_path, damage)), "cpu")


def test_every_loader_of_saved_models_says_the_same(saved, tmp_path, monkeypatch):
    import modeling_q2l.zoo.registry as registry

    monkeypatch.setattr(registry, "variant_config", lambda name: tiny_config())  # the folder passes as the variant
    folder = damaged(saved, tmp_path, "weights_cut_short")
    message = DAMAGES["weights_cut_short"]
    with pytest.raises(ValueError, match=message):
        export_saved_model(folder, tmp_path / "model.onnx")
    with pytest.raises(ValueError, match=message):
        load_with_labels(str(folder), [f"label {i}" for i in range(7)])
    with pytest.raises(ValueError, match=message):
        create_model("Q2L-R101-448", pretrained=str(folder))
    with pytest.raises(ValueError, match=message):
        publish(PublishArguments(model=str(folder), repo_id="me/x", dry_run=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()  # refused before anything was written
    assert load_classifier(str(saved), "cpu")[0].config.num_labels == 7  # the undamaged folder loads


@pytest.mark.slow
def test_the_command_line_prints_one_line(saved, tmp_path):
    folder = damaged(saved, tmp_path, "weights_cut_short")
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (30, 30, 30)).save(image)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "predict.py"), "--model", str(folder), str(image)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: The weights of the model folder") and len(result.stderr.strip().splitlines()) == 1


def test_a_mistyped_local_folder_is_named_at_once_without_asking_the_hub(tmp_path, monkeypatch):
    """`outputs/no-such-model` where `outputs/` exists is a folder path, not a Hub id: one line naming it, and the Hub
    is never asked (transformers would retry the network for half a minute first)."""
    import huggingface_hub

    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: pytest.fail("asked the Hub"))
    for source in ("outputs/no-such-model", "./model", "/nowhere/model"):
        with pytest.raises(ValueError, match=r"No model folder at /.*: check the path"):
            load_classifier(source, "cpu")
    from modeling_q2l.saved_models import missing_local_folder

    assert missing_local_folder("org/model") is None  # a Hub id: left to the Hub
