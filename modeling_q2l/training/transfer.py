"""Fine-tuning a Query2Label model on another label set, and freezing parts of it for small datasets.

Only two pieces of Query2Label are label-specific: each label's query embedding and its row of the per-label linear
classifier. `load_with_labels` loads every other weight of a saved or published model as it is, keeps the query and
classifier row of every label both label sets share (matched by name, case and punctuation aside, or through an
explicit mapping), initialises new labels as a new model would, and drops the labels the new set lacks.
"""

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import Query2LabelConfig, model_class_for

logger = logging.getLogger(__name__)

# label-specific tensors: one row per label
LABEL_ROWS = ("model.label_embeddings.weight", "classifier.weight", "classifier.bias")


def normalise_label(name: str) -> str:
    """`"Motor-Bike "` -> `"motorbike"`: how label names are matched."""
    return re.sub(r"[\W_]+", "", str(name).lower())


@dataclass
class LabelTransfer:
    """What happened to each label: `matched` maps new label -> source label; `new` and `dropped` list names."""

    matched: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    source: str = ""

    def as_dict(self) -> dict:
        return {"source": self.source, "matched": self.matched, "new": self.new, "dropped": self.dropped}

    def log(self) -> None:
        logger.info(
            "Labels from %s: %d matched %s, %d new %s, %d dropped %s.", self.source, len(self.matched), self.matched,
            len(self.new), self.new, len(self.dropped), self.dropped,
        )  # fmt: skip


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


def match_labels(new_labels: list[str], source_labels: list[str], mapping: dict[str, str] | None = None) -> LabelTransfer:
    """Pair each new label with a source label: through `mapping` first, else by normalised name."""
    mapping = dict(mapping or {})
    unknown_keys = sorted(set(mapping) - set(new_labels))
    unknown_values = sorted(set(mapping.values()) - set(source_labels))
    if unknown_keys or unknown_values:
        raise ValueError(
            "--label_mapping maps new labels (keys) to labels of the starting model (values): "
            + (f"{unknown_keys} are not labels of the dataset {new_labels}; " if unknown_keys else "")
            + (f"{unknown_values} are not labels of the model {source_labels}." if unknown_values else "")
        )
    by_name = {}
    for name in source_labels:
        by_name.setdefault(normalise_label(name), name)
    transfer = LabelTransfer()
    for name in new_labels:
        source = mapping.get(name) or by_name.get(normalise_label(name))
        if source is None:
            transfer.new.append(name)
        else:
            transfer.matched[name] = source
    used = set(transfer.matched.values())
    transfer.dropped = [name for name in source_labels if name not in used]
    return transfer


def load_with_labels(
    model_name_or_path: str,
    labels: list[str],
    label_mapping: str | dict | None = None,
    config_overrides: dict | None = None,
):
    """A saved or published Query2Label model adapted to `labels`; returns (model, `LabelTransfer`).

    Every weight that is not label-specific is loaded as it is; labels shared with the source (same normalised name,
    or `label_mapping` {new: source}) keep their query embedding and classifier row exactly; new labels are
    initialised as a new model initialises them; labels missing from `labels` are dropped. With the source's own label
    list nothing changes. `config_overrides` (e.g. the loss settings) go through the config's constructor.
    """
    config_dict, _ = Query2LabelConfig.get_config_dict(model_name_or_path)
    source_config = Query2LabelConfig.from_dict(config_dict)
    source_labels = [source_config.id2label[i] for i in range(source_config.num_labels)]
    transfer = match_labels(labels, source_labels, read_label_mapping(label_mapping))
    transfer.source = str(model_name_or_path)
    overrides = dict(config_overrides or {})
    model_class = model_class_for(source_config)
    if labels == source_labels:
        config = Query2LabelConfig.from_dict({**config_dict, **overrides})
        return model_class.from_pretrained(model_name_or_path, config=config), transfer

    source = model_class.from_pretrained(model_name_or_path)
    new_config = {**config_dict, **overrides, "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    new_config.pop("label_thresholds", None)  # thresholds were fitted for the old labels
    model = model_class(Query2LabelConfig.from_dict(new_config))
    source_state = source.state_dict()
    state = model.state_dict()
    rows = {name: index for index, name in enumerate(labels)}
    source_rows = {name: index for index, name in enumerate(source_labels)}
    with torch.no_grad():
        for key, value in state.items():
            if key not in LABEL_ROWS:
                value.copy_(source_state[key])
                continue
            for new_name, source_name in transfer.matched.items():
                value[rows[new_name]] = source_state[key][source_rows[source_name]]
    model.apply_backbone_freezing()
    return model, transfer


def freeze_backbone(model, stages: int | None = None) -> list[str]:
    """Freeze the whole backbone (`stages=None`), or its stem and first `stages` stages (timm's coarse parameter
    groups; a transformers backbone's embeddings and encoder stages). Frozen modules' BatchNorm layers also stop
    updating their statistics (timm's `freeze`). Returns the frozen parameter names (relative to the backbone).
    Frozen parameters get no optimizer state in `Query2LabelTrainer`."""
    from timm.utils.model import freeze

    backbone = getattr(model, "model", model).backbone
    if stages is None:
        freeze(backbone.model)
    else:
        groups = backbone_stage_groups(backbone)
        if not 0 <= stages <= len(groups) - 1:
            raise ValueError(
                f"--frozen_backbone_stages must lie in 0..{len(groups) - 1} for this backbone (a stem and "
                f"{len(groups) - 1} stages), got {stages}."
            )
        names = [name for group in groups[: stages + 1] for name in group]
        modules = {name.rpartition(".")[0] for name in names} - {""}
        outermost = sorted(name for name in modules if not any(name.startswith(f"{other}.") for other in modules))
        if outermost:
            freeze(backbone.model, submodules=outermost)
        for name, parameter in backbone.model.named_parameters():
            if "." not in name and name in names:  # a tensor of the backbone itself, e.g. a class token
                parameter.requires_grad_(False)
    return [name for name, parameter in backbone.model.named_parameters() if not parameter.requires_grad]


def backbone_stage_groups(backbone) -> list[list[str]]:
    """The backbone's parameter names, grouped as [stem, stage 1, stage 2, ...] in forward order."""
    names = [name for name, _ in backbone.model.named_parameters()]
    if backbone.is_timm:
        import timm
        from timm.models import group_parameters

        with torch.device("meta"):  # the whole architecture, only for its group matcher
            reference = timm.create_model(backbone.config.backbone, pretrained=False)
        grouped = group_parameters(_NamedParameters(names), reference.group_matcher(coarse=True))
        return [list(grouped[index]) for index in sorted(grouped)]
    stem = [name for name in names if ".embedder." in f".{name}" or "embeddings" in name.split(".")[0:2]]
    stages: dict[int, list[str]] = {}
    for name in names:
        match = re.search(r"(?:stages|layers|stage)\.(\d+)\.", name)
        if match and name not in stem:
            stages.setdefault(int(match.group(1)), []).append(name)
    rest = [name for name in names if name not in stem and not any(name in group for group in stages.values())]
    return [stem + rest] + [stages[index] for index in sorted(stages)]


class _NamedParameters:
    """What timm's `group_parameters` reads of a module: its parameter names."""

    def __init__(self, names):
        self.names = names

    def named_parameters(self):
        return ((name, None) for name in self.names)
