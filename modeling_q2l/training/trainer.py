"""Training Query2Label with the transformers Trainer, through its public API only.

- The loss is the model's own (`forward(labels=..., num_items_in_batch=...)`): the Trainer counts the label entries
  of the whole accumulated batch and the model divides by the images they stand for, so gradient accumulation gives
  the gradients of one big batch (the model declares `accepts_loss_kwargs`).
- `create_optimizer` / `create_scheduler` (documented hooks): the optimizer `--optim` names (the recipe: torch's
  AdamW) over parameter groups with weight decay on every parameter, or sparing norms and biases, and an optional
  separate backbone rate; with `lr_scheduler_type="one_cycle"` the recipe's one-cycle schedule stepped every
  iteration, any other name gives transformers' scheduler with its warmup.
- EMA and adaptive asymmetry are callbacks with their own state (`callbacks.py`); `train` hands them the checkpoint it
  resumes from.
"""

import contextlib
import functools
import logging
import os
import warnings

import torch
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from ..evaluation.metrics import MULTILABEL_METRICS_MODULE, sigmoid_scores
from ..zoo.recipes import ONE_CYCLE
from .callbacks import AdaptiveAsymmetryCallback, AugmentationEpochCallback, EmaCallback

logger = logging.getLogger(__name__)

DEFAULT_ONE_CYCLE_WARMUP = 0.2


@functools.cache
def multilabel_metric():
    """Our metrics as an `evaluate` module, loaded once (in memory: every process may compute at once)."""
    import evaluate

    return evaluate.load(MULTILABEL_METRICS_MODULE, keep_in_memory=True)


