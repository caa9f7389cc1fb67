"""PyTorch Query2Label model.

A backbone computes a feature map; a DETR-style transformer encodes it and lets one learnable query per label
cross-attend to it; a per-label linear layer turns each query into a logit.

Saved next to the weights for `trust_remote_code`: it imports only torch, timm, transformers and its flat
siblings (`from .x import y`).
"""

import contextlib
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .asymmetric_loss import AsymmetricLoss, image_averaged_loss
from .configuration_query2label import CLASSIFIER_HEADS, Query2LabelConfig
from .inference_query2label import (
    CompiledInference,
    InferenceCopy,
    Query2LabelLinear,
    REDUCED_PRECISION,
    fast_cpu_inference,
    reduced_precision_cpu,
    warn_once_if_emulated,
)


@dataclass
class Query2LabelModelOutput(ModelOutput):
    r"""
    Output of [`Query2LabelModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_queries, hidden_size)`):
            The label queries after the last decoder layer and the final LayerNorm: one vector per label (per group
            of labels with `config.label_groups`; `num_queries` is `config.num_queries`).
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, height * width, hidden_size)`):
            The encoded feature map (the decoder's memory), flattened row by row.
        feature_map_size (`tuple[int, int]`):
            `(height, width)` of the backbone's feature map.
        encoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The projected feature map and the output of each encoder layer, each `(batch_size, height * width,
            hidden_size)`.
        decoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The decoder state before the first layer and after each layer (before the final LayerNorm), each
            `(batch_size, num_queries, hidden_size)`.
        encoder_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Encoder self-attention maps, one per encoder layer, `(batch_size, heads, height * width, height * width)`.
        decoder_attentions (`tuple(torch.FloatTensor | None)`, *optional*, returned with `output_attentions=True`):
            Self-attention among the label queries, one entry per decoder layer, `(batch_size, heads, num_queries,
            num_queries)`, or `None` for layers without self-attention (the official default).
        cross_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Where each label looks: decoder cross-attention maps, one per decoder layer,
            `(batch_size, heads, num_queries, height, width)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    feature_map_size: tuple[int, int] | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor | None, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class Query2LabelImageClassifierOutput(ModelOutput):
    r"""
    Output of the multi-label classification models.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            The config's asymmetric loss, summed over labels and averaged over images.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            One independent logit per label (apply a sigmoid for probabilities).
        encoder_hidden_states, decoder_hidden_states, encoder_attentions, decoder_attentions, cross_attentions:
            As in [`Query2LabelModelOutput`] (`None` for the global-average-pooling baseline, which has no
            transformer). `cross_attentions` are the maps to draw: `(batch_size, heads, num_queries, height, width)`
            per decoder layer.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor | None, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


def _build_timm_backbone(config: Query2LabelConfig) -> tuple[nn.Module, int, bool]:
    """A timm model returning its last feature map: `features_only` by default, or the whole network without its
    classifier (`backbone_kwargs={"features_only": False}`, read through `forward_features`, which keeps e.g. Swin's
    final LayerNorm). Returns the module, its channels and whether it emits NHWC."""
    import timm

    kwargs = dict(config.backbone_kwargs or {})
    features_only = kwargs.pop("features_only", True)
    if features_only:
        kwargs.setdefault("out_indices", (-1,))
    else:
        kwargs.update(num_classes=0, global_pool="")
    try:
        model = timm.create_model(
            config.backbone, pretrained=False, features_only=features_only, in_chans=config.num_channels, **kwargs
        )
    except RuntimeError as error:  # timm's words for an unknown name
        raise ValueError(
            f"Cannot build the timm backbone {config.backbone!r}: {error}. Use a name from `timm.list_models()` or "
            "set `backbone_config` to a transformers backbone config."
        ) from error
    if features_only:
        _drop_stages_after_the_last_output(model)
    channels = model.feature_info.channels()[-1] if features_only else model.num_features
    return model, channels, str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC")


def _drop_stages_after_the_last_output(model: nn.Module) -> None:
    """timm's EfficientNet and MobileNet feature models build and run every stage even when `out_indices` stops
    earlier (e.g. `[3]`, stride 16): the stages after the last output only cost time, so they are left out. Other
    feature models (`FeatureListNet`) already stop there."""
    stage_outputs, blocks = getattr(model, "_stage_out_idx", None), getattr(model, "blocks", None)
    if isinstance(stage_outputs, dict) and stage_outputs and isinstance(blocks, nn.Sequential) and getattr(model, "feature_hooks", None) is None:
        last = max(stage_outputs)  # the forward appends a feature after block i when i + 1 is a key
        if last < len(blocks):
            model.blocks = blocks[:last]


def _build_transformers_backbone(backbone_config) -> tuple[nn.Module, int]:
    """`AutoBackbone` where transformers has a backbone class for the config, else the base model (e.g. CvT), whose
    `last_hidden_state` is a feature map."""
    from transformers import AutoBackbone, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING_NAMES

    if backbone_config.model_type in MODEL_FOR_BACKBONE_MAPPING_NAMES:
        model = AutoBackbone.from_config(backbone_config)
        return model, model.channels[-1]
    model = AutoModel.from_config(backbone_config)
    sizes = getattr(backbone_config, "embed_dim", None) or getattr(backbone_config, "hidden_sizes", None)
    return model, sizes[-1]


