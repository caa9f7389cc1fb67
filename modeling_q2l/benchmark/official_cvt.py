"""Our CvT backbone side by side with the authors' `cls_cvt.py` on the same random weights, with QuickGELU and with
exact GELU (`scripts/compare_official_cvt.py`)."""

import importlib.util
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from transformers import CvtConfig

from ..model import Query2LabelBackbone, Query2LabelConfig
from ..zoo.families.cvt import CVT


class Spec(dict):
    __getattr__ = dict.get


def cvt_spec(dims, heads, depths) -> Spec:
    return Spec(INIT="trunc_norm", NUM_STAGES=3, PATCH_SIZE=[7, 3, 3], PATCH_STRIDE=[4, 2, 2], PATCH_PADDING=[2, 1, 1],
                DIM_EMBED=dims, NUM_HEADS=heads, DEPTH=depths, MLP_RATIO=[4.0] * 3, ATTN_DROP_RATE=[0.0] * 3,
                DROP_RATE=[0.0] * 3, DROP_PATH_RATE=[0.0] * 3, QKV_BIAS=[True] * 3, CLS_TOKEN=[False, False, True],
                POS_EMBED=[False] * 3, QKV_PROJ_METHOD=["dw_bn"] * 3, KERNEL_QKV=[3] * 3, PADDING_KV=[1] * 3,
                STRIDE_KV=[2] * 3, PADDING_Q=[1] * 3, STRIDE_Q=[1] * 3)  # fmt: skip


def load_official_cvt_module(repo: Path):
    """Their `cls_cvt.py`, without the import of their config reader (only needed to read YAML files)."""
    source = (repo / "lib" / "models" / "cls_cvt" / "cls_cvt.py").read_text()
    patched = Path(tempfile.mkdtemp()) / "official_cls_cvt.py"
    patched.write_text(source.replace("from utils.slconfig import SLConfig", "SLConfig = None"))
    spec = importlib.util.spec_from_file_location("official_cls_cvt", patched)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(official_module, dims, heads, depths, size) -> dict:
    torch.manual_seed(0)
    official = official_module.ConvolutionalVisionTransformer(
        in_chans=3, num_classes=80, act_layer=official_module.QuickGELU,
        norm_layer=partial(official_module.LayerNorm, eps=1e-5), init="trunc_norm", spec=cvt_spec(dims, heads, depths),
    ).eval()  # fmt: skip
    with torch.no_grad():  # move norms and BatchNorm statistics away from identity
        for key, value in official.state_dict().items():
            if "running_var" in key:
                value.uniform_(0.5, 1.5)
            elif "running_mean" in key or (value.ndim == 1 and key.endswith("bias")):
                value.normal_(0, 0.1)
            elif value.ndim == 1 and key.endswith("weight"):
                value.normal_(1, 0.1)
    official.cls_token = False  # what the official Q2L backbone does
    tensors = {key: value for key, value in official.state_dict().items() if not key.startswith("head")}
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = official.forward_features(pixels)
    differences = {}
    for activation in ("quick_gelu", None):
        backbone = CvtConfig(embed_dim=dims, num_heads=heads, depth=depths, cls_token=[False, False, True])
        config = Query2LabelConfig(
            backbone=None, backbone_config=backbone, backbone_hidden_act=activation, backbone_output_layer_norm=True,
            hidden_size=dims[-1], num_attention_heads=4, image_size=size, num_labels=80,
        )  # fmt: skip
        ours = Query2LabelBackbone(config).eval()
        converted, _ = CVT.convert(tensors, ours)
        counters = {key: value for key, value in ours.state_dict().items() if key.endswith("num_batches_tracked")}
        ours.load_state_dict({**counters, **converted}, strict=True)
        with torch.no_grad():
            differences[activation or "gelu"] = (ours(pixels) - reference).abs().max().item()
    return differences


def run_cvt_comparison(args) -> None:
    """`args`: `CompareArguments`. Prints the table."""
    module = load_official_cvt_module(Path(args.official_repo))
    cases = [("tiny CvT", [24, 48, 64], [1, 2, 4], [1, 2, 3], 128)]
    if args.full_size:
        cases.append(("CvT-w24", [192, 768, 1024], [3, 12, 16], [2, 2, 20], 384))
    print("| backbone | input | max abs feature difference, QuickGELU | with exact GELU |\n| --- | --- | --- | --- |")
    for name, dims, heads, depths, size in cases:
        result = compare(module, dims, heads, depths, size)
        print(f"| {name} | {size} px | {result['quick_gelu']:.2e} | {result['gelu']:.2e} |")
    sys.stdout.flush()
