"""ONNX export: parity with PyTorch at any batch and resolution, the script, publish --onnx."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, grouped_model, save_model_folder, tiny_config

from modeling_q2l import Query2LabelForMultiLabelClassification
from modeling_q2l.benchmark.suite import results_markdown, run_suite
from modeling_q2l.cli.arguments import SuiteArguments

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow


def test_onnx_export_matches_pytorch_at_any_batch_and_resolution(tmp_path):
    from modeling_q2l.export.onnx import check_onnx_parity, export_onnx

    model = grouped_model(num_labels=12, label_groups=4)
    path = export_onnx(model, tmp_path / "model.onnx", image_size=64)
    assert check_onnx_parity(model, path, [(1, 64, 64), (3, 96, 128), (2, 160, 160)]) < 1e-4
    with pytest.raises(ValueError, match="differ from PyTorch's"):
        check_onnx_parity(model, path, [(2, 64, 64)], tolerance=0.0)


def test_export_friendly_same_padding_is_timms_padding():
    from timm.layers.padding import get_same_padding

    from modeling_q2l.export.onnx import _same_padding

    for size in range(1, 70):
        for kernel, stride, dilation in [(3, 2, 1), (5, 2, 1), (3, 1, 2), (1, 2, 1), (7, 4, 1), (3, 3, 1)]:
            assert _same_padding(size, kernel, stride, dilation) == get_same_padding(size, kernel, stride, dilation)


def test_tf_same_padding_backbone_exports_with_dynamic_resolution(tmp_path):
    """TF-"same" convolutions (the demo's tf_efficientnet_lite0) pad by the input size: odd sizes pad unevenly."""
    from timm.layers.conv2d_same import Conv2dSame

    from modeling_q2l.export.onnx import check_onnx_parity, export_onnx

    torch.manual_seed(0)
    config = tiny_config(num_labels=7, backbone="test_efficientnet", backbone_kwargs={"pad_type": "same"})
    model = Query2LabelForMultiLabelClassification(config).eval()
    same = [module for module in model.modules() if type(module) is Conv2dSame]
    assert len(same) >= 3
    path = export_onnx(model, tmp_path / "model.onnx", image_size=64)
    assert all("forward" not in vars(module) for module in same)  # the export-time padding is undone
    assert check_onnx_parity(model, path, [(1, 64, 64), (2, 67, 75), (1, 97, 61)]) < 1e-4


def test_fused_feature_levels_export_at_odd_sizes(tmp_path):
    """The main job's dense grid (a stride-16 level with the stride-32 one upsampled onto it, both projected to a
    width of their own) exports and matches, also where the coarse grid is not half the fine one."""
    from modeling_q2l.export.onnx import check_onnx_parity, export_onnx

    torch.manual_seed(0)
    config = tiny_config(num_labels=7, backbone_kwargs={"out_indices": [3, 4]}, fuse_feature_levels=True, feature_fusion_channels=48, encoder_layers=0)
    model = Query2LabelForMultiLabelClassification(config).eval()
    for conv in model.get_backbone().level_fusion:
        torch.nn.init.normal_(conv.weight, std=0.1)
    path = export_onnx(model, tmp_path / "model.onnx", image_size=64)
    assert check_onnx_parity(model, path, [(1, 64, 64), (2, 67, 75), (1, 97, 61)]) < 1e-4


def test_export_script_publish_onnx_and_onnxruntime_timings(tmp_path):
    from modeling_q2l.cli.arguments import PublishArguments
    from modeling_q2l.hub.publish import publish

    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    save_model_folder(model_dir, tiny_config(num_labels=12))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "export_onnx.py"), "--model", str(model_dir)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (model_dir / "model.onnx").is_file() and "onnxruntime logits within" in result.stdout
    folder = Path(publish(PublishArguments(model=str(model_dir), repo_id="org/tiny", onnx=True, dry_run=str(tmp_path / "repo"))))
    assert (folder / "model.onnx").is_file()
    results = run_suite(SuiteArguments(variant=str(model_dir), batch_sizes=[1, 2], train_batch_size=0, repeats=1, warmup=0,
                                       onnx=str(model_dir / "model.onnx"), time_onnx_export=True))  # fmt: skip
    assert set(results["onnxruntime"]) == {"batch_1", "batch_2"}
    assert results["onnx_export"]["export_s"] > 0 and results["onnx_export"]["max_abs_logit_difference"] < 1e-4
    table = results_markdown(results)
    assert "onnxruntime (CPU), batch 2" in table and "ONNX export (s)" in table