def _replace_gelu(module: nn.Module, activation: str) -> None:
    """Swap every `nn.GELU` below `module` for `ACT2FN[activation]` (the authors' CvT uses QuickGELU)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GELU):
            setattr(module, name, ACT2FN[activation])
        else:
            _replace_gelu(child, activation)


_BUILDING_REFERENCE = threading.local()  # set only in the thread that builds a reference backbone


def _parameter_on_meta(module: nn.Module, name: str, parameter: nn.Parameter | None) -> nn.Parameter | None:
    """torch's parameter-registration hook: while this thread builds a reference, parameters go to the meta device."""
    if parameter is None or not getattr(_BUILDING_REFERENCE, "active", False):
        return None  # keep the parameter as it is
    return nn.Parameter(parameter.to("meta"), requires_grad=parameter.requires_grad)


@contextlib.contextmanager
def _parameters_on_meta():
    """Build modules with their parameters on the meta device but real buffers: a cheap way to recompute buffers.
    Uses torch's registration hook (no patched torch function) and acts in this thread only: other threads building
    models meanwhile keep their parameters."""
    handle = register_module_parameter_registration_hook(_parameter_on_meta)
    _BUILDING_REFERENCE.active = True
    try:
        yield
    finally:
        _BUILDING_REFERENCE.active = False
        handle.remove()


def normalise_label(name: str) -> str:
    """`"Motor-Bike "` -> `"motorbike"`: how label names are matched."""
    return re.sub(r"[\W_]+", "", str(name).lower())


def match_labels(new_labels: list[str], current_labels: list[str], mapping: dict[str, str] | None = None) -> dict:
    """Pair each new label with a current one, through `mapping` {new: current} first, else by normalised name:
    {"matched": {new: current}, "new": [unmatched new labels], "dropped": [current labels nothing matched]}."""
    mapping = dict(mapping or {})
    unknown_keys = sorted(set(mapping) - set(new_labels))
    unknown_values = sorted(set(mapping.values()) - set(current_labels))
    if unknown_keys or unknown_values:
        raise ValueError(
            "The label mapping maps new labels (keys) to labels of the model (values): "
            + (f"{unknown_keys} are not among the new labels {list(new_labels)}; " if unknown_keys else "")
            + (f"{unknown_values} are not labels of the model {current_labels}." if unknown_values else "")
        )
    by_name = {}
    for name in current_labels:
        by_name.setdefault(normalise_label(name), name)
    matched, new = {}, []
    for name in new_labels:
        source = mapping.get(name) or by_name.get(normalise_label(name))
        if source is None:
            new.append(name)
        else:
            matched[name] = source
    used = set(matched.values())
    return {"matched": matched, "new": new, "dropped": [name for name in current_labels if name not in used]}


class _ParameterNames:
    """What timm's `group_parameters` reads of a module: its parameter names."""

    def __init__(self, names):
        self.names = names

    def named_parameters(self):
        return ((name, None) for name in self.names)


