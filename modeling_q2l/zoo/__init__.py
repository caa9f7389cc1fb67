"""The model zoo: the paper's variants, registered one backbone family per file (`families/`, records in `family`),
`list_variants` / `create_model` (`registry`), training recipes (`recipes`), the official-checkpoint converter and
pretrained backbone weights."""

from .registry import create_model, create_model_and_processor, list_variants
from .variants import PRESETS, variant_config

__all__ = ["PRESETS", "create_model", "create_model_and_processor", "list_variants", "variant_config"]
