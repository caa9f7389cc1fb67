"""Swin-B and Swin-L: timm's `swin_*` at any input size (attention masks built for the actual input), the official
tensors through timm's checkpoint filter; the buffers timm recomputes are checked against the official shapes."""

from ..family import CHECKED_KEY_BY_KEY, BackboneFamily, PretrainedFacts, Query2LabelVariant, register_family

TIMM_NAMES = {
    "swin_B_224_22k": "swin_base_patch4_window7_224",
    "swin_B_384_22k": "swin_base_patch4_window12_384",
    "swin_L_224_22k": "swin_large_patch4_window7_224",
    "swin_L_384_22k": "swin_large_patch4_window12_384",
}
RECOMPUTED = ("relative_position_index", "attn_mask")


def config_kwargs(name: str, image_size: int) -> dict:
    # dynamic_img_size: attention masks are built for the actual input, so any resolution works (the official code
    # precomputes them for one size).
    return {
        "backbone": TIMM_NAMES[name],
        "backbone_kwargs": {"features_only": False, "img_size": image_size, "dynamic_img_size": True},
    }


def convert(tensors: dict, backbone) -> tuple[dict, dict]:
    from timm.models.swin_transformer import checkpoint_filter_fn

    recomputed = {f"model.{k}": v for k, v in tensors.items() if k.rsplit(".", 1)[-1] in RECOMPUTED}
    weights = {k: v for k, v in tensors.items() if f"model.{k}" not in recomputed}
    return {f"model.{k}": v for k, v in checkpoint_filter_fn(weights, backbone.model).items()}, recomputed


SWIN = register_family(
    BackboneFamily(
        name="swin",
        official_names=tuple(TIMM_NAMES),
        config_kwargs=config_kwargs,
        convert=convert,
        feature_stride=32,
        conversion_check=CHECKED_KEY_BY_KEY,
        variants=(
            Query2LabelVariant(
                "Q2L-SwinL-384", "swin_L_384_22k", 384, 1536,
                PretrainedFacts("Swin-L", "ImageNet-22k", 90.5, True, "timm/swin_large_patch4_window12_384.ms_in22k"),
            ),
        ),  # fmt: skip
    )
)
