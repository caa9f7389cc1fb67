"""ResNet-18/34/50/101: the authors' torchvision ResNets, as timm's `resnet*` (the same names) with frozen BatchNorm;
`conv1`, `bn1` and `layer1` are not trained, as in the authors' code."""

from ..family import BackboneFamily, PretrainedFacts, Query2LabelVariant, register_family, strip_prefix


def config_kwargs(name: str, image_size: int) -> dict:
    return {"backbone": name, "freeze_backbone_batch_norm": True, "frozen_backbone_modules": ["conv1", "bn1", "layer1"]}


def convert(tensors: dict, backbone) -> tuple[dict, dict]:
    return {f"model.{strip_prefix(key, 'body.')}": value for key, value in tensors.items()}, {}


RESNET = register_family(
    BackboneFamily(
        name="resnet",
        official_names=("resnet18", "resnet34", "resnet50", "resnet101"),
        config_kwargs=config_kwargs,
        convert=convert,
        feature_stride=32,
        conversion_check="The converter reproduces the official logits of this backbone family (within 1e-4, "
        "`tests/zoo/test_convert_official.py` on official-format fixtures).",
        variants=(
            Query2LabelVariant("Q2L-R101-448", "resnet101", 448, 2048, PretrainedFacts("ResNet-101", "ImageNet-1k", 84.9, True, "timm/resnet101.tv_in1k")),
            Query2LabelVariant("Q2L-R101-576", "resnet101", 576, 2048, PretrainedFacts("ResNet-101", "ImageNet-1k", 86.5, True, "timm/resnet101.tv_in1k")),
        ),
    )
)
