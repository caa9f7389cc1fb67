"""The benchmark suite: every part measured, its script, the GPU script on CPU, the side-by-side run."""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO, tiny_config

from modeling_q2l.benchmark.suite import alternating, results_markdown, run_suite
from modeling_q2l.cli.arguments import SuiteArguments

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow

OFFICIAL_REPO = os.environ.get("Q2L_OFFICIAL_REPO")


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
    assert results["side_by_side"]["reference"] == "official"
    for name in ("batch_1", "batch_2"):
        row = results["side_by_side"][name]
        assert row["ours_max_abs_logit_difference"] < 1e-4 and row["ours_speedup"] > 0



def test_side_by_side_against_our_own_kernels_with_the_compiled_backbone(tiny_variant):
    """Where the authors' code cannot run (their TResNet needs a CUDA extension): ours against ours with the gains
    off, on the same weights, eager and compiled; each row names its reference, speed-ups and first calls."""
    results = run_suite(
        SuiteArguments(variant=str(tiny_variant), batch_sizes=[1, 2], train_batch_size=0, repeats=1, warmup=0,
                       compare_gains_off=True, compile=True)  # fmt: skip
    )
    comparison = results["side_by_side"]
    assert comparison["reference"] == "gains_off" and {"batch_1", "batch_2"} <= set(comparison)
    assert comparison["gflops_per_image"] > 0 and comparison["matmul_peak_gflops_per_s"] > 0
    for row in (comparison["batch_1"], comparison["batch_2"]):
        for ours in ("ours", "ours_compiled"):
            assert row[f"{ours}_max_abs_logit_difference"] < 1e-4
            assert row[f"{ours}_speedup"] == pytest.approx(row["reference_s"] / row[f"{ours}_s"])
            assert row[f"{ours}_first_call_s"] > 0
            assert row[f"{ours}_gflops_per_s"] == pytest.approx(comparison["gflops_per_image"] * row["batch"] / row[f"{ours}_s"])
    assert results["inference"]["batch_2"]["first_call_s"] > 0
    table = results_markdown(results)
    assert "ours with fast_cpu_inference off vs ours compiled, batch 2" in table and "compiled backbone" in table


def test_side_by_side_times_ours_in_bfloat16_and_int8_against_a_float32_reference(tiny_variant):
    """`--dtype bfloat16 --reference_dtype float32 --int8`: the reference stays float32, ours runs in bfloat16, and
    ours exported and quantized to int8 runs through onnxruntime; every row names the dtypes it compares."""
    results = run_suite(
        SuiteArguments(variant=str(tiny_variant), batch_sizes=[2], train_batch_size=0, repeats=1, warmup=0,
                       compare_gains_off=True, dtype="bfloat16", reference_dtype="float32", int8=True, int8_calibration=2)  # fmt: skip
    )
    comparison = results["side_by_side"]
    assert comparison["dtypes"] == {"reference": "float32", "ours": "bfloat16", "ours_int8": "float32"}
    row = comparison["batch_2"]
    assert row["ours_int8_speedup"] == pytest.approx(row["reference_s"] / row["ours_int8_s"])
    assert row["ours_max_abs_logit_difference"] < 0.5  # bfloat16 of the same weights
    table = results_markdown(results)
    assert "(float32, ours bfloat16) vs ours int8 (onnxruntime), batch 2" in table


def test_side_by_side_times_int8_from_pytorchs_quantizer(tiny_variant):
    """`--int8 --int8_backend pytorch`: ours quantized by the PT2E flow and compiled, timed and named as such."""
    pytest.importorskip("torchao")
    results = run_suite(
        SuiteArguments(variant=str(tiny_variant), batch_sizes=[2], train_batch_size=0, repeats=1, warmup=0,
                       compare_gains_off=True, int8=True, int8_backend="pytorch", int8_calibration=2)  # fmt: skip
    )
    row = results["side_by_side"]["batch_2"]
    assert row["ours_int8_max_abs_logit_difference"] < 0.5 * row["reference_max_abs_logit"]
    assert "vs ours int8 (pytorch), batch 2" in results_markdown(results)
