"""The main job: train Query2Label on a multi-label dataset, evaluate it, save a Hub-ready folder.

`modeling_q2l.cli.commands.train` parses the arguments (`scripts/train.py` adds its defaults) and calls `run`.
"""

import json
import logging
import time
from pathlib import Path

from transformers import set_seed

from ..data.splits import DatasetSpec, SplitPreparer, dataset_description, load_extra_splits, load_streaming_splits, load_training_splits
from ..data.transforms import MultiLabelImageDataset, collate_multilabel, processor_at_size
from ..evaluation.final_report import FinalReportRequest, final_report
from ..evaluation.metrics import sigmoid_scores
from ..evaluation.report import RunFacts, area_thresholds_for, report_to_markdown
from ..hub.model_card import training_model_card
from ..zoo.backbone_weights import image_processor_for_backbone
from .data_setup import training_datasets
from .interruption import FolderUpdate, SigtermCheckpoint
from .localization import check_localization_split, localization_on
from .model_setup import build_model
from .options import ModelOptions, TrainingOptions
from .push import push_outputs, take_over_push
from ..zoo.recipes import RecipeUse
from .resume import checkpoint_to_resume
from .runtime import configure_cpu_threads, configure_logging
from .summary import summarise_run
from .trainer import Query2LabelTrainer

logger = logging.getLogger(__name__)

ATTENTION_FIGURE_IMAGES = 2  # evaluation images whose attention maps the card shows


def run(model_args: ModelOptions, data_args: DatasetSpec, training_args: TrainingOptions):
    """Train, keep the better of regular and EMA weights, report, save (on the main process), push if asked.
    Returns the trainer (holding the final model) and the report."""
    configure_logging(training_args)
    recipe = RecipeUse.of_run(model_args.recipe, model_args, data_args, training_args)
    logger.info("Recipe %s.", recipe)
    check_localization_split(data_args)
    push_to_hub = take_over_push(training_args)
    threads = configure_cpu_threads(training_args.cpu_threads, training_args)
    set_seed(training_args.seed)
    started = time.time()

    # data: a stream's labels are known from its evaluation rows, which are held in memory
    streaming = data_args.streaming
    train_raw, eval_raw = load_streaming_splits(data_args, training_args.max_steps) if streaming else load_training_splits(data_args)
    preparer = SplitPreparer.for_dataset(data_args, eval_raw if streaming else train_raw)
    train_split = None if streaming else preparer.prepare(train_raw, split_name="train")
    eval_split = preparer.prepare(eval_raw, split_name="evaluation")
    extra_splits = load_extra_splits(data_args)  # before training: a split the dataset lacks stops the run now
    logger.info("Labels (%s format): %s", preparer.encoder.label_format, preparer.encoder.names)

    starting = build_model(model_args, preparer.encoder.names)
    processor = image_processor_for_backbone(starting.model.config)  # at the training resolution
    inference_processor = processor_at_size(processor, model_args.inference_image_size)
    train_dataset, eval_dataset = training_datasets(
        train_raw if streaming else train_split, eval_split, preparer, processor, starting.model.config.image_size,
        training_args, streaming, inference_processor,
    )  # fmt: skip

    trainer = Query2LabelTrainer(
        model=starting.model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_multilabel,
        processing_class=processor,
        ema_decay=model_args.ema_decay or None,
        exempt_norm_and_bias_from_decay=model_args.exempt_norm_and_bias_from_decay,
        backbone_learning_rate=model_args.backbone_learning_rate,
        adaptive_asymmetry=(model_args.target_probability_gap, model_args.asymmetry_step_size) if model_args.adaptive_asymmetry else None,
    )
    trainer.add_callback(sigterm := SigtermCheckpoint())
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
    if sigterm.stopped_at is not None:
        logger.warning("Stopped by SIGTERM at step %d, saved as a checkpoint in %s: run the same command to resume.", sigterm.stopped_at, training_args.output_dir)
        raise SystemExit(143)  # 128 + SIGTERM, as an unhandled SIGTERM would end
    prediction, weights = trainer.predict_with_better_weights(eval_dataset)
    logger.info("Saving the %s weights (the better of regular and EMA on the evaluation split).", weights)
    final_model = trainer.accelerator.unwrap_model(trainer.model)
    processor, final_model.config.image_size = inference_processor, inference_processor.size.height  # from here on

    def predict(split):
        logits = trainer.predict(MultiLabelImageDataset(split, preparer.image_column, processor)).predictions
        return sigmoid_scores(logits[0] if isinstance(logits, tuple) else logits)

    output_dir = Path(training_args.output_dir)
    update = FolderUpdate(output_dir) if trainer.is_world_process_zero() else None  # the new folder, swapped in at once
    request = FinalReportRequest(
        area_thresholds=area_thresholds_for(data_args.dataset_name, data_args.area_thresholds),
        fit_thresholds=True,  # per-label thresholds for the pipeline, fitted on the evaluation split
        extra_splits=extra_splits,
        figures_dir=update.staging / "figures" if update else None,
        attention_figures=ATTENTION_FIGURE_IMAGES,
    )
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    report, _ = final_report(final_model, processor, eval_split, preparer, predict, request, scores=sigmoid_scores(logits))
    report.localization = localization_on(final_model, processor, preparer, request.extra_splits, data_args.localization_split_name)
    report.figures = {name: str(Path(path).relative_to(update.staging)) for name, path in report.figures.items()} if update else {}
    report.dataset, report.eval_split = dataset_description(data_args), data_args.eval_split_name
    report.run = RunFacts(
        weights=weights,
        backbone_weights=str(starting.backbone_weights),
        train_runtime_s=round(train_result.metrics.get("train_runtime", 0.0), 1),
        total_runtime_s=round(time.time() - started, 1),
        torch_threads=threads,
        world_size=training_args.world_size,
        distributed_type=trainer.accelerator.distributed_type.value,
        streamed=streaming,
        final_gamma_neg=final_model.criterion.gamma_neg,
        label_transfer=starting.label_transfer,
        trainable_parameters=sum(p.numel() for p in final_model.parameters() if p.requires_grad),
        skipped_training_samples=dict(train_dataset.skipped) if streaming else train_split.skipped,
    )
    if update:
        trainer.save_model(str(update.staging))
        processor.save_pretrained(update.staging)
        (update.staging / "eval_results.json").write_text(json.dumps(report.to_json(), indent=2))
        summary = summarise_run(final_model, model_args, data_args, training_args, starting, weights, recipe, trainer.processing_class.size.height)
        training_model_card(final_model.config, report, summary).save(update.staging / "README.md")
        update.commit()
        print(report_to_markdown(report))
        print(f"\nSaved to {output_dir} ({report.run.total_runtime_s} s in all)")
        if push_to_hub:
            report.run.hub_url = push_outputs(training_args, report)
            print(f"Pushed to {report.run.hub_url}")
    return trainer, report
