"""The main job end to end, on the embedded data with a tiny backbone."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import EMBEDDED_DATASET, REPO, tiny_training_argv
from huggingface_hub import ModelCard
from transformers import TrainerCallback

from modeling_q2l.cli.arguments import parse_training_arguments as parse_arguments
from modeling_q2l.cli.commands import train as main
from modeling_q2l.training.main import run

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    # trained at 64 px, evaluated, saved and run at 80 px (as the main job trains at 128 and runs at 160)
    report = main(tiny_training_argv(output, "--adaptive_asymmetry", "true", "--ema_decay", "0.99", "--inference_image_size", "80", "--extra_eval_split_names", "out_of_layout"))
    return output, report


def test_saves_a_hub_ready_folder(trained):
    output, report = trained
    names = {p.name for p in output.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "eval_results.json", "README.md"} <= names
    assert {"modeling_query2label.py", "configuration_query2label.py", "image_processing_query2label.py", "asymmetric_loss.py"} <= names
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"]["0"] == "T-shirt/top" and "AutoModelForImageClassification" in config["auto_map"]
    assert json.loads((output / "preprocessor_config.json").read_text())["size"] == {"height": 80, "width": 80}
    assert config["image_size"] == 80  # the resolution the model runs at; checkpoints keep the training processor's
    checkpoint = next(output.glob("checkpoint-*"))
    assert json.loads((checkpoint / "preprocessor_config.json").read_text())["size"] == {"height": 64, "width": 64}
    assert json.loads((checkpoint / "config.json").read_text())["image_size"] == 64


def test_reports_every_metric_and_sizes(trained):
    output, report = trained
    saved = json.loads((output / "eval_results.json").read_text())
    for key in ["mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "mAP_small", "mAP_medium", "mAP_large"]:
        assert key in saved, key
    assert len(saved["per_label"]) == 10 and saved["num_images"] == 16
    assert saved["weights"] in ("ema", "regular") and saved["area_thresholds"] == [576, 2304]
    assert saved["torch_threads"] >= 1


def test_model_card_holds_the_measured_results(trained):
    output, report = trained
    card = ModelCard.load(output / "README.md")
    assert card.data.pipeline_tag == "image-classification" and "custom_code" in card.data.tags
    measured = [r for r in card.data.eval_results if r.metric_type == "mAP"]
    assert measured and measured[0].metric_value == pytest.approx(round(100 * report.mAP, 2))
    assert "embedded Fashion-MNIST mosaic" in card.text
    assert "at 80 x 80 px" in card.text and "It was trained at 64 x 64 px; its image processor resizes to 80 x 80 px" in card.text


def load_script(name: str):
    """A script of `scripts/` as a module (by path: `evaluate.py` would shadow the `evaluate` library by name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_and_predict_scripts(trained, tmp_path, capsys):
    output, report = trained
    evaluate_script, predict_script = load_script("evaluate_model"), load_script("predict")
    evaluate_script.main(["--model", str(output), "--dataset_name", str(REPO / "data" / "fashion-mnist-mosaic"), "--max_eval_samples", "16", "--device", "cpu", "--batch_size", "5", "--output", str(tmp_path / "eval.json"), "--markdown", str(tmp_path / "eval.md"), "--extra_eval_split_names", "out_of_layout"])
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["mAP"] == pytest.approx(report.mAP, abs=1e-6)  # same weights, same images, same resolution
    assert evaluated["extra_splits"]["out_of_layout"]["mAP"] == pytest.approx(report.extra_splits["out_of_layout"].mAP, abs=1e-6)
    assert evaluated["image_size"] == 80
    # --image_size evaluates at another resolution (the training one here) and leaves the folder as it was
    saved_processor = (output / "preprocessor_config.json").read_text()
    at_64 = evaluate_script.main(["--model", str(output), "--dataset_name", str(REPO / "data" / "fashion-mnist-mosaic"), "--max_eval_samples", "16", "--image_size", "64"])
    assert at_64.image_size == 64 and at_64.mAP != pytest.approx(report.mAP, abs=1e-6)
    assert (output / "preprocessor_config.json").read_text() == saved_processor
    with pytest.raises(ValueError, match="drop --image_size to fit them"):
        evaluate_script.main(["--model", str(output), "--dataset_name", str(REPO / "data" / "fashion-mnist-mosaic"), "--image_size", "64", "--fit_thresholds", "true"])
    with pytest.raises(ValueError, match="--image_size must be at least 32 pixels"):
        evaluate_script.main(["--model", str(output), "--dataset_name", str(REPO / "data" / "fashion-mnist-mosaic"), "--max_eval_samples", "16", "--image_size", "8"])
    assert evaluated["area_thresholds"] == list(report.by_size.area_thresholds) == [576, 2304]  # the dataset card's convention
    # the threshold metrics at 0.5 and at the thresholds fitted at the end of training, as training reported them
    assert evaluated["label_thresholds"] == pytest.approx(report.label_thresholds)
    for key, value in vars(report.at_label_thresholds).items():
        assert evaluated["at_label_thresholds"][key] == pytest.approx(value, abs=1e-6), key
    assert evaluated["CF1"] == pytest.approx(report.at_threshold.CF1, abs=1e-6)
    markdown = (tmp_path / "eval.md").read_text()
    assert "| small | medium | large |" in markdown and "At the per-label thresholds" in markdown

    # --fit_thresholds refits on the split it evaluates and saves them into the model folder
    import shutil

    refit = tmp_path / "refit"
    shutil.copytree(output, refit)
    config = json.loads((refit / "config.json").read_text())
    config["label_thresholds"] = [0.5] * 10
    (refit / "config.json").write_text(json.dumps(config))
    evaluate_script.main(["--model", str(refit), "--dataset_name", str(REPO / "data" / "fashion-mnist-mosaic"), "--max_eval_samples", "16", "--fit_thresholds", "true"])
    assert json.loads((refit / "config.json").read_text())["label_thresholds"] == pytest.approx(report.label_thresholds)

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (50, 40), (200, 10, 10)).save(images / "a.png")
    Image.new("LA", (30, 30)).save(images / "b.png")
    capsys.readouterr()
    assert predict_script.main(["--model", str(output), "--threshold", "0.0", str(images)]) == 0  # a folder
    predictions = json.loads(capsys.readouterr().out)
    assert [p["image"] for p in predictions] == [str(images / "a.png"), str(images / "b.png")]
    assert len(predictions[0]["labels"]) == 10  # threshold 0 keeps every label, best first
    scores = {item["label"]: item["score"] for item in predictions[0]["labels"]}
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    predict_script.main(["--model", str(output), "--batch_size", "1", str(images / "a.png")])  # the fitted thresholds
    kept = {item["label"] for item in json.loads(capsys.readouterr().out)[0]["labels"]}
    names = list(json.loads((output / "config.json").read_text())["id2label"].values())
    fitted = dict(zip(names, report.label_thresholds))
    assert kept == {label for label, score in scores.items() if score >= fitted[label] - 1e-6}
    (tmp_path / "thresholds.json").write_text(json.dumps({"Bag": 1.0}))
    predict_script.main(["--model", str(output), "--threshold", "0.0", "--thresholds", str(tmp_path / "thresholds.json"), "--format", "csv", str(images / "a.png")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "image,label,score" and len(lines) == 10 and not any(",Bag," in line for line in lines)

    # unreadable files are named with the reason; the others are still predicted; the exit status says so
    (images / "broken.jpg").write_bytes(b"no image")
    status = predict_script.main(["--model", str(output), str(images), str(tmp_path / "missing.png")])
    captured = capsys.readouterr()
    assert status == 1
    assert [p["image"] for p in json.loads(captured.out)] == [str(images / "a.png"), str(images / "b.png")]
    assert "broken.jpg: cannot read the image" in captured.err and "missing.png: no such file" in captured.err
    assert "Traceback" not in captured.err
    (tmp_path / "bad.json").write_text(json.dumps({"Zebra": 0.3}))
    with pytest.raises(ValueError, match="Zebra"):
        predict_script.main(["--model", str(output), "--thresholds", str(tmp_path / "bad.json"), str(images / "a.png")])


def test_baseline_and_other_losses(tmp_path):
    report = main(tiny_training_argv(tmp_path, "--classifier_head", "global_average_pooling", "--loss", "bce", "--ema_decay", "0"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageClassification"].endswith("Query2LabelBaselineForMultiLabelClassification")
    assert config["asl_gamma_neg"] == 0.0 and report.run.weights == "regular"


def test_mixed_precision_training_stays_finite(tmp_path):
    report = main(tiny_training_argv(tmp_path, "--bf16", "true", "--use_cpu", "true", "--ema_decay", "0"))
    assert 0.0 <= report.mAP <= 1.0
    history = json.loads((tmp_path / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert all(math.isfinite(entry["loss"]) for entry in history if "loss" in entry)


class Interrupt(TrainerCallback):
    """Simulates a crash right after the checkpoint of `step` was written."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_after_an_interruption_ends_with_the_same_weights(tmp_path, monkeypatch, caplog):
    common = ["--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "no", "--max_train_samples", "40",
              "--per_device_train_batch_size", "8", "--num_train_epochs", "2", "--ema_decay", "0.9", "--adaptive_asymmetry", "true"]  # fmt: skip

    def train(output, *extra, interrupt_at=None):
        model_args, data_args, training_args = parse_arguments(tiny_training_argv(output, *common, *extra))
        if interrupt_at is not None:
            from modeling_q2l.training import trainer as trainer_module

            original_init = trainer_module.Query2LabelTrainer.__init__

            def init_with_interrupt(self, *args, **kwargs):
                original_init(self, *args, **kwargs)
                self.add_callback(Interrupt(interrupt_at))

            monkeypatch.setattr(trainer_module.Query2LabelTrainer, "__init__", init_with_interrupt)
        try:
            trainer, report = run(model_args, data_args, training_args)
        finally:
            monkeypatch.undo()
        return trainer, report

    reference, reference_report = train(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b", interrupt_at=4)
    assert (tmp_path / "b" / "checkpoint-4").is_dir() and not (tmp_path / "b" / "model.safetensors").exists()
    import shutil

    shutil.copytree(tmp_path / "b" / "checkpoint-4", tmp_path / "kept" / "checkpoint-4")  # rotation deletes it later
    # the same command again resumes from the last checkpoint by itself, as transformers' example scripts do
    with caplog.at_level("INFO"):
        resumed, resumed_report = train(tmp_path / "b")
    assert any("Resuming from" in record.getMessage() and "checkpoint-4" in record.getMessage() for record in caplog.records)
    assert resumed.state.global_step == reference.state.global_step
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    for key, value in reference.ema.module.state_dict().items():
        torch.testing.assert_close(resumed.ema.module.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert resumed.model.criterion.gamma_neg == reference.model.criterion.gamma_neg != 2.0
    assert resumed_report.mAP == reference_report.mAP

    # an explicit checkpoint, and --overwrite_output_dir to start over (its checkpoints are deleted first)
    explicit, _ = train(tmp_path / "c", "--resume_from_checkpoint", str(tmp_path / "kept" / "checkpoint-4"))
    assert torch.equal(explicit.model.classifier.weight, reference.model.classifier.weight)
    caplog.clear()
    with caplog.at_level("INFO"):
        over, _ = train(tmp_path / "b", "--overwrite_output_dir", "true", "--max_steps", "2")
    assert over.state.global_step == 2 and not any("Resuming" in record.getMessage() for record in caplog.records)
    assert sorted(path.name for path in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-2"]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_end_with_identical_weights(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(Path(__file__).with_name("distributed_worker.py")),
        *tiny_training_argv(tmp_path, "--max_steps", "3", "--eval_strategy", "no", "--save_strategy", "no", "--use_cpu", "true", "--ema_decay", "0.9"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = (torch.load(tmp_path / f"weights-rank{r}.pt") for r in (0, 1))
    for key in first:
        assert torch.equal(first[key], second[key]), key
    report = json.loads((tmp_path / "eval_results.json").read_text())
    assert report["world_size"] == 2


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="asl, focal or bce"):
        main(tiny_training_argv(tmp_path, "--loss", "hinge"))
    with pytest.raises(ValueError, match="No column 'picture'"):
        main(tiny_training_argv(tmp_path, "--image_column_name", "picture"))
    with pytest.raises(ValueError, match="--inference_image_size must be at least 32 pixels"):
        main(tiny_training_argv(tmp_path, "--inference_image_size", "16"))
    with pytest.raises(ValueError, match="Cannot load dataset"):
        main(tiny_training_argv(tmp_path, "--dataset_name", "no-such-org/no-such-dataset"))


@pytest.mark.parametrize("name", ["ddp.yaml", "fsdp.yaml", "deepspeed_zero2.yaml"])
def test_shipped_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "accelerate_configs" / name))
    assert config.distributed_type.value in ("MULTI_GPU", "FSDP", "DEEPSPEED") and config.num_processes == 8


def test_push_to_hub_uploads_the_finished_folder_in_one_commit(tmp_path, fake_hub):
    report = main(tiny_training_argv(tmp_path, "--push_to_hub", "true", "--hub_model_id", "me/q2l-demo", "--ema_decay", "0"))
    assert report.run.hub_url == "https://huggingface.co/me/q2l-demo"
    assert [repo["repo_id"] for repo in fake_hub["repos"]] == ["me/q2l-demo"]
    (commit,) = fake_hub["commits"]  # one commit, after the final evaluation: no checkpoint was pushed
    shipped = {path.name for path in (REPO / "modeling_q2l" / "model").glob("*.py")} - {"__init__.py"}
    expected = {"model.safetensors", "config.json", "preprocessor_config.json", "eval_results.json", "README.md"} | shipped
    assert expected <= set(commit["files"])
    assert not any(name.startswith(("checkpoint-", "runs/")) or name == "training_args.bin" for name in commit["files"])
    pushed_report = json.loads(commit["files"]["eval_results.json"])
    assert pushed_report["mAP"] == pytest.approx(report.mAP)
    assert f"{100 * report.mAP:.2f}" in commit["files"]["README.md"].decode()  # the card holds the measured results
    config = json.loads(commit["files"]["config.json"])
    assert len(config["label_thresholds"]) == 10 and "image-classification" in config["custom_pipelines"]


def test_a_trained_folder_that_does_not_load_without_the_package_is_not_pushed(tmp_path, fake_hub):
    """The push's remote-code check ends in one line naming the folder and the subprocess's reason, not a traceback."""
    from types import SimpleNamespace

    from modeling_q2l.hub.publish import PublishError
    from modeling_q2l.training.push import push_outputs

    (tmp_path / "config.json").write_text("{}")  # no model_type, no auto_map: transformers cannot load it
    args = SimpleNamespace(output_dir=str(tmp_path), hub_model_id="me/x", hub_private_repo=False, hub_revision=None, hub_token=None)
    with pytest.raises(PublishError, match=r"saved, not pushed\) in .* does not load in a Python process without this package: \w") as caught:
        push_outputs(args, {"mAP": 0.5, "eval_split": "validation"})
    assert "\n" not in str(caught.value)
    assert fake_hub["repos"] == [] and fake_hub["commits"] == []


def test_push_settings_are_checked_before_training(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="--hub_model_id"):
        main(tiny_training_argv(tmp_path, "--push_to_hub", "true"))
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr("modeling_q2l.hub.publish.get_token", lambda: None)
    with pytest.raises(ValueError, match="No Hub token"):
        main(tiny_training_argv(tmp_path, "--push_to_hub", "true", "--hub_model_id", "me/x"))
    assert not any(tmp_path.glob("checkpoint-*"))  # nothing was trained


def test_the_readme_using_a_model_section_runs_as_written(trained, tmp_path, monkeypatch):
    """Every code block of the README's "Using a model" section, run as written next to a trained folder."""
    import re
    import shutil

    output, _ = trained
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using a model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 3
    shutil.copytree(output, tmp_path / "outputs" / "q2l-fashion-mnist-mosaic")
    from helpers import validation_images as mosaic_images

    mosaic_images(1)[0].save(tmp_path / "photo.png")  # a real image
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert type(namespace["classifier"]).__name__ == "Query2LabelImageClassificationPipeline"
    assert len(namespace["classifier"]("photo.png", top_k=None)) == 10
    assert namespace["outputs"].cross_attentions[-1].shape[:3] == (1, 4, 10)
    assert len(namespace["stock"]("photo.png", top_k=namespace["model"].config.num_labels)) == 10


def test_the_train_script_runs_as_a_command_with_its_own_defaults(tmp_path):
    """`scripts/train.py` as users run it: its folder holds evaluate.py, which must not shadow the `evaluate`
    library; without --dataset_name it trains on the embedded set."""
    argv = [value for value in tiny_training_argv(tmp_path, "--ema_decay", "0") if value != str(EMBEDDED_DATASET)]
    argv.remove("--dataset_name")
    del argv[argv.index("--dataloader_num_workers") : argv.index("--dataloader_num_workers") + 2]  # its default
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *argv], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "eval_results.json").read_text())
    assert report["dataset"] == str(EMBEDDED_DATASET) and 0 <= report["mAP"] <= 1
    # its own defaults: every held-out split reported apart, and where the queries look on out_of_layout
    from modeling_q2l.mosaics.layouts import HELD_OUT_LAYOUTS

    assert list(report["extra_splits"]) == ["out_of_layout", *(f"layout_{name}" for name in HELD_OUT_LAYOUTS)]
    assert report["localization"]["split"] == "out_of_layout" and report["localization"]["pairs"] >= 16
    card = (tmp_path / "README.md").read_text()
    assert "| layout_crowded | 16 |" in card and "times chance" in card and "share of the evaluation split's mAP" in card


def test_a_tiny_run_without_network_never_enters_the_download_loop(tmp_path, monkeypatch):
    """Without HF_HUB_OFFLINE and without network, the run learns at once that no backbone weights can be had:
    timm's download (which retries with backoff for about 46 s) is never called."""
    import huggingface_hub
    import timm

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", lambda *a, **k: pytest.fail("entered timm's download"))
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("no network")))
    report = main(tiny_training_argv(tmp_path, "--ema_decay", "0"))
    assert report.run.backbone_weights.startswith("random initialisation (")
    assert json.loads((tmp_path / "eval_results.json").read_text())["backbone_weights"] == report.run.backbone_weights
    assert "random initialisation" in (tmp_path / "README.md").read_text()  # the card says so too


def logged_learning_rates(output_dir) -> list[float]:
    state = json.loads(next(Path(output_dir).glob("checkpoint-*/trainer_state.json")).read_text())
    return [entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry]


def test_optimizer_and_scheduler_options_are_honoured(tmp_path):
    common = ["--ema_decay", "0", "--max_train_samples", "48", "--num_train_epochs", "2", "--per_device_train_batch_size", "4"]
    model_args, data_args, training_args = parse_arguments(tiny_training_argv(tmp_path / "adafactor", *common, "--optim", "adafactor"))
    trainer, _ = run(model_args, data_args, training_args)
    from transformers.optimization import Adafactor

    assert isinstance(trainer.optimizer.optimizer, Adafactor)  # accelerate wraps the optimizer
    saved = torch.load(next((tmp_path / "adafactor").glob("checkpoint-*")) / "optimizer.pt", weights_only=False)
    assert "scale_parameter" in saved["param_groups"][0]  # Adafactor's state, not AdamW's
    # the card says what ran, not the recipe's defaults
    card = (tmp_path / "adafactor" / "README.md").read_text()
    assert "Adafactor (weight decay" in card and "AdamW" not in card and "one-cycle schedule" in card

    main(tiny_training_argv(tmp_path / "constant", *common, "--lr_scheduler_type", "constant", "--learning_rate", "2e-4"))
    assert set(logged_learning_rates(tmp_path / "constant")) == {2e-4}

    main(tiny_training_argv(tmp_path / "cosine", *common, "--lr_scheduler_type", "cosine", "--warmup_steps", "10"))
    rates = logged_learning_rates(tmp_path / "cosine")
    assert rates[:10] == sorted(rates[:10]) and rates[10:] == sorted(rates[10:], reverse=True)  # warm-up, then decay
    card = (tmp_path / "cosine" / "README.md").read_text()
    assert "cosine learning-rate schedule" in card and "one-cycle" not in card and "AdamW (weight decay" in card

    main(tiny_training_argv(tmp_path / "one-cycle", *common, "--warmup_steps", "0.5"))  # the recipe, longer warm-up
    rates = logged_learning_rates(tmp_path / "one-cycle")
    assert 10 <= int(np.argmax(rates)) <= 13  # 24 steps: the peak half-way, not at a fifth


def test_log_level_and_best_model_options(tmp_path, caplog):
    import logging

    import transformers

    try:
        with caplog.at_level(logging.INFO):
            report = main(tiny_training_argv(
                tmp_path, "--log_level", "error", "--ema_decay", "0", "--eval_strategy", "epoch", "--save_strategy", "epoch",
                "--num_train_epochs", "2", "--load_best_model_at_end", "true", "--metric_for_best_model", "mAP",
            ))  # fmt: skip
    finally:  # --log_level sets process-wide levels: give the next tests the defaults back
        logging.getLogger("modeling_q2l").setLevel(logging.NOTSET)
        transformers.utils.logging.set_verbosity_warning()
    assert not [record for record in caplog.records if record.name.startswith("modeling_q2l") and record.levelno < logging.ERROR]
    state = json.loads(sorted(tmp_path.glob("checkpoint-*"))[-1].joinpath("trainer_state.json").read_text())
    assert state["best_metric"] is not None and state["best_model_checkpoint"]
    evaluations = [entry["eval_mAP"] for entry in state["log_history"] if "eval_mAP" in entry]
    assert state["best_metric"] == max(evaluations)
    assert 0 <= report.mAP <= 1


def test_the_fsdp_config_on_two_cpu_processes_trains_applies_ema_and_saves_what_it_predicts(tmp_path):
    """`accelerate launch --config_file accelerate_configs/fsdp.yaml --num_processes 2 ... --use_cpu true`, end to end.
    On CPU accelerate runs it as MULTI_CPU (gloo, no sharding: FSDP needs GPUs); `--cpu` would start one process."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "accelerate_configs" / "fsdp.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
        str(Path(__file__).with_name("distributed_worker.py")),
        *tiny_training_argv(tmp_path, "--max_steps", "4", "--per_device_train_batch_size", "4", "--ema_decay", "0.9", "--save_strategy", "steps", "--save_steps", "4", "--use_cpu", "true"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "eval_results.json").read_text())
    assert report["world_size"] == 2 and report["weights"] in ("ema", "regular")
    assert report["distributed_type"] == "MULTI_CPU"
    assert (tmp_path / "checkpoint-4" / "ema_model.safetensors").is_file()  # the EMA travels with the checkpoint
    assert len(list(tmp_path.glob("*.safetensors"))) == 1  # one saved model
    from modeling_q2l import Query2LabelForMultiLabelClassification

    saved = Query2LabelForMultiLabelClassification.from_pretrained(tmp_path).eval()
    in_memory = torch.load(tmp_path / "in-memory.pt")
    with torch.no_grad():
        logits = saved(pixel_values=in_memory["pixel_values"]).logits
    torch.testing.assert_close(logits, in_memory["logits"], rtol=1e-5, atol=1e-5)


def test_streaming_trains_without_writing_the_dataset_to_disk(tmp_path, monkeypatch):
    cache = tmp_path / "datasets-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    with pytest.raises(ValueError, match="--streaming needs --max_steps"):
        main(tiny_training_argv(tmp_path / "out", "--streaming", "true"))
    report = main(tiny_training_argv(tmp_path / "out", "--streaming", "true", "--max_steps", "4", "--per_device_train_batch_size", "4", "--ema_decay", "0"))
    assert report.run.streamed and report.num_images == 16  # --max_eval_samples of the validation split
    state = json.loads(next((tmp_path / "out").glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] == 4
    assert not list(cache.rglob("*.arrow"))  # nothing of the dataset was written to disk
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_extra_evaluation_splits_are_reported_apart(tmp_path):
    report = main(tiny_training_argv(tmp_path, "--ema_decay", "0", "--extra_eval_split_names", "out_of_layout"))
    (name,) = report.extra_splits
    assert name == "out_of_layout" and report.extra_splits[name].num_images == 16
    assert 0 <= report.extra_splits[name].mAP <= 1 and report.extra_splits[name].CF1_at_label_thresholds is not None
    assert "| out_of_layout | 16 |" in (tmp_path / "README.md").read_text()  # the card shows it
    assert report.localization is None  # only where asked for
    with pytest.raises(ValueError, match="--localization_split_name validation: pass it in --extra_eval_split_names"):
        main(tiny_training_argv(tmp_path / "again", "--ema_decay", "0", "--localization_split_name", "validation"))


@pytest.mark.parametrize("option", ["--extra_eval_split_names", "--eval_split_name"])
def test_a_split_the_dataset_lacks_stops_the_run_before_training(tmp_path, option):
    """A named split the dataset does not have is one line naming the splits it has, before any training step."""
    with pytest.raises(ValueError, match=r"No split 'no_such_split' in .* \(splits: \[.*'out_of_layout'.*\]\)"):
        main(tiny_training_argv(tmp_path, "--ema_decay", "0", option, "no_such_split"))
    assert not list(tmp_path.glob("checkpoint-*"))


def test_persistent_workers_which_would_repeat_the_first_epochs_augmentations_are_refused(tmp_path):
    argv = tiny_training_argv(tmp_path, "--dataloader_num_workers", "1", "--dataloader_persistent_workers", "true")
    with pytest.raises(ValueError, match="repeat the first epoch's augmentations"):
        main(argv)


def test_channels_last_training_gives_the_same_model(tmp_path):
    """On CPU, training runs in channels-last layout (faster); the run is the same as one in the default layout, up
    to float32 rounding, and the saved weights are ordinary contiguous tensors."""
    reports = {}
    for layout in ("true", "false"):
        reports[layout] = main(tiny_training_argv(tmp_path / layout, "--ema_decay", "0", "--channels_last", layout, "--dataloader_num_workers", "0"))
    assert reports["true"].mAP == pytest.approx(reports["false"].mAP, abs=0.02)
    from safetensors.torch import load_file

    weights = {layout: load_file(tmp_path / layout / "model.safetensors") for layout in reports}
    assert all(tensor.is_contiguous() for tensor in weights["true"].values())
    largest = max(float((weights["true"][key] - weights["false"][key]).abs().max()) for key in weights["true"])
    assert largest < 1e-3  # 3 optimizer steps apart only by rounding
