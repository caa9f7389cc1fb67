"""The model zoo: the paper's variants (architecture in `variants`, what is known of their weights in `pretrained`),
`list_variants` / `create_model` (`registry`), the official-checkpoint converter and pretrained backbone weights."""

from .registry import create_model, create_model_and_processor, list_variants
from .variants import PRESETS, variant_config

__all__ = ["PRESETS", "create_model", "create_model_and_processor", "list_variants", "variant_config"]
