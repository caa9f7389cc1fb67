"""CvT-w24: transformers' `CvtModel` with the authors' QuickGELU and a final LayerNorm over channels (their backbone
ends with one); the official tensors renamed by the rules below. Its feature map has stride 16."""

from ..family import BackboneFamily, PretrainedFacts, Query2LabelVariant, register_family, rename_by_rules


def config_kwargs(name: str, image_size: int) -> dict:
    from transformers import CvtConfig

    # CvT-w24 (Wu et al., 2021): widths 192/768/1024, depths 2/2/20, a class token in the last stage.
    backbone = CvtConfig(embed_dim=[192, 768, 1024], num_heads=[3, 12, 16], depth=[2, 2, 20], cls_token=[False, False, True])
    # The authors' CvT uses QuickGELU in every MLP where transformers' CvtModel has exact GELU.
    return {"backbone": None, "backbone_config": backbone, "backbone_hidden_act": "quick_gelu", "backbone_output_layer_norm": True}


RULES = [
    (r"stage(\d)\.patch_embed\.proj\.(\w+)", r"model.encoder.stages.\1.embedding.convolution_embeddings.projection.\2"),
    (r"stage(\d)\.patch_embed\.norm\.(\w+)", r"model.encoder.stages.\1.embedding.convolution_embeddings.normalization.\2"),
    (r"stage(\d)\.cls_token", r"model.encoder.stages.\1.cls_token"),
    (r"stage(\d)\.blocks\.(\d+)\.norm1\.(\w+)", r"model.encoder.stages.\1.layers.\2.layernorm_before.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.norm2\.(\w+)", r"model.encoder.stages.\1.layers.\2.layernorm_after.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.conv_proj_(q|k|v)\.conv\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.attention.convolution_projection_{\3}.convolution_projection.convolution.\4"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.conv_proj_(q|k|v)\.bn\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.attention.convolution_projection_{\3}.convolution_projection.normalization.\4"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.proj_(q|k|v)\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.attention.projection_{\3}.\4"),
    (r"stage(\d)\.blocks\.(\d+)\.attn\.proj\.(\w+)", r"model.encoder.stages.\1.layers.\2.attention.output.dense.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"model.encoder.stages.\1.layers.\2.intermediate.dense.\3"),
    (r"stage(\d)\.blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"model.encoder.stages.\1.layers.\2.output.dense.\3"),
    (r"norm\.(\w+)", r"output_norm.\1"),
]  # fmt: skip
QKV_NAMES = {"q": "query", "k": "key", "v": "value"}


def key_of(key: str) -> str:
    renamed = rename_by_rules(key, RULES)
    if renamed is None:
        raise KeyError(key)
    return renamed.format(**QKV_NAMES)


def convert(tensors: dict, backbone) -> tuple[dict, dict]:
    return {key_of(key): value for key, value in tensors.items()}, {}


CVT = register_family(
    BackboneFamily(
        name="cvt",
        official_names=("CvT_w24",),
        config_kwargs=config_kwargs,
        convert=convert,
        feature_stride=16,
        conversion_check="The converted backbone's feature maps match the authors' CvT within 8e-6 when both run side "
        "by side (`scripts/compare_official_cvt.py`, `BENCHMARKS.md`); every key and shape of the official checkpoint "
        "is tested. No end-to-end logit test exists for this family yet.",
        variants=(
            Query2LabelVariant("Q2L-CvT-w24-384", "CvT_w24", 384, 1024, PretrainedFacts("CvT-w24", "ImageNet-22k", 91.3, True, "microsoft/cvt-w24-384-22k")),
        ),
    )
)
