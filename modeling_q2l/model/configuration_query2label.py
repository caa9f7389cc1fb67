"""Query2Label configuration.

This file is saved next to the weights for `trust_remote_code`: it imports only transformers and
its flat siblings, never this package absolutely.
"""

import dataclasses
from typing import Any

import transformers

try:
    from transformers import PreTrainedConfig
except ImportError:  # transformers 4.x: configs were not yet dataclasses, and the name was PretrainedConfig
    raise ImportError(
        f"This Query2Label model needs transformers >= 5.0 (found {transformers.__version__}): pip install -U \"transformers>=5\""
    ) from None
from transformers.activations import ACT2FN

# transformers >= 5.4 makes configs dataclasses that call `__post_init__`; 5.0 to 5.3 pass the fields to `__init__`
_DATACLASS_CONFIGS = dataclasses.is_dataclass(PreTrainedConfig)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

# Written into every saved config so that the Auto classes find our code next to the weights.
QUERY2LABEL_AUTO_MAP = {
    "AutoConfig": "configuration_query2label.Query2LabelConfig",
    "AutoModel": "modeling_query2label.Query2LabelModel",
    "AutoModelForImageClassification": "modeling_query2label.Query2LabelForMultiLabelClassification",
    "AutoImageProcessor": "image_processing_query2label.Query2LabelImageProcessor",
}

# Written into every saved config: `pipeline("image-classification", ..., trust_remote_code=True)` builds our
# multi-label pipeline (the stock one answers with 5 labels).
QUERY2LABEL_PIPELINES = {
    "image-classification": {
        "impl": "pipeline_query2label.Query2LabelImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
        "tf": [],
        "type": "image",
    }
}

_ACTIVATIONS = ("relu", "gelu", "glu", "silu")
# `classifier_head` -> the class that serves it; `modeling_query2label.model_class_for` reads the same table.
CLASSIFIER_HEADS = {
    "query2label": "modeling_query2label.Query2LabelForMultiLabelClassification",
    "global_average_pooling": "modeling_query2label.Query2LabelBaselineForMultiLabelClassification",
}


