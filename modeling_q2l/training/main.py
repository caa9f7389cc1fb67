"""The main job: train Query2Label on a multi-label dataset, evaluate it, save a Hub-ready folder.

`scripts/train.py` is a thin entry point to `main()`, which it hands its defaults (the embedded dataset's path).
"""

import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import set_seed

from .. import Query2LabelConfig, model_class_for
from ..data.labels import detect_label_format, parse_label_names, resolve_label_column
from ..data.loading import load_coco_instances, load_raw_datasets, prepare_split
from ..data.transforms import (
    MultiLabelImageDataset,
    StreamingMultiLabelDataset,
    collate_multilabel,
    training_augmentation,
)
from ..evaluation.metrics import sigmoid_scores
from ..evaluation.report import (
    area_thresholds_for,
    labels_in_model_order,
    report_for_split,
    report_to_markdown,
)
from ..evaluation.thresholds import fit_label_thresholds
from ..hub.pretrained_backbones import (
    image_processor_for_backbone,
    load_pretrained_backbone,
)
from .arguments import loss_settings, parse_arguments
from .trainer import Query2LabelTrainer
from .transfer import freeze_backbone, load_with_labels

logger = logging.getLogger(__name__)

# `ModelArguments` fields that are `Query2LabelConfig` fields of the same name and meaning
CONFIG_FIELDS_OF_MODEL_ARGUMENTS = (
    "backbone", "image_size", "classifier_head", "hidden_size", "encoder_layers", "decoder_layers",
    "num_attention_heads", "intermediate_size", "dropout", "pre_norm", "label_groups",
)  # fmt: skip


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
        name = data_args.dataset_name
        if name is None:
            raise ValueError("Pass --dataset_name (a Hub id, a local folder or a parquet file) or --coco_annotations.")
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


STREAMING_EVAL_SAMPLES = 1000


def load_streaming_splits(data_args, training_args):
    """(train stream, eval `Dataset` held in memory) for `--streaming`: the training split is read as it downloads and
    never written to disk; the evaluation split's first `--max_eval_samples` (default 1,000) examples are kept in
    memory, or, without one, the first ones of the training stream are held out."""
    from datasets import Dataset, load_dataset

    if training_args.max_steps is None or training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a streamed dataset has no length to count epochs by.")
    if data_args.coco_annotations or not data_args.dataset_name:
        raise ValueError("--streaming reads --dataset_name (a Hub id or local data files), not --coco_annotations.")
    try:
        raw = load_dataset(data_args.dataset_name, data_args.dataset_config_name, streaming=True)
    except Exception as error:
        raise ValueError(f"Cannot stream dataset {data_args.dataset_name!r} ({type(error).__name__}: {error}).") from error
    if data_args.train_split_name not in raw:
        raise ValueError(f"No split {data_args.train_split_name!r} in {data_args.dataset_name} (splits: {list(raw)}).")
    train = raw[data_args.train_split_name]
    count = data_args.max_eval_samples or STREAMING_EVAL_SAMPLES
    if data_args.eval_split_name in raw:
        source = raw[data_args.eval_split_name]
    else:
        logger.info("No %r split: holding out the first %d streamed training examples.", data_args.eval_split_name, count)
        source, train = train, train.skip(count)
    evaluation = Dataset.from_list(list(source.take(count)), features=source.features)
    if data_args.max_train_samples is not None:
        train = train.take(data_args.max_train_samples)
    return train, evaluation