def compute_multilabel_metrics(eval_prediction) -> dict:
    """`compute_metrics` for the Trainer: the `evaluate` module of `metrics.multilabel_metrics` on sigmoid scores."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    results = multilabel_metric().compute(predictions=sigmoid_scores(logits), references=labels)
    results.pop("AP")
    return results


def uses_channels_last(model, args, fsdp: bool = False) -> bool:
    """Whether training runs in channels-last (NHWC) layout: on CPU, for convolutional backbones (oneDNN's
    convolutions and their gradients are about 1.6x faster there; the numbers are the same up to float32 rounding),
    unless `--channels_last false`. FSDP, which flattens the weights into one buffer, keeps the default layout."""
    return bool(
        getattr(args, "channels_last", False)
        and args.device.type == "cpu"
        and not fsdp
        and getattr(model.get_backbone(), "channels_last_input", False)
    )


class ResumableOneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """The official recipe's one-cycle schedule, which keeps its own length when a checkpoint's state is loaded.

    A checkpoint's schedule knows the length of the run that saved it. Resuming with another length (a larger
    `--max_steps` or `--num_train_epochs`, a common way of extending training) would restore the old length, and torch
    would stop at its end ("Tried to step N times"). Here the schedule stays the one built for this run's length, moved
    to the step the checkpoint reached, said in one log line; a length the checkpoint has already passed stops with one
    line saying what to do."""

    def load_state_dict(self, state_dict: dict) -> None:
        saved_length, done = state_dict["total_steps"], state_dict["last_epoch"]
        if saved_length == self.total_steps:
            return super().load_state_dict(state_dict)
        if done >= self.total_steps:
            raise ValueError(
                f"The checkpoint this run resumes from has already trained {done} steps, and this run asks for "
                f"{self.total_steps} in all: ask for more steps (--max_steps or --num_train_epochs) to continue it, or "
                "pass --overwrite_output_dir true to start over."
            )
        self.last_epoch = done - 1
        with warnings.catch_warnings():  # the optimizer has not stepped in this process yet: no step is skipped
            warnings.simplefilter("ignore", UserWarning)
            self.step()  # the rate and momentum of step `done` of this run's schedule
        logger.info(
            "Resuming at step %d: the checkpoint's one-cycle schedule was built for %d steps, this run asks for %d; "
            "the schedule is rebuilt for %d steps and continues from step %d.", done, saved_length, self.total_steps,
            self.total_steps, done,
        )  # fmt: skip


class Query2LabelTrainer(Trainer):
    """A Trainer for multi-label image classification with Query2Label.

    Args (besides the Trainer's):
        ema_decay: keep an EMA of the weights with this decay; it is saved in checkpoints, evaluated next to the
            regular weights (`eval_ema_*` metrics) and swapped in at the end when better (`predict_with_better_weights`).
        exempt_norm_and_bias_from_decay: no weight decay on norms and biases (the official recipe decays all).
        backbone_learning_rate: a separate peak learning rate for the backbone.
        adaptive_asymmetry: `(target_gap, step_size)` to move gamma_neg toward a probability gap.

    The config's `frozen_backbone_modules` are frozen before the optimizer is built (`from_pretrained` hands back
    trainable tensors); frozen parameters get no optimizer state.
    """

    def __init__(
        self,
        *args,
        ema_decay: float | None = None,
        exempt_norm_and_bias_from_decay: bool = False,
        backbone_learning_rate: float | None = None,
        adaptive_asymmetry: tuple[float, float] | None = None,
        **kwargs,
    ):
        kwargs.setdefault("compute_metrics", compute_multilabel_metrics)
        super().__init__(*args, **kwargs)
        self.accelerator.unwrap_model(self.model).apply_backbone_freezing()
        self.channels_last = uses_channels_last(self.accelerator.unwrap_model(self.model), self.args, self.is_fsdp_enabled)
        if self.channels_last:  # before the EMA copies the model, so that its weights share the layout
            self.model.to(memory_format=torch.channels_last)
        if hasattr(self.train_dataset, "augmentation_seed"):
            if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
                raise ValueError(
                    "--dataloader_persistent_workers keeps each worker's copy of the training set from the first epoch, "
                    "so every epoch would repeat the first epoch's augmentations: leave it off (workers restart each epoch)."
                )
            self.add_callback(AugmentationEpochCallback(self.train_dataset))
        self.exempt_norm_and_bias_from_decay = exempt_norm_and_bias_from_decay
        self.backbone_learning_rate = backbone_learning_rate
        self.ema = EmaCallback(self.model, ema_decay) if ema_decay else None
        self.adaptive_asymmetry = None
        if adaptive_asymmetry is not None:
            gamma_neg = self.accelerator.unwrap_model(self.model).criterion.gamma_neg
            self.adaptive_asymmetry = AdaptiveAsymmetryCallback(gamma_neg, *adaptive_asymmetry)
        for callback in (self.ema, self.adaptive_asymmetry):
            if callback is not None:
                self.add_callback(callback)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No checkpoint to resume from in {self.args.output_dir}.")
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.OneCycleLR):
            self.lr_scheduler = None  # a new run gets a schedule for its own number of steps
        if resume_from_checkpoint and not os.path.isdir(resume_from_checkpoint):
            raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint}: no such checkpoint folder.")
        if resume_from_checkpoint:
            for callback in (self.ema, self.adaptive_asymmetry):
                if callback is not None:
                    callback.load_checkpoint(resume_from_checkpoint)
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        self._broadcast_buffers_from_main_process()
        return output

    def _broadcast_buffers_from_main_process(self):
        """Give every process the main process's buffers (BatchNorm statistics, EMA weights).

        DDP broadcasts buffers before each forward, so after the last step each process still holds the statistics
        of its own last batch; this makes all processes end with the weights the main process saves."""
        if self.args.world_size <= 1 or not torch.distributed.is_initialized():
            return
        modules = [self.accelerator.unwrap_model(self.model)] + ([self.ema.module] if self.ema is not None else [])
        for module in modules:
            for buffer in module.buffers():
                torch.distributed.broadcast(buffer.data, src=0)
        if self.ema is not None:
            for parameter in self.ema.module.parameters():
                torch.distributed.broadcast(parameter.data, src=0)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The model computes the loss; adaptive asymmetry also needs the batch's probabilities.
        if self.channels_last and inputs["pixel_values"].dim() == 4:
            inputs = {**inputs, "pixel_values": inputs["pixel_values"].contiguous(memory_format=torch.channels_last)}
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.adaptive_asymmetry is not None and model.training:
            reduce = lambda tensor: self.accelerator.reduce(tensor, reduction="sum")  # noqa: E731
            self.adaptive_asymmetry.observe(outputs.logits, inputs["labels"], reduce)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs):
        if self.adaptive_asymmetry is not None and "loss" in logs:
            logs.update(self.adaptive_asymmetry.pop_logs())
        super().log(logs, *args, **kwargs)

    # -- optimiser and schedule -------------------------------------------------------------------------------------

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        model = model or self.model
        groups = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue  # frozen: no optimizer state
            skip_decay = self.exempt_norm_and_bias_from_decay and (parameter.ndim <= 1 or name.endswith(".bias"))
            is_backbone = self.backbone_learning_rate is not None and ".backbone." in f".{name}"
            groups.setdefault((skip_decay, is_backbone), []).append(parameter)
        param_groups = [
            {
                "params": params,
                "weight_decay": 0.0 if skip_decay else self.args.weight_decay,
                "lr": self.backbone_learning_rate if is_backbone else self.args.learning_rate,
            }
            for (skip_decay, is_backbone), params in groups.items()
        ]
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if str(self.args.lr_scheduler_type) != ONE_CYCLE:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            self.lr_scheduler = self._one_cycle(optimizer, num_training_steps, [group["lr"] for group in optimizer.param_groups])
        return self.lr_scheduler

    def _one_cycle(self, optimizer, total_steps: int, peak_rates: list[float]):
        warmup = self.args.get_warmup_steps(total_steps) / total_steps or DEFAULT_ONE_CYCLE_WARMUP
        return ResumableOneCycleLR(
            optimizer,
            max_lr=peak_rates,
            total_steps=total_steps,
            pct_start=min(warmup, 0.99),
            # AdamW's beta1 cycles against the rate as in the recipe; optimizers without momentum keep theirs
            cycle_momentum=all("betas" in group or "momentum" in group for group in optimizer.param_groups),
        )

    # -- EMA --------------------------------------------------------------------------------------------------------

    def evaluation_loop(self, *args, **kwargs):
        # evaluation and prediction run as the pipeline will (the fast CPU path); training never sees it
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "optimize_for_inference"):
            model.optimize_for_inference(build_now=False)
        return super().evaluation_loop(*args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.ema is not None and metric_key_prefix == "eval":
            with self.ema_weights():
                metrics.update(super().evaluate(eval_dataset, ignore_keys, "eval_ema"))
        return metrics

    @contextlib.contextmanager
    def ema_weights(self):
        """The model holds the EMA weights inside the block, its own weights again after."""
        model = self.accelerator.unwrap_model(self.model)
        saved = {key: value.detach().clone() for key, value in model.state_dict().items()}
        model.load_state_dict(self.ema.module.state_dict())
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    def predict_with_better_weights(self, dataset, metric: str = "mAP"):
        """Predict `dataset` with the regular and (if kept) the EMA weights; leave the better in the model.

        Returns the better run's `PredictionOutput` and `"ema"` or `"regular"`: one pass per set of weights."""
        prediction = self.predict(dataset)
        if self.ema is None:
            return prediction, "regular"
        with self.ema_weights():
            ema_prediction = self.predict(dataset)
        if ema_prediction.metrics[f"test_{metric}"] > prediction.metrics[f"test_{metric}"]:
            self.accelerator.unwrap_model(self.model).load_state_dict(self.ema.module.state_dict())
            return ema_prediction, "ema"
        return prediction, "regular"
