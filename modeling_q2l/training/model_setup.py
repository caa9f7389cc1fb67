"""The model a training run starts from: a new one (its backbone's pretrained weights loaded explicitly) or a saved
one adapted to the dataset's labels (`Query2LabelPreTrainedModel.set_labels`), with the backbone freezing asked for.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..model import Query2LabelConfig, model_class_for
from ..saved_models import saved_model_errors
from ..zoo.architecture import config_from_options, loss_settings
from ..zoo.backbone_weights import BackboneWeights, load_pretrained_backbone
from ..zoo.pretrained import get_pretrained_facts
from .options import ModelOptions

logger = logging.getLogger(__name__)


def read_label_mapping(spec: str | dict | None) -> dict[str, str]:
    """A mapping {new label: source label} from a dict, a JSON string or a JSON file."""
    if spec is None or isinstance(spec, dict):
        return dict(spec or {})
    text = Path(spec).read_text(encoding="utf-8") if Path(spec).is_file() else spec
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--label_mapping must be a JSON object (or a file holding one), e.g. '{{\"motorbike\": \"motorcycle\"}}': {error}.") from error
    if not isinstance(mapping, dict):
        raise ValueError("--label_mapping must be a JSON object {new label: label of the starting model}.")
    return {str(key): str(value) for key, value in mapping.items()}


def load_with_labels(model_name_or_path: str, labels: list[str], label_mapping: str | dict | None = None, config_overrides: dict | None = None):
    """A saved or published Query2Label model adapted to `labels`; returns (model, {"source", "matched", "new",
    "dropped"}). Every weight that is not label-specific is loaded as it is; `config_overrides` (e.g. the loss
    settings) go through the config's constructor. See `Query2LabelPreTrainedModel.set_labels`."""
    with saved_model_errors(model_name_or_path):
        config_dict, _ = Query2LabelConfig.get_config_dict(model_name_or_path)
        config = Query2LabelConfig.from_dict({**config_dict, **(config_overrides or {})})
        model = model_class_for(config).from_pretrained(model_name_or_path, config=config)
    try:
        transfer = model.set_labels(labels, read_label_mapping(label_mapping))
    except ValueError as error:
        raise ValueError(f"{error} (--label_mapping maps dataset labels to labels of --model_name_or_path)") from error
    model.apply_backbone_freezing()
    return model, {"source": str(model_name_or_path), **transfer}


@dataclass
class StartingModel:
    model: object
    backbone_weights: BackboneWeights
    label_transfer: dict | None = None  # of a fine-tuning run: {"source", "matched", "new", "dropped"}
    frozen: str | None = None  # what of the backbone was frozen, in words


def build_model(model_args: ModelOptions, label_names: list[str]) -> StartingModel:
    """A new model or a saved one adapted to the dataset's labels, with the requested backbone freezing."""
    if model_args.freeze_backbone and model_args.frozen_backbone_stages is not None:
        raise ValueError("Pass --freeze_backbone (the whole backbone) or --frozen_backbone_stages N, not both.")
    if model_args.model_name_or_path:
        loss = loss_settings(model_args.loss, model_args.gamma_neg, model_args.gamma_pos, model_args.clip, model_args.focal_gamma)
        model, transfer = load_with_labels(model_args.model_name_or_path, label_names, model_args.label_mapping, loss)
        logger.info(
            "Labels from %s: %d matched %s, %d new %s, %d dropped %s.", transfer["source"], len(transfer["matched"]),
            transfer["matched"], len(transfer["new"]), transfer["new"], len(transfer["dropped"]), transfer["dropped"],
        )  # fmt: skip
        started = StartingModel(model, BackboneWeights(f"fine-tuned from {model_args.model_name_or_path}", pretrained=False), transfer)
    else:
        config = config_from_options(vars(model_args), label_names)
        model = model_class_for(config)(config)
        source = get_pretrained_facts(model_args.variant).base_model if model_args.variant else None
        started = StartingModel(model, load_pretrained_backbone(model, model_args.backbone_weights, source))
        if config.frozen_backbone_modules:  # a paper variant's ResNet: the authors' frozen stem and first stage
            started.frozen = f"The backbone's {', '.join(config.frozen_backbone_modules)} were not trained, as in the authors' recipe."
    if model_args.freeze_backbone or model_args.frozen_backbone_stages is not None:
        stages = None if model_args.freeze_backbone else model_args.frozen_backbone_stages
        try:
            frozen = started.model.freeze_backbone(stages)
        except ValueError as error:
            raise ValueError(f"--frozen_backbone_stages: {error}") from error
        logger.info("Froze %d backbone parameter tensors (no optimizer state, no BatchNorm updates).", len(frozen))
        started.frozen = (
            "The backbone was frozen: only the Query2Label head was trained."
            if stages is None
            else f"The backbone's stem and first {stages} stages were frozen."
        )
    return started