def build_model(model_args, label_names: list[str]):
    """A new model (pretrained backbone loaded explicitly) or a saved one adapted to the dataset's labels, with the
    requested backbone freezing; returns (model, backbone weights source, `LabelTransfer` or None)."""
    id2label = dict(enumerate(label_names))
    label2id = {name: index for index, name in id2label.items()}
    loss = loss_settings(model_args.loss, model_args.gamma_neg, model_args.gamma_pos, model_args.clip, model_args.focal_gamma)
    transfer = None
    if model_args.model_name_or_path:
        model, transfer = load_with_labels(model_args.model_name_or_path, label_names, model_args.label_mapping, loss)
        transfer.log()
        source = f"fine-tuned from {model_args.model_name_or_path}"
    else:
        config = Query2LabelConfig(
            **{name: getattr(model_args, name) for name in CONFIG_FIELDS_OF_MODEL_ARGUMENTS},
            backbone_kwargs=json.loads(model_args.backbone_kwargs) if model_args.backbone_kwargs else None,
            use_input_projection=True,
            attention_dropout=model_args.dropout,
            id2label=id2label,
            label2id=label2id,
            **loss,
        )
        model = model_class_for(config)(config)
        source = load_pretrained_backbone(model, model_args.backbone_weights)
    if model_args.freeze_backbone and model_args.frozen_backbone_stages is not None:
        raise ValueError("Pass --freeze_backbone (the whole backbone) or --frozen_backbone_stages N, not both.")
    if model_args.freeze_backbone or model_args.frozen_backbone_stages is not None:
        frozen = freeze_backbone(model, None if model_args.freeze_backbone else model_args.frozen_backbone_stages)
        logger.info("Froze %d backbone parameter tensors (no optimizer state, no BatchNorm updates).", len(frozen))
    return model, source, transfer


def main(argv=None, defaults: dict | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv, defaults)
    _, report = run(model_args, data_args, training_args)
    return report


