"""Query2Label for the Hugging Face ecosystem.

Importing the package registers the Query2Label classes with the transformers Auto classes, and marks them so that
`save_pretrained` writes an `auto_map` and copies the code files next to the weights (for `trust_remote_code`).
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)

from .asymmetric_loss import AsymmetricLoss
from .configuration_query2label import Query2LabelConfig
from .image_processing_query2label import Query2LabelImageProcessor
from .modeling_query2label import (
    Query2LabelBaselineForMultiLabelClassification,
    Query2LabelForMultiLabelClassification,
    Query2LabelModel,
    Query2LabelPreTrainedModel,
)

__version__ = "0.1.0"

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

__all__ = [
    "AsymmetricLoss",
    "Query2LabelBaselineForMultiLabelClassification",
    "Query2LabelConfig",
    "Query2LabelForMultiLabelClassification",
    "Query2LabelImageProcessor",
    "Query2LabelModel",
    "Query2LabelPreTrainedModel",
]
