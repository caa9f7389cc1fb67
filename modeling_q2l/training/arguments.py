"""Command-line arguments of the main job, in the style of transformers' `run_image_classification.py`: model,
data and training arguments, plus the Q2L and ASL options."""

import json
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from .trainer import ONE_CYCLE


def loss_settings(loss: str, gamma_neg: float, gamma_pos: float, clip: float, focal_gamma: float = 2.0) -> dict:
    """Config values that make the model's loss the ASL, focal loss or plain binary cross-entropy."""
    if loss == "asl":
        return {"asl_gamma_neg": gamma_neg, "asl_gamma_pos": gamma_pos, "asl_clip": clip}
    if loss == "focal":
        return {"asl_gamma_neg": focal_gamma, "asl_gamma_pos": focal_gamma, "asl_clip": 0.0}
    if loss == "bce":
        return {"asl_gamma_neg": 0.0, "asl_gamma_pos": 0.0, "asl_clip": 0.0}
    raise ValueError(f"--loss must be asl, focal or bce, got {loss!r}.")


@dataclass
class ModelArguments:
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
    image_size: int = field(default=128, metadata={"help": "Square input resolution."})
    classifier_head: str = field(
        default="query2label", metadata={"help": "query2label, or global_average_pooling for the baseline."}
    )
    hidden_size: int = field(default=256, metadata={"help": "Transformer width."})
    encoder_layers: int = field(default=1, metadata={"help": "Transformer encoder layers."})
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
class DataArguments:
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub id, local folder (Hub layout, imagefolder) or parquet file (scripts/train.py: the embedded set)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_split_name: str = field(default="train", metadata={"help": "Training split."})
    eval_split_name: str = field(default="validation", metadata={"help": "Evaluation split."})
    extra_eval_split_names: list[str] | None = field(
        default=None,
        metadata={"help": "More splits to evaluate the final model on, reported apart (scripts/train.py: out_of_layout)."},
    )
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train held out when the dataset has no evaluation split."}
    )
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column_name: str | None = field(
        default=None, metadata={"help": "Column holding the labels (default: labels, label, objects or tags)."}
    )
    label_format: str = field(default="auto", metadata={"help": "auto, ids, names, multi_hot or objects."})
    class_names: str | None = field(
        default=None, metadata={"help": "Label names: coco, voc, a names file, or a comma-separated list."}
    )
    coco_annotations: str | None = field(default=None, metadata={"help": "COCO instances JSON for training."})
    coco_image_dir: str | None = field(default=None, metadata={"help": "Image folder of --coco_annotations."})
    coco_eval_annotations: str | None = field(default=None, metadata={"help": "COCO instances JSON for evaluation."})
    coco_eval_image_dir: str | None = field(default=None, metadata={"help": "Image folder of the evaluation JSON."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set."})
    skip_bad_samples: bool = field(
        default=False, metadata={"help": "Drop (and count) unreadable images and invalid labels instead of failing."}
    )
    allow_empty_labels: bool = field(
        default=False, metadata={"help": "Keep samples without any label as all-negative examples."}
    )
    verify_images: bool = field(default=True, metadata={"help": "Decode every image once before training."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the training split as it downloads, without writing it to disk (needs --max_steps)."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes that check the samples and encode the labels (cached between runs)."}
    )
    randaugment: bool = field(default=True, metadata={"help": "RandAugment (2 ops) on training images."})
    randaugment_magnitude: int = field(default=9, metadata={"help": "RandAugment magnitude."})
    cutout_probability: float = field(default=0.5, metadata={"help": "Probability of erasing a random patch."})
    horizontal_flip: bool = field(default=False, metadata={"help": "Random horizontal flips (not official)."})
    area_thresholds: list[int] | None = field(
        default=None,
        metadata={"help": "Box areas splitting small/medium/large objects (default: the dataset card's, else COCO's 1024 9216)."},
    )
    cpu_threads: int | None = field(
        default=None, metadata={"help": "torch threads per process on CPU (default: all cores / processes)."}
    )


@dataclass
class Query2LabelTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults of the embedded CPU main job and the official recipe: torch's AdamW and a
    one-cycle schedule (`lr_scheduler_type="one_cycle"`, which only `Query2LabelTrainer` knows). Every other optimizer
    and scheduler of transformers can be asked for with `--optim` and `--lr_scheduler_type`."""

    output_dir: str = field(default="outputs/q2l-fashion-mnist-mosaic", metadata={"help": "Output folder."})
    num_train_epochs: float = field(default=6.0, metadata={"help": "Training epochs."})
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
            "help": "one_cycle (the official recipe, stepped every iteration; --warmup_steps sets its warm-up, default "
            "20% of the steps) or any transformers scheduler: linear, cosine, constant, constant_with_warmup, ..."
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
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data loading processes."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over: delete the checkpoints in --output_dir instead of resuming from the last one."},
    )

    def __post_init__(self):
        # TrainingArguments checks the name against transformers' schedulers: one-cycle is ours.
        one_cycle = str(self.lr_scheduler_type) == ONE_CYCLE
        if one_cycle:
            self.lr_scheduler_type = "constant"
        super().__post_init__()
        if one_cycle:
            self.lr_scheduler_type = ONE_CYCLE


def parse_arguments(argv=None, defaults: dict | None = None):
    """(model, data, training) arguments from the command line (or one JSON file); `defaults` are the entry point's
    own defaults, e.g. the path of the embedded dataset, which the package itself never assumes."""
    parser = HfArgumentParser((ModelArguments, DataArguments, Query2LabelTrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(os.path.abspath(argv[0]), encoding="utf-8") as handle:
            return parser.parse_dict({**(defaults or {}), **json.load(handle)})
    parser.set_defaults(**(defaults or {}))
    return parser.parse_args_into_dataclasses(args=argv)