def run(model_args, data_args, training_args):
    """Train, pick the better of regular and EMA weights, evaluate, save (on the main process).

    Returns the trainer (holding the final model) and the evaluation report."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, handlers=[logging.StreamHandler(sys.stdout)])
    transformers.utils.logging.set_verbosity_warning()
    if training_args.log_level != "passive":  # --log_level sets transformers' verbosity and ours
        level = training_args.get_process_log_level()
        transformers.utils.logging.set_verbosity(level)
        logging.getLogger("modeling_q2l").setLevel(level)
    push_to_hub = check_push_settings(training_args)
    threads = configure_cpu_threads(data_args.cpu_threads, training_args)
    set_seed(training_args.seed)
    started = time.time()

    if data_args.streaming:
        train_raw, eval_raw = load_streaming_splits(data_args, training_args)
    else:
        train_raw, eval_raw = load_splits(data_args)
    label_column = resolve_label_column(eval_raw if data_args.streaming else train_raw, data_args.label_column_name)
    encoder = detect_label_format(  # a stream is read once, in training: its labels are known from the evaluation rows
        eval_raw if data_args.streaming else train_raw,
        label_column,
        parse_label_names(data_args.class_names),
        data_args.label_format,
        data_args.allow_empty_labels,
    )
    prepare = dict(
        encoder=encoder,
        image_column=data_args.image_column_name,
        label_column=label_column,
        skip_bad_samples=data_args.skip_bad_samples,
        verify_images=data_args.verify_images,
        num_proc=data_args.preprocessing_num_workers,
    )
    train_split = None if data_args.streaming else prepare_split(train_raw, split_name="train", **prepare)
    eval_split = prepare_split(eval_raw, split_name="evaluation", **prepare)
    logger.info("Labels (%s format): %s", encoder.label_format, encoder.names)

    model, backbone_source, label_transfer = build_model(model_args, encoder.names)
    processor = image_processor_for_backbone(model.config)
    augmentation = training_augmentation(
        model.config.image_size, data_args.randaugment, data_args.randaugment_magnitude, data_args.horizontal_flip
    )
    augmented = dict(
        augmentation=augmentation, cutout_probability=data_args.cutout_probability, augmentation_seed=training_args.seed
    )
    if data_args.streaming:
        train_dataset = StreamingMultiLabelDataset(
            train_raw, encoder, data_args.image_column_name, label_column, processor,
            skip_bad_samples=data_args.skip_bad_samples, **augmented,
        )  # fmt: skip
    else:
        train_dataset = MultiLabelImageDataset(train_split, data_args.image_column_name, processor, **augmented)
    eval_dataset = MultiLabelImageDataset(eval_split, data_args.image_column_name, processor)

    trainer = Query2LabelTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_multilabel,
        processing_class=processor,
        ema_decay=model_args.ema_decay or None,
        exempt_norm_and_bias_from_decay=model_args.exempt_norm_and_bias_from_decay,
        backbone_learning_rate=model_args.backbone_learning_rate,
        adaptive_asymmetry=(model_args.target_probability_gap, model_args.asymmetry_step_size)
        if model_args.adaptive_asymmetry
        else None,
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
    prediction, weights = trainer.predict_with_better_weights(eval_dataset)
    logger.info("Saving the %s weights (the better of regular and EMA on the evaluation split).", weights)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    area_thresholds = area_thresholds_for(data_args.dataset_name, data_args.area_thresholds)
    scores = sigmoid_scores(logits)
    # Per-label thresholds for the pipeline, fitted on the evaluation split; the report gives both sets of metrics.
    final_model = trainer.accelerator.unwrap_model(trainer.model)
    final_model.config.label_thresholds = fit_label_thresholds(scores, labels_in_model_order(eval_split, encoder, encoder.names))
    report = report_for_split(
        scores, eval_split, encoder, encoder.names, area_thresholds, label_thresholds=final_model.config.label_thresholds
    )
    report.update(
        {
            "weights": weights,
            "backbone_weights": backbone_source,
            "dataset": data_args.dataset_name or data_args.coco_eval_annotations or data_args.coco_annotations,
            "eval_split": data_args.eval_split_name,
            "skipped_samples": {
                "train": dict(train_dataset.skipped) if data_args.streaming else train_split.skipped,
                "evaluation": eval_split.skipped,
            },
            "streamed": data_args.streaming,
            "train_runtime_s": round(train_result.metrics.get("train_runtime", 0.0), 1),
            "total_runtime_s": round(time.time() - started, 1),
            "torch_threads": threads,
            "world_size": training_args.world_size,
            "distributed_type": trainer.accelerator.distributed_type.value,
            "final_gamma_neg": final_model.criterion.gamma_neg,
            "label_transfer": label_transfer.as_dict() if label_transfer is not None else None,
            "trainable_parameters": sum(p.numel() for p in final_model.parameters() if p.requires_grad),
        }
    )
    report["extra_splits"] = evaluate_extra_splits(trainer, data_args, prepare, processor, encoder, area_thresholds)
    if trainer.is_world_process_zero():
        report["figures"] = save_figures(
            Path(training_args.output_dir), final_model, processor, scores, eval_split, encoder, data_args.image_column_name, report
        )
        save_outputs(trainer, processor, report, model_args, data_args, training_args)
        print(report_to_markdown(report))
        print(f"\nSaved to {training_args.output_dir} ({report['total_runtime_s']} s in all)")
        if push_to_hub:
            report["hub_url"] = push_outputs(training_args, report)
            print(f"Pushed to {report['hub_url']}")
    return trainer, report


EXTRA_SPLIT_KEYS = ("num_images", "mAP", "mAP_voc", "CF1", "OF1", "mAP_small", "mAP_medium", "mAP_large")


def evaluate_extra_splits(trainer, data_args, prepare: dict, processor, encoder, area_thresholds) -> dict:
    """The final model on each split of `--extra_eval_split_names` (e.g. the embedded set's `out_of_layout` test
    split): the summary metrics, also at the fitted thresholds. A split the dataset lacks is skipped with a warning."""
    names = data_args.extra_eval_split_names or []
    if not names or data_args.streaming or data_args.coco_annotations:
        return {}
    raw = load_raw_datasets(data_args.dataset_name, data_args.dataset_config_name)
    model = trainer.accelerator.unwrap_model(trainer.model)
    results = {}
    for name in names:
        if name not in raw:
            logger.warning("No split %r in %s: not evaluated (splits: %s).", name, data_args.dataset_name, list(raw))
            continue
        dataset = raw[name]
        if data_args.max_eval_samples is not None:
            dataset = dataset.select(range(min(data_args.max_eval_samples, len(dataset))))
        split = prepare_split(dataset, split_name=name, **prepare)
        prediction = trainer.predict(MultiLabelImageDataset(split, data_args.image_column_name, processor))
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        report = report_for_split(
            sigmoid_scores(logits), split, encoder, encoder.names, area_thresholds, label_thresholds=model.config.label_thresholds
        )
        results[name] = {key: report[key] for key in EXTRA_SPLIT_KEYS if key in report}
        results[name]["at_label_thresholds"] = {key: report["at_label_thresholds"][key] for key in ("CF1", "OF1")}
        logger.info("%s split: mAP %.2f on %d images.", name, 100 * report["mAP"], report["num_images"])
    return results


def checkpoint_to_resume(training_args) -> str | None:
    """`--resume_from_checkpoint` if given; else the last checkpoint in the output folder, as transformers' example
    scripts do, unless `--overwrite_output_dir` asks to start over (its checkpoints are then deleted)."""
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    output_dir = Path(training_args.output_dir)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        return None
    if getattr(training_args, "overwrite_output_dir", False):
        logger.info("--overwrite_output_dir: deleting the checkpoints in %s and starting over.", output_dir)
        if training_args.should_save:
            for folder in output_dir.glob("checkpoint-*"):
                shutil.rmtree(folder)
        return None
    logger.info("Resuming from %s, the last checkpoint in %s (--overwrite_output_dir true starts over).", last, output_dir)
    return last


def check_push_settings(training_args) -> bool:
    """With `--push_to_hub`, check the repository id and the token before training, and take the push over from the
    Trainer: it would push every checkpoint, without the image processor, card or results; we push the finished
    folder once, after the final evaluation."""
    if not training_args.push_to_hub:
        return False
    from ..hub.publish import hub_token

    if not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME: the Hub repository to create or update.")
    hub_token(training_args.hub_token)
    training_args.push_to_hub = False
    return True


def push_outputs(training_args, report: dict) -> str:
    """Check that the saved folder loads through remote code alone, then upload it in one commit."""
    from ..hub.publish import push_folder
    from ..hub.remote_code_check import check_folder_without_package

    check_folder_without_package(training_args.output_dir)
    return push_folder(
        Path(training_args.output_dir),
        training_args.hub_model_id,
        private=bool(training_args.hub_private_repo),
        revision=training_args.hub_revision,
        commit_message=f"Query2Label trained with scripts/train.py (mAP {100 * report['mAP']:.2f} on {report['eval_split']})",
        token=training_args.hub_token,
    )


ATTENTION_FIGURE_IMAGES = 2  # evaluation images whose attention maps the card shows


def save_figures(output_dir: Path, model, processor, scores, eval_split, encoder, image_column: str, report) -> dict:
    """The evaluation plots of the final model and the attention figures of the first evaluation images, in
    `output_dir/figures` (part of the Hub folder, shown in the card); returns {name: path relative to the folder}."""
    from ..data.loading import open_image
    from ..evaluation.attention_figures import explain_image, save_attention_figure
    from ..evaluation.plots import write_evaluation_plots

    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the model and its card are saved all the same
        logger.warning("No figures in %s/figures: matplotlib is not installed (pip install matplotlib).", output_dir)
        return {}
    figures_dir = output_dir / "figures"
    labels = labels_in_model_order(eval_split, encoder, encoder.names)
    paths = write_evaluation_plots(figures_dir, scores, labels, encoder.names, report, model.config.label_thresholds)
    if model.config.classifier_head == "query2label":
        model.eval()
        for index in range(min(ATTENTION_FIGURE_IMAGES, len(eval_split.dataset))):
            explained = explain_image(model, processor, open_image(eval_split.dataset[index][image_column]))
            paths[f"attention_{index}"] = str(figures_dir / f"attention_{index}.png")
            save_attention_figure(explained, paths[f"attention_{index}"])
    return {name: str(Path(path).relative_to(output_dir)) for name, path in paths.items()}


def save_outputs(trainer, processor, report, model_args, data_args, training_args) -> None:
    """Weights, config, processor, code files, `eval_results.json` and a model card with the measured results."""
    from ..hub.model_card import training_model_card

    output_dir = Path(training_args.output_dir)
    trainer.save_model(str(output_dir))
    processor.save_pretrained(output_dir)
    (output_dir / "eval_results.json").write_text(json.dumps(report, indent=2))
    card = training_model_card(trainer.model.config, report, model_args, data_args, training_args)
    card.save(output_dir / "README.md")
