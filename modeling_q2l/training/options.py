"""The options of a training run as the training code takes them (typed specs: the command line's `ModelArguments`
and `Query2LabelTrainingArguments` are these classes, `cli.arguments` only parses them): the model and its loss
(`ModelOptions`), and transformers' `TrainingArguments` with the general recipe's defaults and this package's
augmentations (`TrainingOptions`). Each default is the `general` recipe's value (`zoo.recipes`); other recipes
start from their own values, and each option given overrides one.
"""

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from ..data.loading import default_loader_workers
from ..zoo.recipes import ONE_CYCLE, recipes_help
from ..zoo.variants import VARIANTS


@dataclass
class ModelOptions:
    """The model a training run builds or starts from, its loss and EMA: the command line's `ModelArguments`."""

    recipe: str | None = field(
        default=None,
        metadata={"help": f"Start from a named recipe; any option given overrides its value ({recipes_help()}). Default: the --variant's recipe, else fashion-mnist-mosaic on the embedded dataset (scripts/train.py's default), else general."},
    )
    variant: str | None = field(
        default=None,
        metadata={"help": f"A paper variant ({', '.join(VARIANTS)}): its architecture, resolution and the authors' training recipe (optimizer, schedule, loss, EMA, augmentation, epochs, batch); every value can be overridden by its own option."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Start from a saved Q2L model (folder or Hub id); its labels are matched to the dataset's."},
    )
    label_mapping: str | None = field(
        default=None,
        metadata={"help": 'JSON object (or file) {dataset label: label of --model_name_or_path}, e.g. \'{"motorbike": "motorcycle"}\'.'},
    )
    freeze_backbone: bool = field(default=False, metadata={"help": "Train the Q2L head only (small datasets)."})
    frozen_backbone_stages: int | None = field(
        default=None, metadata={"help": "Keep the backbone's stem and its first N stages frozen (0: the stem only)."}
    )
    backbone: str = field(default="tf_efficientnet_lite0", metadata={"help": "timm architecture of the backbone."})
    backbone_weights: str | None = field(
        default=None,
        metadata={"help": "Local file of pretrained backbone weights (timm format), or `none` for random weights."},
    )
    backbone_kwargs: str | None = field(
        default=None, metadata={"help": 'JSON of extra timm arguments, e.g. \'{"output_stride": 16}\'.'}
    )
    image_size: int = field(default=224, metadata={"help": "Square training resolution (224: the pretraining resolution of most ImageNet backbones)."})
    inference_image_size: int | None = field(
        default=None,
        metadata={"help": "Square resolution the saved image processor resizes to, and the final evaluation runs at (default: --image_size). Training stays at --image_size; a larger size shows the trained model its objects larger (recipe fashion-mnist-mosaic: trained at 128, saved at 160)."},
    )
    min_feature_grid: int = field(
        default=6,
        metadata={"help": "The queries attend to the last backbone stage whose feature grid has at least this many cells a side (128 px: stride 16, 8 x 8; 224 px and more: the last stage); 0: always the last stage."},
    )
    fuse_feature_levels: bool = field(
        default=True,
        metadata={"help": "Add the later stages (projected, upsampled) onto the grid --min_feature_grid chose, or with two --backbone_kwargs out_indices (config.fuse_feature_levels); false: that stage alone."},
    )
    feature_fusion_channels: int | None = field(
        default=None,
        metadata={"help": "With --fuse_feature_levels: project every level (the finest too) to this many channels and add them there, as a feature pyramid does (config.feature_fusion_channels); default: add the coarser levels in the finest level's own channels."},
    )
    classifier_head: str = field(
        default="query2label", metadata={"help": "query2label, or global_average_pooling for the baseline."}
    )
    hidden_size: int = field(default=256, metadata={"help": "Transformer width."})
    encoder_layers: int = field(
        default=1,
        metadata={"help": "Transformer encoder layers (the paper's 1; recipe fashion-mnist-mosaic: 0, its cross-attention maps then index the feature grid directly)."},
    )
    decoder_layers: int = field(default=2, metadata={"help": "Transformer decoder layers."})
    label_groups: int | None = field(
        default=None, metadata={"help": "Group decoding: this many decoder queries, each decoding its share of the labels."}
    )
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads."})
    intermediate_size: int = field(default=1024, metadata={"help": "Feed-forward width."})
    dropout: float = field(default=0.1, metadata={"help": "Transformer dropout."})
    pre_norm: bool = field(default=False, metadata={"help": "Pre-norm transformer layers."})
    loss: str = field(default="asl", metadata={"help": "asl, focal or bce."})
    gamma_neg: float = field(default=2.0, metadata={"help": "ASL focusing parameter of negatives."})
    gamma_pos: float = field(default=0.0, metadata={"help": "ASL focusing parameter of positives."})
    clip: float = field(default=0.0, metadata={"help": "ASL probability margin for negatives."})
    focal_gamma: float = field(default=2.0, metadata={"help": "Gamma of --loss focal."})
    adaptive_asymmetry: bool = field(default=False, metadata={"help": "Move gamma_neg toward a probability gap."})
    target_probability_gap: float = field(default=0.1, metadata={"help": "Target mean p+ - mean p- gap."})
    asymmetry_step_size: float = field(default=1.0, metadata={"help": "Step size lambda of adaptive asymmetry."})
    ema_decay: float = field(default=0.9997, metadata={"help": "EMA decay (0 disables the EMA)."})
    exempt_norm_and_bias_from_decay: bool = field(
        default=False, metadata={"help": "No weight decay on norms and biases (the official recipe decays all)."}
    )
    backbone_learning_rate: float | None = field(
        default=None, metadata={"help": "A separate peak learning rate for the backbone."}
    )


@dataclass
class TrainingOptions(TrainingArguments):
    """TrainingArguments with the general recipe's defaults (the official recipe's optimizer and schedule: torch's AdamW
    and a one-cycle schedule (`lr_scheduler_type="one_cycle"`, which only `Query2LabelTrainer` knows). Every other optimizer
    and scheduler of transformers can be asked for with `--optim` and `--lr_scheduler_type`."""

    output_dir: str = field(default="outputs/q2l-model", metadata={"help": "Output folder (each recipe names its own, e.g. outputs/q2l-fashion-mnist-mosaic)."})
    num_train_epochs: float = field(default=8.0, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate of the one-cycle schedule."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    optim: str = field(
        default="adamw_torch", metadata={"help": "Optimizer (the official recipe: adamw_torch); any of transformers' --optim choices."}
    )
    lr_scheduler_type: str = field(
        default=ONE_CYCLE,
        metadata={
            "help": "one_cycle (the official recipe, stepped every iteration; --warmup_steps sets its warm-up: steps, or "
            "below 1 a fraction of them; default a fifth) or any transformers scheduler: linear, cosine, constant, constant_with_warmup, ..."
        },
    )
    eval_strategy: IntervalStrategy | str = field(
        default="no",
        metadata={"help": "When to evaluate during training (the end of training always evaluates regular and EMA weights)."},
    )
    save_strategy: SaveStrategy | str = field(default="epoch", metadata={"help": "When to save checkpoints."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    logging_steps: float = field(default=20, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep all columns (images are decoded lazily)."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Experiment trackers."})
    dataloader_num_workers: int = field(
        default_factory=default_loader_workers, metadata={"help": "Data loading processes (default: 1 per 2 cores, at most 4)."}
    )
    dataloader_pin_memory: bool = field(
        default_factory=lambda: torch.cuda.is_available(),
        metadata={"help": "Pin the data loader's memory (default: only where CUDA is available; on CPU it only warns)."},
    )
    channels_last: bool = field(
        default=True, metadata={"help": "On CPU, train convolutional backbones in channels-last layout (about 1.6x faster)."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over: delete the checkpoints in --output_dir instead of resuming from the last one."},
    )
    randaugment: bool = field(default=True, metadata={"help": "RandAugment (2 ops) on training images."})
    randaugment_magnitude: int = field(default=9, metadata={"help": "RandAugment magnitude."})
    cutout_probability: float = field(default=0.5, metadata={"help": "Probability of erasing a random patch."})
    horizontal_flip: bool = field(default=False, metadata={"help": "Random horizontal flips (not official)."})
    layout_randomization: float = field(
        default=0.0,
        metadata={"help": "Probability of changing a training image's layout: new background, tint, object size, noise, blur, JPEG for the same objects (not official; for synthetic layouts such as the embedded mosaics, not photographs; recipe fashion-mnist-mosaic: 0.6); 0: off."},
    )
    object_recomposition: float = field(
        default=0.0,
        metadata={"help": "Probability of laying a training image's boxed objects, and another image's, out again: new sizes, places, counts, overlaps and label combinations (needs an `objects` column and flat backgrounds; not official); 0: off."},
    )
    cpu_threads: int | None = field(
        default=None, metadata={"help": "torch threads per process on CPU (default: all cores / processes)."}
    )

    def __post_init__(self):
        # TrainingArguments checks the name against transformers' schedulers: one-cycle is ours.
        one_cycle = str(self.lr_scheduler_type) == ONE_CYCLE
        if one_cycle:
            self.lr_scheduler_type = "constant"
        if self.bf16 and not torch.cuda.is_available():  # bfloat16 autocast on the CPU (AMX), which transformers
            self.use_cpu = True  # refuses unless told the run is a CPU one
        super().__post_init__()
        if one_cycle:
            self.lr_scheduler_type = ONE_CYCLE
