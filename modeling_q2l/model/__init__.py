"""The code saved next to the weights: a model folder on the Hub ships exactly these files (not this `__init__`).

The files are flat siblings importing each other only as `from .x import y`, and otherwise only torch,
transformers and timm, so they run from a Hub folder through `trust_remote_code`.
"""

from .asymmetric_loss import AsymmetricLoss, image_averaged_loss
from .configuration_query2label import Query2LabelConfig
from .image_processing_query2label import Query2LabelImageProcessor
from .modeling_query2label import (
    Query2LabelBackbone,
    Query2LabelBaselineForMultiLabelClassification,
    Query2LabelForMultiLabelClassification,
    Query2LabelImageClassifierOutput,
    Query2LabelModel,
    Query2LabelModelOutput,
    Query2LabelPreTrainedModel,
    match_labels,
    model_class_for,
)
from .pipeline_query2label import Query2LabelImageClassificationPipeline

__all__ = [
    "AsymmetricLoss",
    "Query2LabelBackbone",
    "Query2LabelBaselineForMultiLabelClassification",
    "Query2LabelConfig",
    "Query2LabelForMultiLabelClassification",
    "Query2LabelImageClassificationPipeline",
    "Query2LabelImageClassifierOutput",
    "Query2LabelImageProcessor",
    "Query2LabelModel",
    "Query2LabelModelOutput",
    "Query2LabelPreTrainedModel",
    "image_averaged_loss",
    "match_labels",
    "model_class_for",
]
