"""Every command-line argument of the package's commands, in one place (HfArgumentParser dataclasses).

`DataArguments` is the one dataset-argument set: training, evaluation and prediction read their splits through it
(`modeling_q2l.data.splits`). Training adds `ModelArguments` and `Query2LabelTrainingArguments` (transformers'
`TrainingArguments` with the recipe's defaults), in the style of transformers' `run_image_classification.py`; each
other command has one dataclass of its own. `modeling_q2l.cli.commands` parses them and calls the package.
"""

import json
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from ..mosaics.layouts import HELD_OUT_LAYOUTS
from ..data.loading import default_loader_workers
from ..data.splits import DEFAULT_EVAL_SPLIT
from ..zoo.recipes import ONE_CYCLE, choose_recipe, recipes_help
from ..zoo.variants import VARIANTS


@dataclass
class ModelArguments:
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
class DataArguments:
    """Which dataset and splits, how to read its images and labels, how to check its samples: shared by training,
    evaluation and prediction."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub id, local folder (Hub layout, imagefolder) or parquet file (scripts/train.py: the embedded set)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_split_name: str = field(default="train", metadata={"help": "Training split."})
    eval_split_name: str = field(
        default=DEFAULT_EVAL_SPLIT, metadata={"help": "Evaluation split (evaluate_model.py and predict.py: the split they read; training without a `validation` split holds --train_val_split of train out).", "aliases": ["--split"]}
    )
    extra_eval_split_names: list[str] | None = field(
        default=None,
        metadata={"help": "More splits to evaluate the final model on, reported apart (recipe fashion-mnist-mosaic: out_of_layout and the layout_* splits); a name the dataset lacks stops the run before training."},
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
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation (and extra) splits."})
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
    localization_split_name: str | None = field(
        default=None,
        metadata={"help": "Training: also measure where the final model's label queries look on this split (one of --extra_eval_split_names, with boxes; recipe fashion-mnist-mosaic: out_of_layout)."},
    )
    area_thresholds: list[int] | None = field(
        default=None,
        metadata={"help": "Box areas splitting small/medium/large objects (default: the dataset card's, else COCO's 1024 9216)."},
    )


@dataclass
class Query2LabelTrainingArguments(TrainingArguments):
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
        super().__post_init__()
        if one_cycle:
            self.lr_scheduler_type = ONE_CYCLE


# ---- evaluation and prediction (with `DataArguments` for the dataset)

@dataclass
class EvaluationArguments:
    """`scripts/evaluate_model.py`: which model, and what to report besides the metrics (the data: `DataArguments`)."""

    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: CUDA when present)."})
    image_size: int | None = field(
        default=None,
        metadata={"help": "Evaluate at this square resolution instead of the saved image processor's, e.g. to choose a model's --inference_image_size (the folder is not changed)."},
    )
    threshold: float = field(
        default=0.5, metadata={"help": "One threshold for the CP/CR/OP/OR metrics (also reported at the model's per-label thresholds)."}
    )
    fit_thresholds: bool = field(
        default=False,
        metadata={"help": "Refit the per-label thresholds on this split (F1-maximising) and save them into the model folder's config."},
    )
    localization: bool = field(
        default=False,
        metadata={"help": "Also measure where the label queries look (pointing game, attention mass in boxes); needs boxes."},
    )
    attention_layer: int = field(default=-1, metadata={"help": "Decoder layer of the maps for --localization (-1: last)."})
    through_encoder: bool = field(
        default=False, metadata={"help": "Carry the maps back through the encoder's self-attention (rollout)."}
    )
    attention_head: int | None = field(
        default=None, metadata={"help": "Measure one attention head's maps instead of the mean over heads."}
    )
    plots: str | None = field(
        default=None, metadata={"help": "Write evaluation plots (PR curves, AP per label, mAP by size, F1 vs threshold) here."}
    )
    output: str | None = field(default=None, metadata={"help": "Write the report as JSON here."})
    markdown: str | None = field(default=None, metadata={"help": "Write the Markdown tables here."})


@dataclass
class PredictArguments:
    """`scripts/predict.py`: image files and folders after the options, or a dataset split (`DataArguments`)."""

    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    threshold: float | None = field(
        default=None, metadata={"help": "One probability threshold for every label (default: the model's per-label thresholds, else 0.5)."}
    )
    thresholds: str | None = field(default=None, metadata={"help": "JSON file {label: threshold} overriding single labels."})
    format: str = field(default="json", metadata={"help": "json or csv."})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: CUDA when present)."})
    num_workers: int | None = field(
        default=None, metadata={"help": "Processes that decode and resize images while the model runs (default: 1 per 2 cores, at most 4; 0: none)."}
    )


@dataclass
class VisualizeArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id (a Query2Label head)."})
    output_dir: str = field(metadata={"help": "Folder for the figures (one PNG per image)."})
    labels: list[str] = field(default_factory=list, metadata={"help": "Labels to draw besides the predicted ones."})
    layer: int = field(default=-1, metadata={"help": "Decoder layer whose cross-attention is drawn (-1: the last)."})
    per_head: bool = field(default=False, metadata={"help": "Add one row of panels per attention head."})
    through_encoder: bool = field(
        default=False, metadata={"help": "Carry the maps back through the encoder's self-attention (rollout)."}
    )
    threshold: float | None = field(
        default=None, metadata={"help": "One threshold for every label (default: the model's per-label thresholds)."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: CUDA when present)."})


# ---- the Hub, export, the zoo, data building, benchmarks and the demo

@dataclass
class PublishArguments:
    model: str = field(metadata={"help": "The model folder to publish (from train.py or the converter)."})
    repo_id: str = field(metadata={"help": "Hub repository, e.g. ORG/q2l-resnet101-448-coco."})
    variant: str | None = field(default=None, metadata={"help": "Paper variant whose card template to use."})
    eval_results: str | None = field(default=None, metadata={"help": "Report of scripts/evaluate_model.py (JSON)."})
    measured_on: str | None = field(
        default=None, metadata={"help": "Words for the data the results were measured on (default: from the report)."}
    )
    private: bool = field(default=False, metadata={"help": "Create a private repository."})
    revision: str | None = field(default=None, metadata={"help": "Branch to upload to (created if missing)."})
    commit_message: str = field(default="Upload Query2Label model", metadata={"help": "Commit message."})
    dry_run: str | None = field(default=None, metadata={"help": "Write the repository folder here; upload nothing."})
    baseline_results: str | None = field(
        default=None,
        metadata={"help": "Another run's eval_results.json (e.g. the global-average-pooling baseline) to compare with in the card."},
    )
    baseline_name: str = field(
        default="global-average-pooling baseline", metadata={"help": "What --baseline_results is, in the card's words."}
    )
    onnx: bool = field(
        default=False, metadata={"help": "Also export the model to ONNX (model.onnx, checked against PyTorch) into the folder."}
    )
    space: str | None = field(
        default=None,
        metadata={"help": "Also build a Gradio Space running the model (its repo id, ORG/NAME); with --dry_run DIR it is written to DIR-space."},
    )


@dataclass
class ExportArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    output: str | None = field(default=None, metadata={"help": "ONNX file to write (default: model.onnx in the folder)."})
    opset: int = field(default=18, metadata={"help": "ONNX opset."})
    tolerance: float = field(default=1e-4, metadata={"help": "Largest allowed |logit difference| to PyTorch."})


@dataclass
class ConversionArguments:
    checkpoint: str = field(metadata={"help": "Official checkpoint (torch pickle holding `state_dict`)."})
    config: str = field(metadata={"help": "JSON of the official training arguments (config_new.json)."})
    output_dir: str = field(metadata={"help": "Folder to write the converted model into."})
    labels: str | None = field(
        default=None,
        metadata={"help": "Label names: coco (default), voc, or a file (JSON list or one name per line)."},
    )
    variant: str | None = field(
        default=None, metadata={"help": "Paper variant the checkpoint must match, e.g. Q2L-R101-448 (optional)."}
    )
    allow_unsafe_pickle: bool = field(
        default=False,
        metadata={"help": "Unpickle the checkpoint fully when weights_only loading fails. Only for trusted files."},
    )


@dataclass
class CardArguments:
    output_dir: str = field(default="model_cards", metadata={"help": "Where to write the cards."})
    repo_namespace: str = field(default="ORG", metadata={"help": "Hub namespace used in the usage snippets."})


@dataclass
class MosaicBuildArguments:
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the dataset (required; a folder that is not empty is refused without --overwrite_output_dir)."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the dataset in a non-empty --output_dir (its parquet files and card)."}
    )
    num_train: int = field(default=4000, metadata={"help": "Number of training mosaics."})
    num_validation: int = field(default=1000, metadata={"help": "Number of validation mosaics."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    fashion_mnist_dir: str | None = field(
        default=None, metadata={"help": "Folder of the Fashion-MNIST idx files (the source without --dataset_name)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A single-label dataset (Hub id or local folder) instead of Fashion-MNIST."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "The split the mosaics are drawn from."})
    image_column_name: str = field(default="image", metadata={"help": "Image column of the source dataset."})
    label_column_name: str = field(default="label", metadata={"help": "Label column (a ClassLabel) of the source."})
    canvas_size: int = field(default=128, metadata={"help": "Side of the mosaics in pixels."})
    min_object_size: int = field(default=16, metadata={"help": "Smallest object side in pixels."})
    max_object_size: int = field(default=80, metadata={"help": "Largest object side in pixels."})
    max_objects: int = field(default=4, metadata={"help": "Most objects per mosaic."})
    varied_background_probability: float = field(
        default=0.4,
        metadata={"help": "Share of train/validation mosaics with a varied background (any colour, gradient or texture) and objects of any tint."},
    )
    outfit_probability: float = field(
        default=0.5, metadata={"help": "Share of mosaics whose classes come from one outfit (Fashion-MNIST only)."}
    )
    out_of_layout_split: str | None = field(
        default="test",
        metadata={"help": "Source split of the out-of-layout test mosaics (Fashion-MNIST: its test split); none to skip."},
    )
    num_out_of_layout: int = field(
        default=1000,
        metadata={"help": "Out-of-layout mosaics: every background varied, any object tint, independent classes."},
    )
    held_out_layouts: list[str] = field(
        default_factory=lambda: list(HELD_OUT_LAYOUTS),
        metadata={"help": f"Held-out layout test splits (layout_NAME) to build: any of {', '.join(HELD_OUT_LAYOUTS)}."},
    )
    num_per_layout: int = field(default=500, metadata={"help": "Mosaics per held-out layout split (0: none)."})
    jpeg_quality: int = field(default=85, metadata={"help": "JPEG quality."})
    image_format: str = field(default="JPEG", metadata={"help": "JPEG (compact) or PNG (lossless)."})


@dataclass
class SuiteArguments:
    variant: str = field(
        default="Q2L-R101-448",
        metadata={"help": f"A paper variant ({', '.join(VARIANTS)}), `demo`, or a folder holding a Query2Label config.json."},
    )
    backbone: str | None = field(default=None, metadata={"help": "Another timm backbone (default: the variant's)."})
    image_size: int | None = field(default=None, metadata={"help": "Input resolution (default: the variant's)."})
    num_labels: int | None = field(default=None, metadata={"help": "Labels (default: the variant's, 80)."})
    label_groups: int | None = field(default=None, metadata={"help": "Group decoding with this many queries."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4], metadata={"help": "Inference batch sizes."})
    train_batch_size: int = field(default=2, metadata={"help": "Batch of the training step (0 skips it)."})
    dtype: str = field(default="float32", metadata={"help": "Weights and inputs: float32, float16 or bfloat16."})
    autocast: str | None = field(
        default=None, metadata={"help": "Mixed precision over float32 weights: float16 or bfloat16 (torch.autocast)."}
    )
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, ..."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's)."})
    repeats: int = field(default=5, metadata={"help": "Timed runs per measurement (the median is reported)."})
    warmup: int = field(default=2, metadata={"help": "Untimed runs before each measurement."})
    compile: bool = field(
        default=False,
        metadata={"help": "On CPU: the model's compiled backbone (config.compile_cpu_inference); elsewhere torch.compile."},
    )
    fast_cpu_inference: bool = field(
        default=True, metadata={"help": "The model's fast CPU kernels (config.fast_cpu_inference); false for PyTorch's defaults."}
    )
    compare_official: str | None = field(
        default=None, metadata={"help": "Local copy of the authors' repository: run their model side by side."}
    )
    compare_gains_off: bool = field(
        default=False,
        metadata={"help": "Run ours with fast_cpu_inference off side by side (where the authors' code cannot run)."},
    )
    label_sweep: list[int] = field(
        default_factory=list, metadata={"help": "Label counts of the head-time sweep, e.g. 80 1000 9605."}
    )
    sweep_groups: int | None = field(default=None, metadata={"help": "Also sweep with group decoding (G queries)."})
    onnx: str | None = field(
        default=None, metadata={"help": "An ONNX export of this configuration (scripts/export_onnx.py): time onnxruntime too."}
    )
    time_onnx_export: bool = field(
        default=False, metadata={"help": "Export this configuration to ONNX (random weights) and time the export."}
    )
    output: str | None = field(default=None, metadata={"help": "Write the results as JSON here."})


@dataclass
class ChecksBenchmarkArguments:
    copies: int = field(default=5, metadata={"help": "How many times the 4,000 training mosaics are repeated."})
    num_proc: int = field(default=2, metadata={"help": "Processes of the parallel run."})


@dataclass
class TransferBenchmarkArguments:
    output_dir: str = field(default="outputs/transfer", metadata={"help": "Where the runs and results go."})
    source_epochs: float = field(default=3.5, metadata={"help": "Epochs of the source model on 4,000 mosaics."})
    finetune_samples: int = field(default=400, metadata={"help": "Training mosaics of the fine-tuning runs."})
    finetune_epochs: float = field(default=5.0, metadata={"help": "Epochs of each fine-tuning run."})


@dataclass
class CompareArguments:
    official_repo: str = field(metadata={"help": "A local copy of the authors' query2labels repository."})
    full_size: bool = field(default=True, metadata={"help": "Also compare CvT-w24 at 384 px (277 M parameters)."})



@dataclass
class PredictionBenchmarkArguments:
    model: str | None = field(default=None, metadata={"help": "Saved model folder (default: the main job's architecture with random weights)."})
    images: int = field(default=10000, metadata={"help": "Image files to predict."})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    workers: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Numbers of decoding workers to time."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's)."})


@dataclass
class DemoArguments:
    """`app.py`: the Gradio demo (in a Space, the model comes from the `Q2L_MODEL` variable)."""

    model: str | None = field(
        default_factory=lambda: os.environ.get("Q2L_MODEL"), metadata={"help": "Saved model folder or Hub id (default: $Q2L_MODEL)."}
    )
    host: str = field(default_factory=lambda: os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), metadata={"help": "Address to serve on."})
    port: int = field(default_factory=lambda: int(os.environ.get("GRADIO_SERVER_PORT", 7860)), metadata={"help": "Port to serve on."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: CUDA when present)."})


# ---- parsing


def parse_training_arguments(argv=None, defaults: dict | None = None, default_dataset_recipe: str | None = None):
    """(model, data, training) arguments from the command line (or one JSON file), starting from a recipe
    (`zoo.recipes`): `--recipe`, else the `--variant`'s, else `default_dataset_recipe` when the run trains on the
    entry point's default dataset (`defaults["dataset_name"]`, e.g. the embedded mosaics, which the package itself never
    assumes), else `general`. Options given override the recipe's values; `model_args.recipe` names the recipe used."""
    parser = HfArgumentParser((ModelArguments, DataArguments, Query2LabelTrainingArguments))
    defaults = dict(defaults or {})
    argv = sys.argv[1:] if argv is None else list(argv)
    from_file = None
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(os.path.abspath(argv[0]), encoding="utf-8") as handle:
            from_file = json.load(handle)
        given = from_file
    else:  # the three options that choose the recipe, before the recipe's values become the defaults
        given = {key: value for key, value in vars(parser.parse_known_args(argv)[0]).items() if value is not None}
    on_default_dataset = given.get("dataset_name", defaults.get("dataset_name")) == defaults.get("dataset_name")
    recipe = choose_recipe(given.get("recipe"), given.get("variant"), default_dataset_recipe if on_default_dataset else None)
    start = {**defaults, **recipe.values, "recipe": recipe.name}
    if from_file is not None:
        return parser.parse_dict({**start, **from_file})
    parser.set_defaults(**start)
    return parser.parse_args_into_dataclasses(args=argv)


def parse_with_inputs(dataclass_types, argv=None, inputs_required: bool = True):
    """Options into `dataclass_types` (HfArgumentParser) and the image files and folders given after them; an unknown
    option, or no input where one is required, stops with a message saying so."""
    args_and_inputs = HfArgumentParser(dataclass_types).parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    *args, inputs = args_and_inputs
    unknown_options = [value for value in inputs if value.startswith("--")]
    if unknown_options:
        raise SystemExit(f"Unknown options: {unknown_options}.")
    if inputs_required and not inputs:
        raise SystemExit("Give at least one image file or folder after the options.")
    return (*args, inputs)


def parse(dataclass_types, argv=None, defaults: dict | None = None):
    """Any other command's arguments: a tuple of `dataclass_types` instances."""
    parser = HfArgumentParser(dataclass_types)
    parser.set_defaults(**(defaults or {}))
    return parser.parse_args_into_dataclasses(args=argv)
