"""A backbone family the package does not ship, written as a family file is: everything the zoo needs to know of it,
registered by importing this one file (the tests import it, and take it away again)."""

from modeling_q2l.zoo.family import BackboneFamily, PretrainedFacts, Query2LabelVariant, register_family, strip_prefix


def config_kwargs(name: str, image_size: int) -> dict:
    return {"backbone": "test_resnet"}  # timm's tiny ResNet: 96 channels at stride 32


def convert(tensors: dict, backbone) -> tuple[dict, dict]:
    return {f"model.{strip_prefix(key, 'body.')}": value for key, value in tensors.items()}, {}


STANDIN = register_family(
    BackboneFamily(
        name="testnet",
        official_names=("testnet",),
        config_kwargs=config_kwargs,
        convert=convert,
        feature_stride=32,
        conversion_check="A stand-in family of the tests: nothing of its conversion is checked.",
        variants=(
            Query2LabelVariant("Q2L-TestNet-64", "testnet", 64, 96, PretrainedFacts("TestNet", "nothing", 12.5, False, "timm/test_resnet.r160_in1k")),
        ),
    )
)
