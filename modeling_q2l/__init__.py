"""Query2Label for the Hugging Face ecosystem.

The package is folders by concept:
- `model/`: the code saved next to the weights (configuration, modeling, image processing, loss);
- `data/`: loading datasets, label formats, the preprocessing path, mosaics;
- `evaluation/`: metrics, reports, evaluation and prediction runners;
- `hub/`: paper presets, official-checkpoint conversion, pretrained backbones, model cards, publishing;
- `training/`: arguments, the Trainer subclass, its callbacks and the main job.

Importing the package registers the Query2Label classes with the transformers Auto classes, and marks them so that
`save_pretrained` writes an `auto_map` and copies the model folder's files next to the weights.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)

from . import model
from .hub.presets import PRESETS, variant_config
from .model import *  # noqa: F403 (the model folder's public names are the package's)
from .model import (
    Query2LabelBaselineForMultiLabelClassification,
    Query2LabelConfig,
    Query2LabelForMultiLabelClassification,
    Query2LabelImageProcessor,
    Query2LabelModel,
)

__version__ = "0.2.0"

Query2LabelConfig.register_for_auto_class()
Query2LabelModel.register_for_auto_class("AutoModel")
Query2LabelForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")
Query2LabelBaselineForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")
Query2LabelImageProcessor.register_for_auto_class("AutoImageProcessor")

AutoConfig.register("query2label", Query2LabelConfig, exist_ok=True)
AutoModel.register(Query2LabelConfig, Query2LabelModel, exist_ok=True)
AutoModelForImageClassification.register(Query2LabelConfig, Query2LabelForMultiLabelClassification, exist_ok=True)
AutoImageProcessor.register(Query2LabelConfig, image_processor_classes={"torchvision": Query2LabelImageProcessor}, exist_ok=True)


def model_class_for(config: Query2LabelConfig):
    """The classification model class a config describes (`classifier_head`)."""
    if config.classifier_head == "global_average_pooling":
        return Query2LabelBaselineForMultiLabelClassification
    return Query2LabelForMultiLabelClassification


__all__ = [*model.__all__, "PRESETS", "model_class_for", "variant_config"]
