"""The main job: train Query2Label on a multi-label dataset, evaluate it, save a Hub-ready folder.

`scripts/train.py` is a thin entry point to `main()`; the arguments follow transformers'
`run_image_classification.py` (model, data and training arguments) plus the Q2L and ASL options.
"""

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from . import Query2LabelConfig, Query2LabelImageProcessor, model_class_for
from .data import (
    MultiLabelImageDataset,
    build_transforms,
    collate_multilabel,
    detect_label_format,
    load_coco_instances,
    load_raw_datasets,
    parse_label_names,
    prepare_split,
    resolve_label_column,
)
from .evaluation import COCO_AREA_THRESHOLDS, evaluation_report, largest_object_areas, report_to_markdown
from .metrics import sigmoid_scores
from .mosaic import MOSAIC_AREA_THRESHOLDS
from .pretrained_backbones import load_pretrained_backbone
from .trainer import Query2LabelTrainer, loss_settings

logger = logging.getLogger(__name__)

EMBEDDED_DATASET = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic"


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from a saved Q2L model (folder or Hub id) instead of a new one."}
    )
    backbone: str = field(default="tf_efficientnet_lite0", metadata={"help": "timm architecture of the backbone."})
    backbone_weights: str | None = field(
        default=None, metadata={"help": "Local file of pretrained backbone weights (timm format)."}
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
        metadata={"help": "Hub id, local folder (Hub layout, imagefolder) or parquet file. Default: the embedded set."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_split_name: str = field(default="train", metadata={"help": "Training split."})
    eval_split_name: str = field(default="validation", metadata={"help": "Evaluation split."})
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
    randaugment: bool = field(default=True, metadata={"help": "RandAugment (2 ops) on training images."})
    randaugment_magnitude: int = field(default=9, metadata={"help": "RandAugment magnitude."})
    cutout_probability: float = field(default=0.5, metadata={"help": "Probability of erasing a random patch."})
    horizontal_flip: bool = field(default=False, metadata={"help": "Random horizontal flips (not official)."})
    area_thresholds: list[int] | None = field(
        default=None, metadata={"help": "Box areas splitting small/medium/large objects (default COCO's 1024 9216)."}
    )
    cpu_threads: int | None = field(
        default=None, metadata={"help": "torch threads per process on CPU (default: all cores / processes)."}
    )


@dataclass
class Query2LabelTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults of the embedded CPU main job."""

    output_dir: str = field(default="outputs/q2l-fashion-mnist-mosaic", metadata={"help": "Output folder."})
    num_train_epochs: float = field(default=3.5, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    learning_rate: float = field(default=3e-4, metadata={"help": "Peak learning rate of the one-cycle schedule."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
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


def parse_arguments(argv=None):
    parser = HfArgumentParser((ModelArguments, DataArguments, Query2LabelTrainingArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
    return parser.parse_args_into_dataclasses(args=argv)


def configure_cpu_threads(requested: int | None, training_args) -> int:
    """On CPU, use every core: `accelerate launch` limits torch to 1 thread unless told otherwise."""
    if torch.cuda.is_available() and not training_args.use_cpu:
        return torch.get_num_threads()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = requested or max(1, (os.cpu_count() or 1) // local_processes)
    if threads != torch.get_num_threads():
        logger.info("Using %d torch threads per process (was %d).", threads, torch.get_num_threads())
        torch.set_num_threads(threads)
    return threads


def load_splits(data_args):
    """(train, eval) `datasets.Dataset`s from the data arguments."""
    if data_args.coco_annotations:
        train = load_coco_instances(data_args.coco_annotations, data_args.coco_image_dir or ".")
        evaluation = (
            load_coco_instances(data_args.coco_eval_annotations, data_args.coco_eval_image_dir or ".")
            if data_args.coco_eval_annotations
            else None
        )
    else:
        name = data_args.dataset_name or str(EMBEDDED_DATASET)
        if data_args.dataset_name is None and not EMBEDDED_DATASET.is_dir():
            raise FileNotFoundError(
                f"The embedded dataset is missing ({EMBEDDED_DATASET}): run from a clone of the repository, build it "
                "with scripts/build_mosaic_dataset.py, or pass --dataset_name."
            )
        raw = load_raw_datasets(name, data_args.dataset_config_name)
        if data_args.train_split_name not in raw:
            raise ValueError(f"No split {data_args.train_split_name!r} in {name} (splits: {list(raw)}).")
        train = raw[data_args.train_split_name]
        evaluation = raw.get(data_args.eval_split_name)
    if evaluation is None:
        logger.info("No %r split: holding out %.0f%% of train.", data_args.eval_split_name, 100 * data_args.train_val_split)
        parts = train.train_test_split(test_size=data_args.train_val_split, seed=0)
        train, evaluation = parts["train"], parts["test"]
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.max_eval_samples is not None:
        evaluation = evaluation.select(range(min(data_args.max_eval_samples, len(evaluation))))
    return train, evaluation


def build_model(model_args, label_names: list[str]):
    """A new model (pretrained backbone loaded explicitly) or a saved one; returns (model, backbone weights source)."""
    id2label = dict(enumerate(label_names))
    label2id = {name: index for index, name in id2label.items()}
    loss = loss_settings(model_args.loss, model_args.gamma_neg, model_args.gamma_pos, model_args.clip, model_args.focal_gamma)
    if model_args.model_name_or_path:
        config = Query2LabelConfig.from_pretrained(model_args.model_name_or_path)
        if list(config.id2label.values()) != label_names:
            raise ValueError(
                f"{model_args.model_name_or_path} predicts {list(config.id2label.values())} but the dataset has "
                f"{label_names}; start from a model with the same labels."
            )
        for key, value in loss.items():
            setattr(config, key, value)
        model = model_class_for(config).from_pretrained(model_args.model_name_or_path, config=config)
        return model, f"fine-tuned from {model_args.model_name_or_path}"
    config = Query2LabelConfig(
        backbone=model_args.backbone,
        backbone_kwargs=json.loads(model_args.backbone_kwargs) if model_args.backbone_kwargs else None,
        image_size=model_args.image_size,
        classifier_head=model_args.classifier_head,
        hidden_size=model_args.hidden_size,
        use_input_projection=True,
        encoder_layers=model_args.encoder_layers,
        decoder_layers=model_args.decoder_layers,
        num_attention_heads=model_args.num_attention_heads,
        intermediate_size=model_args.intermediate_size,
        dropout=model_args.dropout,
        attention_dropout=model_args.dropout,
        pre_norm=model_args.pre_norm,
        id2label=id2label,
        label2id=label2id,
        **loss,
    )
    model = model_class_for(config)(config)
    return model, load_pretrained_backbone(model, model_args.backbone_weights)


def image_processor_for(config) -> Query2LabelImageProcessor:
    """The processor matching the backbone's pretraining normalisation (timm's pretrained config)."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    if config.backbone_config is None:
        import timm

        try:
            pretrained_cfg = timm.models.get_pretrained_cfg(config.backbone)
            if pretrained_cfg is not None:
                mean, std = pretrained_cfg.mean, pretrained_cfg.std
        except Exception as error:  # unknown to timm's pretrained registry: keep ImageNet statistics
            logger.info("No pretrained config for %s (%s); using ImageNet mean/std.", config.backbone, error)
    size = config.image_size
    return Query2LabelImageProcessor(size={"height": size, "width": size}, image_mean=list(mean), image_std=list(std))


def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    _, report = run(model_args, data_args, training_args)
    return report


def run(model_args, data_args, training_args):
    """Train, pick the better of regular and EMA weights, evaluate, save (on the main process).

    Returns the trainer (holding the final model) and the evaluation report."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, handlers=[logging.StreamHandler(sys.stdout)])
    transformers.utils.logging.set_verbosity_warning()
    threads = configure_cpu_threads(data_args.cpu_threads, training_args)
    set_seed(training_args.seed)
    started = time.time()

    train_raw, eval_raw = load_splits(data_args)
    label_column = resolve_label_column(train_raw, data_args.label_column_name)
    encoder = detect_label_format(
        train_raw, label_column, parse_label_names(data_args.class_names), data_args.label_format, data_args.allow_empty_labels
    )
    prepare = dict(
        encoder=encoder,
        image_column=data_args.image_column_name,
        label_column=label_column,
        skip_bad_samples=data_args.skip_bad_samples,
        verify_images=data_args.verify_images,
    )
    train_split = prepare_split(train_raw, split_name="train", **prepare)
    eval_split = prepare_split(eval_raw, split_name="evaluation", **prepare)
    logger.info("Labels (%s format): %s", encoder.label_format, encoder.names)

    model, backbone_source = build_model(model_args, encoder.names)
    processor = image_processor_for(model.config)
    transform_args = dict(image_size=model.config.image_size, mean=processor.image_mean, std=processor.image_std)
    train_dataset = MultiLabelImageDataset(
        train_split,
        data_args.image_column_name,
        build_transforms(
            train=True,
            randaugment=data_args.randaugment,
            randaugment_magnitude=data_args.randaugment_magnitude,
            cutout_probability=data_args.cutout_probability,
            horizontal_flip=data_args.horizontal_flip,
            **transform_args,
        ),
        augmentation_seed=training_args.seed,
    )
    eval_dataset = MultiLabelImageDataset(eval_split, data_args.image_column_name, build_transforms(train=False, **transform_args))

    trainer = Query2LabelTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_multilabel,
        ema_decay=model_args.ema_decay or None,
        exempt_norm_and_bias_from_decay=model_args.exempt_norm_and_bias_from_decay,
        backbone_learning_rate=model_args.backbone_learning_rate,
        adaptive_asymmetry=(model_args.target_probability_gap, model_args.asymmetry_step_size)
        if model_args.adaptive_asymmetry
        else None,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    prediction, weights = trainer.predict_with_better_weights(eval_dataset)
    logger.info("Saving the %s weights (the better of regular and EMA on the evaluation split).", weights)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    scores = sigmoid_scores(logits)
    areas, thresholds = None, tuple(data_args.area_thresholds or ())
    if "objects" in eval_split.dataset.features:
        thresholds = thresholds or (MOSAIC_AREA_THRESHOLDS if data_args.dataset_name is None else COCO_AREA_THRESHOLDS)
        areas = largest_object_areas(eval_split.dataset["objects"], encoder.label_index, len(encoder.names))
    report = evaluation_report(scores, eval_split.labels, encoder.names, areas, thresholds or COCO_AREA_THRESHOLDS)
    report.update(
        {
            "weights": weights,
            "backbone_weights": backbone_source,
            "dataset": data_args.dataset_name or "embedded Fashion-MNIST mosaics (validation split)",
            "eval_split": data_args.eval_split_name,
            "skipped_samples": {"train": train_split.skipped, "evaluation": eval_split.skipped},
            "train_runtime_s": round(train_result.metrics.get("train_runtime", 0.0), 1),
            "total_runtime_s": round(time.time() - started, 1),
            "torch_threads": threads,
            "world_size": training_args.world_size,
            "final_gamma_neg": model.config.asl_gamma_neg,
        }
    )
    if trainer.is_world_process_zero():
        save_outputs(trainer, processor, report, model_args, data_args, training_args)
        print(report_to_markdown(report))
        print(f"\nSaved to {training_args.output_dir} ({report['total_runtime_s']} s in all)")
    return trainer, report


def save_outputs(trainer, processor, report, model_args, data_args, training_args) -> None:
    """Weights, config, processor, code files, `eval_results.json` and a model card with the measured results."""
    from .model_card import training_model_card

    output_dir = Path(training_args.output_dir)
    trainer.save_model(str(output_dir))
    processor.save_pretrained(output_dir)
    (output_dir / "eval_results.json").write_text(json.dumps(report, indent=2))
    card = training_model_card(trainer.model.config, report, model_args, data_args, training_args)
    card.save(output_dir / "README.md")
