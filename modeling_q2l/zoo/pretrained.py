"""What is known of each paper variant's weights, apart from its architecture (`variants.py`): the backbone's
pretraining, the paper's COCO mAP, whether the authors released weights, the Hub repository that holds this
package's conversion (None until one is published), the input normalisation and the licence.

The COCO mAP values are the paper's, quoted for the model cards; they were not measured with this package.
"""

from dataclasses import dataclass

from .official_backbones import official_family
from .variants import get_variant


@dataclass(frozen=True)
class PretrainedFacts:
    backbone_name: str  # in words, for model cards
    pretraining: str  # of the backbone
    paper_coco_map: float  # MS-COCO 2014 val2014, as the paper reports it
    official_weights: bool  # whether the authors' release holds weights for this variant
    base_model: str  # the pretrained backbone on the Hub that the official model starts from
    hub_id: str | None = None  # the converted model on the Hub; None: not published yet
    license: str = "mit"  # the authors' code and release


# fmt: off
PRETRAINED: dict[str, PretrainedFacts] = {
    "Q2L-R101-448": PretrainedFacts("ResNet-101", "ImageNet-1k", 84.9, True, "timm/resnet101.tv_in1k"),
    "Q2L-R101-576": PretrainedFacts("ResNet-101", "ImageNet-1k", 86.5, False, "timm/resnet101.tv_in1k"),
    "Q2L-TResL-448": PretrainedFacts("TResNet-L", "ImageNet-1k", 87.3, True, "timm/tresnet_l.miil_in1k_448"),
    "Q2L-TResL-22k-448": PretrainedFacts("TResNet-L (v2)", "ImageNet-22k", 89.2, True, "timm/tresnet_v2_l.miil_in21k"),
    "Q2L-TResXL-640": PretrainedFacts("TResNet-XL", "ImageNet-1k", 89.0, False, "timm/tresnet_xl.miil_in1k_448"),
    "Q2L-TResL-22k-640": PretrainedFacts("TResNet-L (v2)", "ImageNet-22k", 90.3, False, "timm/tresnet_v2_l.miil_in21k"),
    "Q2L-SwinL-384": PretrainedFacts("Swin-L", "ImageNet-22k", 90.5, True, "timm/swin_large_patch4_window12_384.ms_in22k"),
    "Q2L-CvT-w24-384": PretrainedFacts("CvT-w24", "ImageNet-22k", 91.3, True, "microsoft/cvt-w24-384-22k"),
}
# fmt: on


def get_pretrained_facts(name: str) -> PretrainedFacts:
    get_variant(name)  # an unknown name fails with the list of variants
    return PRETRAINED[name]


def normalisation(name: str) -> tuple[tuple, tuple]:
    """(mean, std) of the inputs the variant's official model was trained with."""
    family = official_family(get_variant(name).official_backbone)
    return tuple(family.image_mean), tuple(family.image_std)