class Query2LabelPreTrainedModel(PreTrainedModel):
    config: Query2LabelConfig
    config_class = Query2LabelConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["Query2LabelEncoderLayer", "Query2LabelDecoderLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    # forward takes `num_items_in_batch`, so the Trainer's gradient accumulation divides the loss exactly
    accepts_loss_kwargs = True
    # a backbone trained with frozen stages saves them as frozen BatchNorm, without this counter (used only by
    # BatchNorm with momentum=None): loading such weights is complete, not "newly initialized"
    _keys_to_ignore_on_load_missing = [r"\.num_batches_tracked$"]

    def _init_weights(self, module: nn.Module):
        # The official transformer init (DETR): xavier-uniform matrices. timm and transformers backbones are
        # sub-models with their own `_init_weights` and never come through here.
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):  # the label queries
            init.normal_(module.weight, std=self.config.label_embedding_init_std)
        elif isinstance(module, nn.Conv2d):  # the input projection: PyTorch's default init
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(module.weight[0].numel())
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (Query2LabelGroupWiseLinear, Query2LabelGroupDecodingLinear)):
            bound = 1 / math.sqrt(module.weight.shape[-1])
            init.uniform_(module.weight, -bound, bound)
            init.uniform_(module.bias, -bound, bound)

    def optimize_for_inference(self, build_now: bool = True) -> "Query2LabelPreTrainedModel":
        """Prepare CPU inference (the config's `fast_cpu_inference` allows it). In float32: the backbone's
        BatchNorms folded into its convolutions in a copy built now, channels-last inputs for convolutional
        backbones, and each large linear layer's kernel chosen by a fixed rule
        (`inference_query2label.prefers_onednn_linear`), so that the same image gives the same logits in every
        process. In bfloat16 or float16 (inputs go channels-last by themselves): the convolution weights too. Puts the model in eval mode and returns it; the
        weights and the results are unchanged up to float32 rounding, and training (or gradients, GPUs, other
        dtypes) runs PyTorch's kernels on the original modules. A weight changed later rebuilds the copy;
        `build_now=False` leaves building it to the first inference call (a trainer, whose weights change between
        evaluations)."""
        self.eval()
        if not self.config.fast_cpu_inference:
            return self
        for module in self.modules():
            if isinstance(module, Query2LabelLinear):
                module.choose_kernel()
        backbone = self.get_backbone()
        if backbone.channels_last_input and self.device.type == "cpu" and self.dtype in REDUCED_PRECISION:
            backbone.model.to(memory_format=torch.channels_last)  # oneDNN's reduced-precision convolutions want both
        backbone.prepare_inference_copy(build_now)
        return self

    def get_backbone(self) -> "Query2LabelBackbone":
        """The vision backbone (`.model` inside it is the timm or transformers network)."""
        return next(module for module in self.modules() if isinstance(module, Query2LabelBackbone))

    def apply_backbone_freezing(self) -> None:
        """Freeze the backbone parameters that `frozen_backbone_modules` names. A new model starts frozen; call this
        after `from_pretrained`, which hands back trainable tensors (`Query2LabelTrainer` does it for you)."""
        self.get_backbone().freeze_configured_modules()

    def freeze_backbone(self, stages: int | None = None) -> list[str]:
        """Freeze the whole backbone (`stages=None`) or its stem and first `stages` stages; see
        `Query2LabelBackbone.freeze`. Returns the frozen parameter names (relative to the backbone network)."""
        return self.get_backbone().freeze(stages)

    def set_labels(self, labels: list[str], label_mapping: dict[str, str] | None = None) -> dict:
        """Grow, shrink or reorder the label set in place, e.g. to fine-tune on another dataset.

        Only each label's query embedding and classifier row are label-specific. A label of `labels` that matches a
        current label (same name, case and punctuation aside, or `label_mapping` {new label: current label}) keeps
        its rows exactly; a new label starts as a new model's would; current labels left out are dropped. The fitted
        `label_thresholds` are cleared (they belonged to the old labels). Returns
        {"matched": {new: current}, "new": [...], "dropped": [...]}.
        """
        current = [self.config.id2label[index] for index in range(self.config.num_labels)]
        plan = match_labels(labels, current, label_mapping)
        if list(labels) == current:
            return plan
        if self.config.label_groups is not None:
            raise ValueError(
                "set_labels keeps one query per label; a model with label_groups shares its queries between labels: "
                "start from a model without groups, or train a new one."
            )
        current_row = {name: index for index, name in enumerate(current)}
        kept = [(new_index, current_row[plan["matched"][name]]) for new_index, name in enumerate(labels) if name in plan["matched"]]
        for path, fresh in self._label_specific_modules(len(labels)).items():
            old = self.get_submodule(path)
            fresh.apply(self._init_weights)
            fresh.to(device=old.weight.device, dtype=old.weight.dtype)
            with torch.no_grad():
                for name, parameter in fresh.named_parameters():
                    for new_index, old_index in kept:  # one row per label
                        parameter[new_index] = getattr(old, name)[old_index]
            self.set_submodule(path, fresh)
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {name: index for index, name in enumerate(labels)}
        self.config.label_thresholds = None
        return plan

    def _label_specific_modules(self, num_labels: int) -> dict[str, nn.Module]:
        """Fresh modules holding one row per label, by their path in the model (see `set_labels`)."""
        raise NotImplementedError(f"{type(self).__name__} has no label-specific modules.")

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also copies the multi-label pipeline that the config's `custom_pipelines` names next to the code files,
        so that `pipeline(..., trust_remote_code=True)` finds it in the saved folder."""
        if self._auto_class is not None:  # the code files travel with the weights
            from transformers.dynamic_module_utils import custom_object_save

            from .pipeline_query2label import Query2LabelImageClassificationPipeline

            os.makedirs(save_directory, exist_ok=True)
            custom_object_save(Query2LabelImageClassificationPipeline, save_directory)
        return super().save_pretrained(save_directory, *args, **kwargs)

    def compute_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """`self.criterion` (the config's ASL) summed over labels and averaged over images (`image_averaged_loss`)."""
        return image_averaged_loss(self.criterion, logits, labels, num_items_in_batch)


_CONVOLUTIONAL_TRANSFORMERS_BACKBONES = ("resnet", "convnext", "convnextv2", "regnet", "bit")


class Query2LabelBackbone(Query2LabelPreTrainedModel):
    """The vision backbone (a timm architecture or a transformers model) returning its last feature map, with an
    optional LayerNorm over channels on top (the official CvT backbone ends with one).

    A sub-model of its own so that its `_init_weights` leaves the backbone's weights to the backbone: it only
    recomputes the buffers that are not saved with the weights (e.g. Swin's relative position index), which
    `from_pretrained` leaves empty.
    """

    def __init__(self, config: Query2LabelConfig):
        super().__init__(config)
        self.is_timm = config.backbone_config is None
        self.channels_last = False
        if self.is_timm:
            self.model, self.num_features, self.channels_last = _build_timm_backbone(config)
        else:
            self.model, self.num_features = _build_transformers_backbone(config.backbone_config)
        if config.backbone_hidden_act is not None:
            _replace_gelu(self.model, config.backbone_hidden_act)
        # timm networks built whole (features_only=False) are read through forward_features
        self.uses_forward_features = self.is_timm and not (config.backbone_kwargs or {}).get("features_only", True)
        # oneDNN runs convolutions faster on channels-last (NHWC) tensors; transformer backbones gain nothing
        self.optimized = False  # set by `optimize_for_inference()`: the inference copy and channels-last inputs
        self.channels_last_input = config.fast_cpu_inference and (
            not hasattr(self.model, "patch_embed")
            if self.is_timm
            else config.backbone_config.model_type in _CONVOLUTIONAL_TRANSFORMERS_BACKBONES
        )
        self.level_fusion = self.finest_level_projection = None
        if config.fuse_feature_levels:
            levels = self.model.feature_info.channels() if self.is_timm and not self.uses_forward_features and not self.channels_last else []
            if len(levels) < 2:
                raise ValueError(
                    "fuse_feature_levels needs a timm feature backbone with two or more `out_indices` in "
                    f"backbone_kwargs (e.g. {{\"out_indices\": [3, 4]}}), got backbone_kwargs={config.backbone_kwargs}."
                )
            # (batch, coarser channels, h, w) -> (batch, fusion channels, h, w), added onto the finest grid
            width = config.feature_fusion_channels or levels[0]
            self.level_fusion = nn.ModuleList(nn.Conv2d(channels, width, kernel_size=1) for channels in levels[1:])
            if config.feature_fusion_channels:  # the finest level projected too: (batch, finest, h, w) -> (batch, width, h, w)
                self.finest_level_projection = nn.Conv2d(levels[0], width, kernel_size=1)
            self.num_features = width
        self.output_norm = nn.LayerNorm(self.num_features) if config.backbone_output_layer_norm else None
        if config.freeze_backbone_batch_norm:
            from timm.layers import freeze_batch_norm_2d

            self.model = freeze_batch_norm_2d(self.model)
        self.frozen_modules = tuple(config.frozen_backbone_modules or ())
        for prefix in self.frozen_modules:
            if not any(name.startswith(prefix) for name, _ in self.model.named_modules()):
                raise ValueError(f"frozen_backbone_modules: no backbone module is named {prefix!r}.")
        self.gradient_checkpointing = False  # set by `activation_checkpointing_enable()`
        self._timm_checkpointing = False
        # float32 CPU inference runs a copy with BatchNorm folded into the convolutions, or a compiled graph
        self.inference_copy = InferenceCopy() if config.fast_cpu_inference else None
        self.compiled_inference = CompiledInference() if config.compile_cpu_inference else None
        self.post_init()
        self.freeze_configured_modules()

    def prepare_inference_copy(self, build_now: bool = True) -> None:
        """Use the inference copy (and channels-last inputs) in float32 CPU inference from now on, and build the copy
        now (`build_now`), on a probe image at the config's resolution, so that the first call does not pay for it."""
        self.optimized = True
        parameter = next(self.model.parameters(), None)
        if not build_now or self.inference_copy is None or parameter is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32:
            return
        size = self.config.image_size
        with torch.no_grad():
            self.inference_copy(self.model, torch.zeros(1, self.config.num_channels, size, size))

    def freeze_configured_modules(self) -> None:
        """Stop training the parameters named in `frozen_backbone_modules`."""
        for name, parameter in self.model.named_parameters():
            if name.startswith(self.frozen_modules):
                parameter.requires_grad_(False)

    def freeze(self, stages: int | None = None) -> list[str]:
        """Freeze the whole network (`stages=None`), or its stem and first `stages` stages (timm's coarse parameter
        groups; a transformers backbone's embeddings and encoder stages). Frozen modules' BatchNorm layers also stop
        updating their statistics (timm's `freeze`). Returns the frozen parameter names."""
        from timm.utils.model import freeze

        if stages is None:
            freeze(self.model)
        else:
            groups = self.stage_groups()
            if not 0 <= stages <= len(groups) - 1:
                raise ValueError(
                    f"frozen backbone stages must lie in 0..{len(groups) - 1} for this backbone (a stem and "
                    f"{len(groups) - 1} stages), got {stages}."
                )
            names = [name for group in groups[: stages + 1] for name in group]
            modules = {name.rpartition(".")[0] for name in names} - {""}
            outermost = sorted(name for name in modules if not any(name.startswith(f"{other}.") for other in modules))
            if outermost:
                freeze(self.model, submodules=outermost)
            for name, parameter in self.model.named_parameters():
                if "." not in name and name in names:  # a tensor of the network itself, e.g. a class token
                    parameter.requires_grad_(False)
        return [name for name, parameter in self.model.named_parameters() if not parameter.requires_grad]

    def stage_groups(self) -> list[list[str]]:
        """The network's parameter names, grouped as [stem, stage 1, stage 2, ...] in forward order."""
        names = [name for name, _ in self.model.named_parameters()]
        if self.is_timm:
            import timm
            from timm.models import group_parameters

            with torch.device("meta"):  # the whole architecture, only for its group matcher
                reference = timm.create_model(self.config.backbone, pretrained=False)
            grouped = group_parameters(_ParameterNames(names), reference.group_matcher(coarse=True))
            return [list(grouped[index]) for index in sorted(grouped)]
        stem = [name for name in names if ".embedder." in f".{name}" or "embeddings" in name.split(".")[0:2]]
        stages: dict[int, list[str]] = {}
        for name in names:
            match = re.search(r"(?:stages|layers|stage)\.(\d+)\.", name)
            if match and name not in stem:
                stages.setdefault(int(match.group(1)), []).append(name)
        rest = [name for name in names if name not in stem and not any(name in group for group in stages.values())]
        return [stem + rest] + [stages[index] for index in sorted(stages)]

    def fuse_levels(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """The finest feature map `(batch, channels, h, w)` with each coarser one projected and upsampled onto it."""
        features = levels[0] if self.finest_level_projection is None else self.finest_level_projection(levels[0])
        for conv, coarser in zip(self.level_fusion, levels[1:]):
            features = features + nn.functional.interpolate(conv(coarser), size=features.shape[-2:], mode="nearest")
        return features

    def _init_weights(self, module: nn.Module):
        if module is self.output_norm:
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif self.level_fusion is not None and any(module is conv for conv in self.level_fusion):
            init.zeros_(module.weight)  # training starts from the finest level alone
            init.zeros_(module.bias)
        elif any(module._buffers.get(name) is not None for name in module._non_persistent_buffers_set):
            self._recompute_non_persistent_buffers(module)

    def _recompute_non_persistent_buffers(self, module: nn.Module) -> None:
        if getattr(self, "_reference_buffers", None) is None:  # built once, for every module that needs it
            with torch.device("cpu"), _parameters_on_meta():
                reference = _build_timm_backbone(self.config)[0] if self.is_timm else None
            self._reference_buffers = dict(reference.named_buffers()) if reference is not None else {}
            self._module_names = {id(candidate): name for name, candidate in self.model.named_modules()}
        names = self._module_names
        if id(module) not in names:
            return
        prefix = names[id(module)]
        for name in module._non_persistent_buffers_set:
            current = module._buffers.get(name)
            fresh = self._reference_buffers.get(f"{prefix}.{name}".lstrip("."))
            if current is not None and fresh is not None:
                module.register_buffer(name, fresh.to(device=current.device), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        network, inference = self.model, not self.training and fast_cpu_inference(pixel_values, True)
        if inference and self.optimized and self.inference_copy is not None:
            network = self.inference_copy(network, pixel_values)
        run = network.forward_features if self.uses_forward_features else network
        if inference and self.compiled_inference is not None:
            run = self.compiled_inference(run, network)
        if reduced_precision_cpu(pixel_values):
            warn_once_if_emulated(pixel_values.dtype)
        if self.channels_last_input and (self.optimized and fast_cpu_inference(pixel_values, True) or reduced_precision_cpu(pixel_values)):
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        if self.is_timm and self.gradient_checkpointing != self._timm_checkpointing:
            self.model.set_grad_checkpointing(self.gradient_checkpointing)
            self._timm_checkpointing = self.gradient_checkpointing
        if self.uses_forward_features:
            features = run(pixel_values)
        else:
            outputs = run(pixel_values)
            if hasattr(outputs, "feature_maps"):
                features = outputs.feature_maps[-1]
            elif hasattr(outputs, "last_hidden_state"):
                features = outputs.last_hidden_state
            elif self.level_fusion is not None:
                features = self.fuse_levels(outputs)
            else:
                features = outputs[-1]
        if self.channels_last:
            features = features.permute(0, 3, 1, 2)
        if self.output_norm is not None:
            features = self.output_norm(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return features  # (batch, channels, height, width)


class Query2LabelSinePositionEmbedding(nn.Module):
    """2-D sine positional encoding (DETR), computed for whatever feature-map size arrives.

    `hidden_size / 2` features per axis, positions normalised as (index + 1) / (size + 1e-6) * 2pi, sin on even and
    cos on odd feature indices, the y-part first. The official code precomputes this for one input size only.
    """

    def __init__(self, hidden_size: int, temperature: float = 10000.0):
        super().__init__()
        self.num_pos_feats = hidden_size // 2
        self.temperature = temperature

    def forward(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        scale = 2 * math.pi
        y_embed = torch.arange(1, height + 1, device=device, dtype=torch.float32) / (height + 1e-6) * scale
        x_embed = torch.arange(1, width + 1, device=device, dtype=torch.float32) / (width + 1e-6) * scale
        dim_t = torch.arange(self.num_pos_feats, device=device, dtype=torch.float32)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        is_even = torch.arange(self.num_pos_feats, device=device) % 2 == 0

        def encode(positions: torch.Tensor) -> torch.Tensor:
            angles = positions[:, None] / dim_t  # (size, num_pos_feats)
            return torch.where(is_even, angles.sin(), angles.cos())

        pos_y = encode(y_embed)[:, None, :].expand(height, width, -1)
        pos_x = encode(x_embed)[None, :, :].expand(height, width, -1)
        pos = torch.cat((pos_y, pos_x), dim=-1)  # (height, width, hidden)
        return pos.flatten(0, 1).unsqueeze(0).to(dtype)  # (1, height * width, hidden)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, q_len, k_len)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (batch, q_len, heads, head_dim)
    return attn_output, attn_weights


class Query2LabelAttention(nn.Module):
    """Multi-head attention. Positional encodings are added by the caller to queries and keys, never to values."""

    def __init__(self, config: Query2LabelConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = False
        fast = config.fast_cpu_inference
        self.q_proj = Query2LabelLinear(config.hidden_size, config.hidden_size, fast)
        self.k_proj = Query2LabelLinear(config.hidden_size, config.hidden_size, fast)
        self.v_proj = Query2LabelLinear(config.hidden_size, config.hidden_size, fast)
        self.o_proj = Query2LabelLinear(config.hidden_size, config.hidden_size, fast)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, query_length, _ = query.shape
        query_states = self.q_proj(query).view(batch_size, query_length, -1, self.head_dim).transpose(1, 2)
        key_states = self.k_proj(key).view(batch_size, key.shape[1], -1, self.head_dim).transpose(1, 2)
        value_states = self.v_proj(value).view(batch_size, value.shape[1], -1, self.head_dim).transpose(1, 2)

        # Attention maps need the eager path; otherwise use the configured kernel (SDPA by default).
        attention_interface: Callable = eager_attention_forward
        if not output_attentions and self.config._attn_implementation not in (None, "eager"):
            attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            None,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        attn_output = self.o_proj(attn_output.reshape(batch_size, query_length, -1))
        return attn_output, (attn_weights if output_attentions else None)


class Query2LabelFeedForward(nn.Module):
    """Position-wise feed-forward block: fc1 -> activation -> dropout -> fc2 -> dropout."""

    def __init__(self, config: Query2LabelConfig):
        super().__init__()
        self.fc1 = Query2LabelLinear(config.hidden_size, config.intermediate_size, config.fast_cpu_inference)
        self.fc2 = Query2LabelLinear(config.intermediate_size, config.hidden_size, config.fast_cpu_inference)
        self.activation_fn = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.activation_fn(self.fc1(hidden_states)))
        return self.dropout(self.fc2(hidden_states))


def residual_block(hidden_states, layer_norm, block, pre_norm: bool, dropout: nn.Module | None = None):
    """One residual sub-layer: `x + dropout(block(norm(x)))` with pre-norm, `norm(x + dropout(block(x)))` with
    post-norm (DETR). `block` returns (output, attention weights or None)."""
    normed = layer_norm(hidden_states) if pre_norm else hidden_states
    output, weights = block(normed)
    hidden_states = hidden_states + (dropout(output) if dropout is not None else output)
    return (hidden_states if pre_norm else layer_norm(hidden_states)), weights


class Query2LabelEncoderLayer(GradientCheckpointingLayer):
    """Self-attention over feature-map positions (query = key = features + pos, value = features), then FFN."""

    def __init__(self, config: Query2LabelConfig):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.self_attn = Query2LabelAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size)
        self.mlp = Query2LabelFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, hidden_states: torch.Tensor, position_embeddings: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # hidden_states: (batch, height * width, hidden); position_embeddings: (1, height * width, hidden)
        hidden_states, attn_weights = residual_block(
            hidden_states,
            self.self_attn_layer_norm,
            lambda x: self.self_attn(x + position_embeddings, x + position_embeddings, x, output_attentions),
            self.pre_norm,
            self.dropout,
        )
        hidden_states, _ = residual_block(hidden_states, self.final_layer_norm, lambda x: (self.mlp(x), None), self.pre_norm)
        return hidden_states, attn_weights


class Query2LabelDecoderLayer(GradientCheckpointingLayer):
    """Optional self-attention among label queries, cross-attention from the queries to the features, then FFN.

    The label embeddings (`query_position_embeddings`) are added to the query of every attention; the feature
    positional encoding to the cross-attention keys.
    """

    def __init__(self, config: Query2LabelConfig, has_self_attention: bool):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.has_self_attention = has_self_attention
        if has_self_attention:
            self.self_attn = Query2LabelAttention(config)
            self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size)
        self.cross_attn = Query2LabelAttention(config)
        self.cross_attn_layer_norm = nn.LayerNorm(config.hidden_size)
        self.mlp = Query2LabelFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        query_position_embeddings: torch.Tensor,
        spatial_position_embeddings: torch.Tensor,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        # hidden_states: (batch, num_labels, hidden); encoder_hidden_states: (batch, height * width, hidden)
        self_weights = None
        if self.has_self_attention:
            hidden_states, self_weights = residual_block(
                hidden_states,
                self.self_attn_layer_norm,
                lambda x: self.self_attn(
                    x + query_position_embeddings, x + query_position_embeddings, x, output_attentions
                ),
                self.pre_norm,
                self.dropout,
            )
        memory_keys = encoder_hidden_states + spatial_position_embeddings
        hidden_states, cross_weights = residual_block(
            hidden_states,
            self.cross_attn_layer_norm,
            lambda x: self.cross_attn(x + query_position_embeddings, memory_keys, encoder_hidden_states, output_attentions),
            self.pre_norm,
            self.dropout,
        )
        hidden_states, _ = residual_block(hidden_states, self.final_layer_norm, lambda x: (self.mlp(x), None), self.pre_norm)
        return hidden_states, self_weights, cross_weights


class Query2LabelEncoder(nn.Module):
    """A stack of encoder layers; with pre-norm a final LayerNorm closes it."""

    def __init__(self, config: Query2LabelConfig):
        super().__init__()
        self.layers = nn.ModuleList(Query2LabelEncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(config.hidden_size) if config.pre_norm and config.encoder_layers else None

    def forward(self, hidden_states, position_embeddings, output_attentions=False, output_hidden_states=False):
        all_hidden_states, attentions = (), ()
        for layer in self.layers:
            all_hidden_states += (hidden_states,) if output_hidden_states else ()
            hidden_states, weights = layer(hidden_states, position_embeddings, output_attentions)
            attentions += (weights,) if output_attentions else ()
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        all_hidden_states += (hidden_states,) if output_hidden_states else ()
        return hidden_states, all_hidden_states, attentions


class Query2LabelDecoder(nn.Module):
    """A stack of decoder layers followed by a LayerNorm; self-attention is kept only where the config says so."""

    def __init__(self, config: Query2LabelConfig):
        super().__init__()
        keep = [config.keep_first_decoder_self_attention] + [config.keep_other_decoder_self_attention] * (
            config.decoder_layers - 1
        )
        self.layers = nn.ModuleList(Query2LabelDecoderLayer(config, has_self_attention=k) for k in keep)
        self.layer_norm = nn.LayerNorm(config.hidden_size)

    def forward(
        self,
        hidden_states,
        encoder_hidden_states,
        query_position_embeddings,
        spatial_position_embeddings,
        output_attentions=False,
        output_hidden_states=False,
    ):
        all_hidden_states, self_attentions, cross_attentions = (), (), ()
        for layer in self.layers:
            all_hidden_states += (hidden_states,) if output_hidden_states else ()
            hidden_states, self_weights, cross_weights = layer(
                hidden_states,
                encoder_hidden_states,
                query_position_embeddings,
                spatial_position_embeddings,
                output_attentions,
            )
            self_attentions += (self_weights,) if output_attentions else ()
            cross_attentions += (cross_weights,) if output_attentions else ()
        all_hidden_states += (hidden_states,) if output_hidden_states else ()
        return self.layer_norm(hidden_states), all_hidden_states, self_attentions, cross_attentions


class Query2LabelGroupWiseLinear(nn.Module):
    """One linear classifier per label: logit_k = W_k . h_k + b_k."""

    def __init__(self, num_labels: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, hidden_size))
        self.bias = nn.Parameter(torch.empty(num_labels))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (batch, num_labels, hidden) -> (batch, num_labels)
        return (hidden_states * self.weight).sum(-1) + self.bias


class Query2LabelGroupDecodingLinear(nn.Module):
    """Group decoding: query g gives the logits of `labels_per_query` labels through a linear layer of its own
    (ML-Decoder's group fully-connected pooling); logits beyond `num_labels` (padding of the last group) are dropped."""

    def __init__(self, num_labels: int, num_queries: int, hidden_size: int):
        super().__init__()
        self.num_labels = num_labels
        labels_per_query = -(-num_labels // num_queries)
        self.weight = nn.Parameter(torch.empty(num_queries, labels_per_query, hidden_size))
        self.bias = nn.Parameter(torch.empty(num_labels))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (batch, groups, hidden) x (groups, labels_per_query, hidden) -> (batch, groups * labels_per_query)
        logits = torch.einsum("bgd,gkd->bgk", hidden_states, self.weight).flatten(1)
        return logits[:, : self.num_labels] + self.bias


class Query2LabelModel(Query2LabelPreTrainedModel):
    """The Query2Label body: backbone, optional input projection, transformer encoder and label-query decoder."""

    _keys_to_ignore_on_load_unexpected = [r"^classifier\."]  # loading the body from a classification checkpoint

    def __init__(self, config: Query2LabelConfig):
        super().__init__(config)
        self.backbone = Query2LabelBackbone(config)
        if config.use_input_projection:
            self.input_projection = nn.Conv2d(self.backbone.num_features, config.hidden_size, kernel_size=1)
        elif self.backbone.num_features != config.hidden_size:
            raise ValueError(
                f"The backbone gives {self.backbone.num_features} channels but hidden_size is {config.hidden_size}: "
                f"set hidden_size={self.backbone.num_features} or use_input_projection=True."
            )
        else:
            self.input_projection = nn.Identity()
        self.position_embedding = Query2LabelSinePositionEmbedding(
            config.hidden_size, config.position_embedding_temperature
        )
        self.encoder = Query2LabelEncoder(config)
        self.decoder = Query2LabelDecoder(config)
        self.label_embeddings = nn.Embedding(config.num_queries, config.hidden_size)  # one query per label or group
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Query2LabelModelOutput | tuple:
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return self.decode(self.backbone(pixel_values), output_attentions, output_hidden_states, return_dict)

    def decode(
        self,
        backbone_features: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
    ) -> Query2LabelModelOutput | tuple:
        """The head alone: label queries decoded from a backbone feature map `(batch, channels, height, width)`."""
        features = self.input_projection(backbone_features)  # (batch, hidden, height, width)
        batch_size, _, height, width = features.shape
        # (batch, height * width, hidden); contiguous, as the linear layers reading it are fastest with and as
        # Inductor's int8 lowering needs it to (`export.pt2e`)
        memory = features.flatten(2).transpose(1, 2).contiguous()
        spatial_position = self.position_embedding(height, width, memory.device, memory.dtype)
        memory, encoder_hidden_states, encoder_attentions = self.encoder(
            memory, spatial_position, output_attentions, output_hidden_states
        )

        # one copy per image (not an expanded view): a batch size left free by torch.export compiles with it
        label_queries = self.label_embeddings.weight.unsqueeze(0).repeat(batch_size, 1, 1)
        hidden_states = torch.zeros_like(label_queries)  # the decoder state starts at zeros
        hidden_states, decoder_hidden_states, decoder_attentions, cross_attentions = self.decoder(
            hidden_states, memory, label_queries, spatial_position, output_attentions, output_hidden_states
        )
        # (batch, heads, num_labels, height * width) -> (batch, heads, num_queries, height, width)
        cross_attentions = tuple(w.unflatten(-1, (height, width)) for w in cross_attentions)
        output = Query2LabelModelOutput(
            last_hidden_state=hidden_states,
            encoder_last_hidden_state=memory,
            feature_map_size=(height, width),
            encoder_hidden_states=encoder_hidden_states or None,
            decoder_hidden_states=decoder_hidden_states or None,
            encoder_attentions=encoder_attentions or None,
            decoder_attentions=decoder_attentions or None,
            cross_attentions=cross_attentions or None,
        )
        return output if return_dict is not False else output.to_tuple()


class Query2LabelForMultiLabelClassification(Query2LabelPreTrainedModel):
    """Query2Label with its per-label classifier: independent sigmoid scores, ASL loss when labels are given."""

    def __init__(self, config: Query2LabelConfig):
        super().__init__(config)
        self.model = Query2LabelModel(config)
        if config.label_groups is None:
            self.classifier = Query2LabelGroupWiseLinear(config.num_labels, config.hidden_size)
        else:
            self.classifier = Query2LabelGroupDecodingLinear(config.num_labels, config.num_queries, config.hidden_size)
        self.criterion = AsymmetricLoss.from_config(config)  # no tensors: adaptive asymmetry may move its gamma_neg
        self.post_init()

    def _label_specific_modules(self, num_labels: int) -> dict[str, nn.Module]:
        hidden_size = self.config.hidden_size
        return {
            "model.label_embeddings": nn.Embedding(num_labels, hidden_size),
            "classifier": Query2LabelGroupWiseLinear(num_labels, hidden_size),
        }

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> Query2LabelImageClassifierOutput | tuple:
        r"""
        labels (`torch.Tensor` of shape `(batch_size, num_labels)`, *optional*):
            Multi-hot targets (1 present, 0 absent, -1 unknown and ignored). When given, `loss` is the asymmetric
            loss of the config, summed over labels and averaged over images.
        num_items_in_batch (`int` or `torch.Tensor`, *optional*):
            Passed by the Trainer: the label entries of the whole accumulated batch (all processes). The loss is then
            averaged over the images of that batch, so gradient accumulation gives the gradients of one big batch.

        With `output_attentions=True`, `cross_attentions` holds the decoder cross-attention maps, one tensor per
        decoder layer shaped `(batch_size, heads, num_queries, height, width)`.
        """
        outputs = self.model(
            pixel_values, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        logits = self.classifier(outputs.last_hidden_state)  # (batch, num_labels)
        loss = self.compute_loss(logits, labels, num_items_in_batch) if labels is not None else None
        output = Query2LabelImageClassifierOutput(
            loss=loss,
            logits=logits,
            encoder_hidden_states=outputs.encoder_hidden_states,
            decoder_hidden_states=outputs.decoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return output if return_dict is not False else output.to_tuple()


class Query2LabelBaselineForMultiLabelClassification(Query2LabelPreTrainedModel):
    """A baseline of our own: the same backbone, global average pooling and one linear layer, the same loss.

    Selected with `classifier_head="global_average_pooling"` in the config, which points `auto_map` here.
    """

    def __init__(self, config: Query2LabelConfig):
        super().__init__(config)
        self.backbone = Query2LabelBackbone(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(self.backbone.num_features, config.num_labels)
        self.criterion = AsymmetricLoss.from_config(config)
        self.post_init()

    def _label_specific_modules(self, num_labels: int) -> dict[str, nn.Module]:
        return {"classifier": nn.Linear(self.backbone.num_features, num_labels)}

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> Query2LabelImageClassifierOutput | tuple:
        pooled = self.backbone(pixel_values).mean(dim=(2, 3))  # (batch, channels)
        logits = self.classifier(self.dropout(pooled))  # (batch, num_labels)
        loss = self.compute_loss(logits, labels, num_items_in_batch) if labels is not None else None
        output = Query2LabelImageClassifierOutput(loss=loss, logits=logits)
        return output if return_dict is not False else output.to_tuple()


def model_class_for(config: Query2LabelConfig) -> type[Query2LabelPreTrainedModel]:
    """The classification model class of `config.classifier_head` (the same table that writes the config's
    `auto_map`)."""
    return globals()[CLASSIFIER_HEADS[config.classifier_head].rpartition(".")[2]]


__all__ = [
    "Query2LabelBackbone",
    "Query2LabelBaselineForMultiLabelClassification",
    "Query2LabelForMultiLabelClassification",
    "Query2LabelImageClassifierOutput",
    "Query2LabelModel",
    "Query2LabelModelOutput",
    "Query2LabelPreTrainedModel",
    "match_labels",
    "model_class_for",
]
