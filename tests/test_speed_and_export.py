"""Group decoding, the benchmark suite (and its GPU script, run here on CPU), the side-by-side run against the
authors' model, and ONNX export. No test asserts a speed: numbers are for BENCHMARKS.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_training_argv

from modeling_q2l import Query2LabelConfig, Query2LabelForMultiLabelClassification
from modeling_q2l.benchmark.suite import alternating, results_markdown, run_suite
from modeling_q2l.cli.arguments import SuiteArguments
from modeling_q2l.evaluation.attention_maps import label_attention_maps

REPO = Path(__file__).parents[1]
# The authors' repository is never vendored: the side-by-side test runs where a copy is named.
OFFICIAL_REPO = os.environ.get("Q2L_OFFICIAL_REPO")


def grouped_model(num_labels=23, label_groups=5) -> Query2LabelForMultiLabelClassification:
    torch.manual_seed(0)
    return Query2LabelForMultiLabelClassification(tiny_config(num_labels=num_labels, label_groups=label_groups)).eval()


def test_group_decoding_decodes_each_group_into_its_labels():
    model = grouped_model()  # 23 labels in 5 groups of 5 (the last group has 2 padding outputs)
    assert model.config.num_queries == 5 and model.config.labels_per_query == 5
    assert model.model.label_embeddings.weight.shape == (5, 32)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = model(pixel_values=pixels, output_attentions=True)
        hidden = model.model(pixel_values=pixels).last_hidden_state  # (2, 5 groups, 32)
    assert outputs.logits.shape == (2, 23) and hidden.shape == (2, 5, 32)
    assert outputs.cross_attentions[-1].shape[:3] == (2, 4, 5)  # (batch, heads, groups)
    weight, bias = model.classifier.weight, model.classifier.bias  # (5, 5, 32), (23,)
    for label in (0, 4, 5, 17, 22):
        group, slot = divmod(label, 5)
        expected = hidden[:, group] @ weight[group, slot] + bias[label]
        torch.testing.assert_close(outputs.logits[:, label], expected)
        assert model.config.query_of_label(label) == group
    maps = label_attention_maps(model, pixels).maps  # per label: its group's map
    torch.testing.assert_close(maps[:, 17], outputs.cross_attentions[-1][:, :, 3].mean(1))


def test_without_groups_the_model_is_the_papers():
    config = tiny_config(num_labels=12)
    assert config.label_groups is None and config.num_queries == 12
    assert Query2LabelForMultiLabelClassification(config).model.label_embeddings.weight.shape[0] == 12


@pytest.mark.parametrize("groups", [0, 13])
def test_label_groups_must_fit_the_labels(groups):
    with pytest.raises(ValueError, match="label_groups must lie between 1 and num_labels"):
        tiny_config(num_labels=12, label_groups=groups)


def test_a_grouped_model_trains_saves_and_loads_through_remote_code(tmp_path):
    from transformers import AutoModelForImageClassification

    from modeling_q2l.cli.arguments import parse_training_arguments as parse_arguments
    from modeling_q2l.training.main import run

    trainer, report = run(*parse_arguments(tiny_training_argv(tmp_path / "run", "--label_groups", "3")))
    saved = AutoModelForImageClassification.from_pretrained(tmp_path / "run", trust_remote_code=True).eval()
    assert saved.config.label_groups == 3 and saved.model.label_embeddings.weight.shape[0] == 3
    assert report["num_images"] == 16 and 0 <= report["mAP"] <= 1
    pixels = torch.randn(2, 3, 64, 64)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        torch.testing.assert_close(saved(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


@pytest.fixture(scope="module")
def tiny_variant(tmp_path_factory):
    """A saved tiny configuration: the suite benchmarks any folder with a config.json."""
    folder = tmp_path_factory.mktemp("tiny-variant")
    tiny_config(num_labels=12).save_pretrained(folder)
    return folder


def test_the_suite_measures_every_part(tiny_variant):
    args = SuiteArguments(
        variant=str(tiny_variant), batch_sizes=[1, 3], train_batch_size=2, repeats=2, warmup=1,
        label_sweep=[12, 60], sweep_groups=4,
    )  # fmt: skip
    results = run_suite(args)
    assert results["num_labels"] == 12 and results["image_size"] == 64
    assert set(results["inference"]) == {"batch_1", "batch_3", "split"}
    assert results["inference"]["batch_3"]["images_per_s"] == pytest.approx(3 / results["inference"]["batch_3"]["latency_s"])
    assert 0 < results["inference"]["split"]["head_share"] < 1
    assert results["training"]["peak_memory_mib"] > 0 and results["training"]["batch"] == 2
    sweep = results["label_sweep"]
    assert [row["num_labels"] for row in sweep["one_query_per_label"]] == [12, 60]
    assert [row["label_groups"] for row in sweep["groups"]] == [4, 4]
    assert sweep["groups"][0]["ratio_to_first"] == 1.0
    table = results_markdown(results)
    assert "head time at 60 labels, 4 groups" in table and "training step, batch 2" in table


def test_the_suite_script_writes_json_and_rejects_bad_settings(tiny_variant, tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--variant", str(tiny_variant), "--batch_sizes", "2",
               "--train_batch_size", "0", "--repeats", "1", "--warmup", "0", "--autocast", "bfloat16",
               "--output", str(tmp_path / "out.json")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["autocast"] == "bfloat16" and "training" not in saved
    bad = subprocess.run(command[:-2] + ["--dtype", "float16"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--autocast runs over float32 weights" in bad.stderr


def test_alternating_runs_each_function_in_turn():
    calls = []
    times = alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, 1, torch.device("cpu"))
    assert calls == ["a", "b"] * 4 and [len(v) for v in times.values()] == [3, 3]


def test_gpu_script_runs_on_cpu(tiny_variant, tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "VARIANT": str(tiny_variant), "REPEATS": "1", "BATCH": "1 2", "TRAIN_BATCH": "2",
           "SWEEP": "12 40", "GROUPS": "4", "DTYPES": "float32 bfloat16", "AMP_DTYPES": "bfloat16"}  # fmt: skip
    result = subprocess.run(["bash", str(REPO / "scripts" / "benchmark_gpu.sh"), str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(path.name for path in tmp_path.glob("*.json"))
    assert written == ["inference_bfloat16.json", "inference_float32.json", "label_sweep.json", "train_amp_bfloat16.json"]
    train = json.loads((tmp_path / "train_amp_bfloat16.json").read_text())
    assert train["autocast"] == "bfloat16" and train["training"]["batch"] == 2


def test_comparing_needs_the_authors_repository(tmp_path):
    from modeling_q2l.benchmark.official import build_official_model

    with pytest.raises(ValueError, match="not a copy of the authors' repository"):
        build_official_model(tmp_path, {})


@pytest.mark.skipif(not OFFICIAL_REPO, reason="set Q2L_OFFICIAL_REPO to a copy of github.com/SlongLiu/query2labels")
def test_side_by_side_with_the_authors_model():
    results = run_suite(
        SuiteArguments(variant="Q2L-R101-448", image_size=128, batch_sizes=[1, 2], train_batch_size=0, repeats=1,
                       warmup=0, compare_official=OFFICIAL_REPO)  # fmt: skip
    )
    for row in results["official"].values():
        assert row["max_abs_logit_difference"] < 1e-4 and row["speedup"] > 0


def test_onnx_export_matches_pytorch_at_any_batch_and_resolution(tmp_path):
    from modeling_q2l.export.onnx import check_onnx_parity, export_onnx

    model = grouped_model(num_labels=12, label_groups=4)
    path = export_onnx(model, tmp_path / "model.onnx", image_size=64)
    assert check_onnx_parity(model, path, [(1, 64, 64), (3, 96, 128), (2, 160, 160)]) < 1e-4
    with pytest.raises(ValueError, match="differ from PyTorch's"):
        check_onnx_parity(model, path, [(2, 64, 64)], tolerance=0.0)


def test_export_script_publish_onnx_and_onnxruntime_timings(tmp_path):
    from modeling_q2l import Query2LabelImageProcessor
    from modeling_q2l.cli.arguments import PublishArguments
    from modeling_q2l.hub.publish import publish

    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    Query2LabelForMultiLabelClassification(tiny_config(num_labels=12)).save_pretrained(model_dir)
    Query2LabelImageProcessor(size={"height": 64, "width": 64}).save_pretrained(model_dir)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "export_onnx.py"), "--model", str(model_dir)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (model_dir / "model.onnx").is_file() and "onnxruntime logits within" in result.stdout
    folder = Path(publish(PublishArguments(model=str(model_dir), repo_id="org/tiny", onnx=True, dry_run=str(tmp_path / "repo"))))
    assert (folder / "model.onnx").is_file()
    results = run_suite(SuiteArguments(variant=str(model_dir), batch_sizes=[1, 2], train_batch_size=0, repeats=1, warmup=0,
                                       onnx=str(model_dir / "model.onnx")))  # fmt: skip
    assert set(results["onnxruntime"]) == {"batch_1", "batch_2"}
    assert "onnxruntime (CPU), batch 2" in results_markdown(results)


def test_config_round_trip_keeps_groups(tmp_path):
    config = tiny_config(num_labels=30, label_groups=7)
    config.save_pretrained(tmp_path)
    loaded = Query2LabelConfig.from_pretrained(tmp_path)
    assert loaded.label_groups == 7 and loaded.labels_per_query == 5 and loaded.query_of_label(29) == 5


def test_fast_cpu_inference_gives_the_default_kernels_logits():
    from unittest import mock

    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(tiny_config(num_labels=12)).eval()
    plain = Query2LabelForMultiLabelClassification(tiny_config(num_labels=12, fast_cpu_inference=False)).eval()
    plain.load_state_dict(model.state_dict())
    assert model.model.backbone.channels_last_input and not plain.model.backbone.channels_last_input
    pixels = torch.randn(3, 3, 64, 64)
    from modeling_q2l.model import modeling_query2label

    with mock.patch.object(modeling_query2label, "_ONEDNN_LINEAR", wraps=modeling_query2label._ONEDNN_LINEAR) as onednn:
        with torch.inference_mode():
            fast_logits = model(pixel_values=pixels).logits
        calls_in_inference = onednn.call_count
        plain_logits = plain(pixel_values=pixels).logits.detach()
        model(pixel_values=pixels).logits.sum().backward()  # with gradients: PyTorch's own kernels
        assert onednn.call_count == calls_in_inference
    assert calls_in_inference == 3 * 4 + 3 * 2  # q, k, v, o of 1 encoder + 2 decoder cross-attentions; 3 feed-forwards
    torch.testing.assert_close(fast_logits, plain_logits, atol=1e-5, rtol=1e-5)
