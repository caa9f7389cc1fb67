"""Query2Label for the Hugging Face ecosystem.

The package is folders by concept, each importing only the ones listed before it:
- `model/`: the code saved next to the weights (configuration, modeling, image processing, loss, pipeline);
- `data/`: datasets and their splits, label formats, the preprocessing path and augmentation;
- `mosaics/`: the embedded demo dataset's home (Fashion-MNIST mosaics, their layouts and augmentations);
- `evaluation/`: metrics, reports, thresholds, attention maps, the final report, evaluation and prediction runs;
- `zoo/`: the paper's variants (`list_variants`, `create_model`), official-checkpoint conversion, backbone weights;
- `export/`: ONNX;  `hub/`: model cards, publishing, Spaces, the remote-code check;
- `benchmark/`, `demo/`: the speed suite and the Gradio app;
- `training/`: the Trainer subclass, its callbacks, model set-up, resume and push policies, the main job;
- `cli/`: every command's arguments and its entry function (the scripts call these).

Importing the package registers the Query2Label classes with the transformers Auto classes, and marks them so that
`save_pretrained` writes an `auto_map` and copies the model folder's files next to the weights.
"""

from .extras import quiet_optional_package_notices

quiet_optional_package_notices()  # before transformers imports the optional packages

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)

from . import model
from .model import *  # noqa: F403 (the model folder's public names are the package's)
from .model import (
    Query2LabelBaselineForMultiLabelClassification,
    Query2LabelConfig,
    Query2LabelForMultiLabelClassification,
    Query2LabelImageProcessor,
    Query2LabelModel,
)
from .zoo import PRESETS, create_model, create_model_and_processor, list_variants, variant_config

__version__ = "0.2.0"  # setup.py reads it here

Query2LabelConfig.register_for_auto_class()
Query2LabelModel.register_for_auto_class("AutoModel")
Query2LabelForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")
Query2LabelBaselineForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")
Query2LabelImageProcessor.register_for_auto_class("AutoImageProcessor")

AutoConfig.register("query2label", Query2LabelConfig, exist_ok=True)
AutoModel.register(Query2LabelConfig, Query2LabelModel, exist_ok=True)
# Both classification heads share the config class: transformers picks among registered classes by the saved
# config's `architectures`, so a global-average-pooling baseline folder loads as the baseline (the first is the
# default for a config that names neither, e.g. a new one given to `from_config`).
AutoModelForImageClassification.register(
    Query2LabelConfig, (Query2LabelForMultiLabelClassification, Query2LabelBaselineForMultiLabelClassification), exist_ok=True
)
try:
    AutoImageProcessor.register(Query2LabelConfig, image_processor_classes={"torchvision": Query2LabelImageProcessor}, exist_ok=True)
except TypeError:  # transformers < 5.4 registers fast (torchvision) processors under another keyword
    AutoImageProcessor.register(Query2LabelConfig, fast_image_processor_class=Query2LabelImageProcessor, exist_ok=True)

__all__ = [
    *model.__all__,
    "PRESETS",
    "__version__",
    "create_model",
    "create_model_and_processor",
    "list_variants",
    "variant_config",
]