class Query2LabelConfig(PreTrainedConfig):
    r"""
    Configuration of a Query2Label model (Liu et al., 2021, "Query2Label: A Simple Transformer Way to Multi-Label
    Classification"): a vision backbone, a DETR-style transformer in which one learnable query per label
    cross-attends to the backbone's last feature map, and a per-label linear classifier.

    The defaults reproduce the official Q2L-R101-448 model (hidden size 2048 without input projection, 1 encoder
    and 2 decoder layers, 4 heads, feed-forward 8192, post-norm, no decoder self-attention) and the official ASL
    training loss (gamma_neg 2, gamma_pos 0, no clip, eps 1e-5).

    Backbone:
        backbone (`str`, *optional*, defaults to `"resnet101"`):
            Name of a timm architecture. The model uses its last feature map (`features_only=True`,
            `out_indices=(-1,)` unless `backbone_kwargs` says otherwise). Ignored when `backbone_config` is set.
            The backbone is built with random weights; load pretrained weights with
            `modeling_q2l.zoo.backbone_weights.load_pretrained_backbone`.
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for `timm.create_model`, for instance `{"output_stride": 16}` for a denser
            feature map or `{"out_indices": [3]}` for an earlier stage. `{"features_only": False}` builds the whole
            network without its classifier and reads `forward_features` (used for Swin and TResNet, whose
            original checkpoints timm converts under those names).
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            A transformers backbone configuration (ResNet, ConvNeXt, Swin, CvT, ...) built with `AutoBackbone`.
            Its last `out_features` stage feeds the transformer. Takes precedence over `backbone`.
        backbone_hidden_act (`str`, *optional*):
            Replace every GELU of the backbone by this activation (a name of `transformers.activations.ACT2FN`).
            The authors' CvT uses `"quick_gelu"` (`x * sigmoid(1.702 x)`) where transformers' `CvtModel` has exact
            GELU; the CvT presets and the official converter set it. `None` keeps the backbone's own activations.
        backbone_output_layer_norm (`bool`, *optional*, defaults to `False`):
            Apply a LayerNorm over channels to the backbone's feature map (the official CvT backbone ends with one).
        fuse_feature_levels (`bool`, *optional*, defaults to `False`):
            With two or more timm `out_indices` (e.g. `{"out_indices": [3, 4]}`), feed the transformer the finest
            level's grid with every coarser level added onto it: each coarser map goes through a 1x1 convolution to
            the finest level's channels (initialised to zero, so training starts from the finest level alone) and is
            upsampled (nearest) to its grid. The queries then attend to a dense grid (their maps can point at small
            objects) that still carries the deepest stage's features. `False` uses the last listed level only.
        feature_fusion_channels (`int`, *optional*):
            With `fuse_feature_levels`: the channels the levels are added in. `None` keeps the finest level's own
            channels (above). A number projects every level, the finest included, to that many channels by a 1x1
            convolution of its own (the coarser ones still initialised to zero) before adding them, as a feature
            pyramid does: the deeper stages then reach the transformer without passing through the finest level's
            few channels (an EfficientNet-Lite0's stride-16 stage has 112, its last stage 320).
        freeze_backbone_batch_norm (`bool`, *optional*, defaults to `False`):
            Replace the backbone's BatchNorm layers by frozen ones (fixed statistics and affine parameters), as the
            official ResNet backbones do.
        frozen_backbone_modules (`list[str]`, *optional*):
            Name prefixes of backbone parameters that are not trained, e.g. `["conv1", "bn1", "layer1"]` as in the
            official ResNet recipe. A new model starts with them frozen; `from_pretrained` hands back trainable
            tensors, so call `model.apply_backbone_freezing()` before training (`Query2LabelTrainer` does).
        num_channels (`int`, *optional*, defaults to 3):
            Number of input image channels.
        image_size (`int`, *optional*, defaults to 448):
            Side of the square training and evaluation resolution (used by the image processor). The model itself
            accepts any input size: the positional encoding is computed for the actual feature map.

    Transformer head:
        hidden_size (`int`, *optional*, defaults to 2048):
            Width of the transformer. Without `use_input_projection` it must equal the backbone's channels.
        use_input_projection (`bool`, *optional*, defaults to `False`):
            Insert a 1x1 convolution from the backbone's channels to `hidden_size` (official `keep_input_proj`).
            Required when they differ.
        encoder_layers (`int`, *optional*, defaults to 1):
            Number of transformer encoder layers over the feature map (0 disables the encoder).
        decoder_layers (`int`, *optional*, defaults to 2):
            Number of decoder layers in which label queries cross-attend to the encoded features.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads in every attention layer; must divide `hidden_size`.
        intermediate_size (`int`, *optional*, defaults to 8192):
            Width of the feed-forward layers (official `dim_feedforward`).
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout on residual branches and inside the feed-forward layers.
        attention_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on attention probabilities (the official model uses `dropout` here too).
        activation_function (`str`, *optional*, defaults to `"relu"`):
            Feed-forward activation: `"relu"`, `"gelu"`, `"glu"` or `"silu"`.
        pre_norm (`bool`, *optional*, defaults to `False`):
            Pre-norm layers (LayerNorm before each block, plus a final encoder LayerNorm) instead of post-norm.
        keep_first_decoder_self_attention (`bool`, *optional*, defaults to `False`):
            Keep self-attention among label queries in the first decoder layer (official `keep_first_self_attn_dec`).
        keep_other_decoder_self_attention (`bool`, *optional*, defaults to `False`):
            Keep it in the other decoder layers (official `keep_other_self_attn_dec`).
        position_embedding_temperature (`float`, *optional*, defaults to 10000.0):
            Temperature of the 2-D sine positional encoding.
        label_embedding_init_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of the label query initialisation (the official model uses N(0, 1)).

    Classifier:
        classifier_head (`str`, *optional*, defaults to `"query2label"`):
            `"query2label"` for the transformer head, or `"global_average_pooling"` for a baseline of our own (the
            same backbone, global average pooling and one linear layer). The saved `auto_map` points
            `AutoModelForImageClassification` at the matching class.
        label_groups (`int`, *optional*):
            Group decoding (ML-Decoder, Ridnik et al., 2023) for very many labels: `label_groups` queries instead of
            one per label, query g decoded into its share of the labels (labels `g * k` to `g * k + k - 1`, with
            `k = ceil(num_labels / label_groups)`) by a linear layer of its own. The decoder's cost then stays flat
            as labels grow; `None` (the default) is the paper's model, one query per label. `cross_attentions` are
            then per group: `query_of_label` maps a label to its group's query.

    Loss (Asymmetric Loss, Ben-Baruch et al., 2021):
        asl_gamma_neg (`float`, *optional*, defaults to 2.0):
            Focusing parameter for negative labels.
        asl_gamma_pos (`float`, *optional*, defaults to 0.0):
            Focusing parameter for positive labels.
        asl_clip (`float`, *optional*, defaults to 0.0):
            Probability margin `m` that hard-thresholds easy negatives (0 disables it).
        asl_eps (`float`, *optional*, defaults to 1e-5):
            Clamp applied before each logarithm.
        asl_disable_focal_grad (`bool`, *optional*, defaults to `True`):
            Treat the focusing weight as a constant (no gradient through it).

        The loss returned by the model is the ASL summed over labels and averaged over the images of the batch (of
        the whole accumulated batch when the Trainer passes `num_items_in_batch`), so its scale depends on neither
        the batch size nor gradient accumulation. Labels equal to -1 are unknown and ignored.

    Inference:
        label_thresholds (`list[float]`, *optional*):
            One probability threshold per label, in label-id order: the multi-label pipeline (`pipeline_query2label.py`)
            returns the labels that reach theirs. Training fits them on the evaluation split (the F1-maximising
            threshold of each label, 0.5 for a label without a positive example); `None` means 0.5 for every label.

        fast_cpu_inference (`bool`, *optional*, defaults to `True`):
            Let `model.optimize_for_inference()` (which the multi-label pipeline calls) speed up float32 inference
            on CPU (eval mode, no gradients, not compiling or exporting): run the backbone on a copy with each
            BatchNorm folded into the convolution before it, feed convolutional backbones channels-last tensors,
            and run large linear layers on oneDNN where the CPU's BLAS is known to be slow for them (a fixed rule,
            not a timing: the same image gives the same logits in every process). Same weights and the same logits
            up to float32 rounding (`BENCHMARKS.md` has the speed-ups, measured per CPU); `False` keeps PyTorch's
            default kernels. Without the call the model runs PyTorch's kernels. Training, GPUs and other dtypes are
            unaffected.
        compile_cpu_inference (`bool`, *optional*, defaults to `False`):
            Run the backbone of float32 CPU inference through `torch.compile` with its weights frozen into the
            graph (Inductor: BatchNorm folded, convolution weights prepacked for oneDNN, activations fused); the
            head stays eager. The first call of each input shape compiles, a one-off cost of seconds to minutes
            (`BENCHMARKS.md`); changing a weight recompiles. Also set by `from_pretrained(...,
            compile_cpu_inference=True)`.

    Inherited arguments of note: `id2label` / `label2id` / `num_labels` name the labels, and `problem_type` defaults
    to `"multi_label_classification"` so that pipelines apply an independent sigmoid to each label.

    Example:

    ```python
    >>> from modeling_q2l import Query2LabelConfig, Query2LabelForMultiLabelClassification
    >>> config = Query2LabelConfig(backbone="resnet50", num_labels=80, image_size=448)
    >>> model = Query2LabelForMultiLabelClassification(config)
    ```

    The paper's variants are presets: `modeling_q2l.variant_config("Q2L-R101-448")`.
    """

    model_type = "query2label"
    attribute_map = {"d_model": "hidden_size"}

    backbone: str | None = "resnet101"
    backbone_kwargs: dict | None = None
    backbone_config: dict | PreTrainedConfig | None = None
    backbone_hidden_act: str | None = None
    backbone_output_layer_norm: bool = False
    fuse_feature_levels: bool = False
    feature_fusion_channels: int | None = None
    freeze_backbone_batch_norm: bool = False
    frozen_backbone_modules: list | None = None
    num_channels: int = 3
    image_size: int = 448

    hidden_size: int = 2048
    use_input_projection: bool = False
    encoder_layers: int = 1
    decoder_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 8192
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.1
    activation_function: str = "relu"
    pre_norm: bool = False
    keep_first_decoder_self_attention: bool = False
    keep_other_decoder_self_attention: bool = False
    position_embedding_temperature: float | int = 10000.0
    label_embedding_init_std: float | int = 1.0

    classifier_head: str = "query2label"
    label_groups: int | None = None
    label_thresholds: list | None = None
    fast_cpu_inference: bool = True
    compile_cpu_inference: bool = False

    asl_gamma_neg: float | int = 2.0
    asl_gamma_pos: float | int = 0.0
    asl_clip: float | int = 0.0
    asl_eps: float = 1e-5
    asl_disable_focal_grad: bool = True

    if not _DATACLASS_CONFIGS:

        def __init__(self, **kwargs: Any):
            fields = {name: kwargs.pop(name) for name in list(kwargs) if name in Query2LabelConfig.__annotations__}
            later = {name: kwargs.pop(name) for name in ("custom_pipelines", "auto_map") if name in kwargs}
            super().__init__(**kwargs)
            for name, value in fields.items():
                setattr(self, name, value)
            self.__post_init__(**later)

    def __post_init__(self, **kwargs: Any):
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        if isinstance(self.backbone_config, dict):
            model_type = self.backbone_config.get("model_type")
            if model_type not in CONFIG_MAPPING:
                raise ValueError(
                    f"backbone_config has model_type={model_type!r}, which transformers does not know; pass a "
                    "transformers backbone config (ResNetConfig, ConvNextConfig, SwinConfig, CvtConfig, ...)."
                )
            self.backbone_config = CONFIG_MAPPING[model_type].from_dict(self.backbone_config)
        if self.backbone_config is None and not self.backbone:
            raise ValueError("Query2LabelConfig needs a backbone: a timm name (`backbone`) or a `backbone_config`.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.backbone_hidden_act is not None and self.backbone_hidden_act not in ACT2FN:
            raise ValueError(
                f"backbone_hidden_act={self.backbone_hidden_act!r} is not an activation of transformers' ACT2FN "
                "(e.g. 'quick_gelu', 'gelu')."
            )
        if self.activation_function not in _ACTIVATIONS:
            raise ValueError(f"activation_function must be one of {_ACTIVATIONS}, got {self.activation_function!r}.")
        if self.decoder_layers < 1:
            raise ValueError("decoder_layers must be at least 1: the label queries are read from the decoder.")
        if self.classifier_head not in CLASSIFIER_HEADS:
            raise ValueError(f"classifier_head must be one of {sorted(CLASSIFIER_HEADS)}, got {self.classifier_head!r}.")
        if self.label_thresholds is not None:
            self.label_thresholds = [float(value) for value in self.label_thresholds]
            if not all(0.0 <= value <= 1.0 for value in self.label_thresholds):
                raise ValueError("label_thresholds are probabilities: every value must lie in [0, 1].")
        custom_pipelines = dict(QUERY2LABEL_PIPELINES)
        custom_pipelines.update(kwargs.pop("custom_pipelines", None) or {})
        self.custom_pipelines = custom_pipelines
        auto_map = dict(QUERY2LABEL_AUTO_MAP)
        auto_map.update(kwargs.pop("auto_map", None) or {})
        auto_map["AutoModelForImageClassification"] = CLASSIFIER_HEADS[self.classifier_head]
        self.auto_map = auto_map
        if _DATACLASS_CONFIGS:
            super().__post_init__(**kwargs)
        if not self.architectures:  # the Auto classes choose between the heads by it, also for a config never saved
            self.architectures = [CLASSIFIER_HEADS[self.classifier_head].rpartition(".")[2]]
        if self.label_groups is not None and not 1 <= self.label_groups <= self.num_labels:
            raise ValueError(
                f"label_groups must lie between 1 and num_labels ({self.num_labels}), got {self.label_groups}; "
                "None decodes one query per label."
            )
        if self.label_thresholds is not None and len(self.label_thresholds) != self.num_labels:
            raise ValueError(
                f"label_thresholds has {len(self.label_thresholds)} values but there are {self.num_labels} labels: "
                "give one threshold per label, in label-id order."
            )


    @property
    def num_queries(self) -> int:
        """Decoder queries: one per label, or one per group with `label_groups`."""
        return self.label_groups or self.num_labels

    @property
    def labels_per_query(self) -> int:
        return -(-self.num_labels // self.num_queries)  # ceil

    def query_of_label(self, label: int) -> int:
        """The decoder query that decodes `label` (itself without groups)."""
        return label // self.labels_per_query


__all__ = ["Query2LabelConfig"]
