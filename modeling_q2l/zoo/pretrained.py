"""What is known of each paper variant's weights, apart from its architecture: the backbone's pretraining, the
paper's COCO mAP, whether the authors released weights, the Hub repository that holds this package's conversion
(None until one is published), the input normalisation and the licence. Each family's file registers them with its
variants (`families/*.py`).

The COCO mAP values are the paper's, quoted for the model cards; they were not measured with this package.
"""

from .family import PRETRAINED, PretrainedFacts
from .official_backbones import official_family
from .variants import get_variant

__all__ = ["PRETRAINED", "PretrainedFacts", "get_pretrained_facts", "normalisation"]


def get_pretrained_facts(name: str) -> PretrainedFacts:
    return get_variant(name).facts  # an unknown name fails with the list of variants


def normalisation(name: str) -> tuple[tuple, tuple]:
    """(mean, std) of the inputs the variant's official model was trained with."""
    family = official_family(get_variant(name).official_backbone)
    return tuple(family.image_mean), tuple(family.image_std)
