"""Training Query2Label with the transformers Trainer: the ASL under gradient accumulation, the official optimiser
and one-cycle schedule, an EMA of the weights that is evaluated and kept when better, and adaptive asymmetry."""

import contextlib
import json
import logging
import math
import os
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from .metrics import multilabel_metrics, sigmoid_scores
from .modeling_query2label import asymmetric_loss_from_config

logger = logging.getLogger(__name__)

EMA_WEIGHTS_NAME = "ema_model.safetensors"
TRAINING_STATE_NAME = "q2l_training_state.json"


def loss_settings(loss: str, gamma_neg: float, gamma_pos: float, clip: float, focal_gamma: float = 2.0) -> dict:
    """Config values that make the model's loss the ASL, focal loss or plain binary cross-entropy."""
    if loss == "asl":
        return {"asl_gamma_neg": gamma_neg, "asl_gamma_pos": gamma_pos, "asl_clip": clip}
    if loss == "focal":
        return {"asl_gamma_neg": focal_gamma, "asl_gamma_pos": focal_gamma, "asl_clip": 0.0}
    if loss == "bce":
        return {"asl_gamma_neg": 0.0, "asl_gamma_pos": 0.0, "asl_clip": 0.0}
    raise ValueError(f"--loss must be asl, focal or bce, got {loss!r}.")


class ProbabilityGap:
    """Running mean of (mean probability of positive labels - mean probability of negative labels)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total, self.count, self.last = 0.0, 0, float("nan")

    def update(self, gap: float):
        self.last = gap
        self.total += gap
        self.count += 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


class AdaptiveAsymmetryCallback(TrainerCallback):
    """Adaptive asymmetry (ASL paper, section 2.7): after every step,
    gamma_neg <- max(0, gamma_neg + step_size * (gap - target_gap)), where gap is the batch's mean positive
    probability minus its mean negative probability. The trainer logs `gamma_neg` and the mean `probability_gap`
    since the previous log."""

    def __init__(self, gap: ProbabilityGap, target_gap: float, step_size: float):
        self.gap, self.target_gap, self.step_size = gap, target_gap, step_size

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or math.isnan(self.gap.last):
            return
        config = getattr(model, "module", model).config
        config.asl_gamma_neg = max(0.0, config.asl_gamma_neg + self.step_size * (self.gap.last - self.target_gap))


class EmaCallback(TrainerCallback):
    """Updates the EMA of the weights after every optimiser step."""

    def __init__(self, ema):
        self.ema = ema

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(getattr(model, "module", model), step=state.global_step)


class AugmentationEpochCallback(TrainerCallback):
    """Tells a `MultiLabelImageDataset` which epoch starts, so its per-sample augmentation seeds change each epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.epoch = int(state.epoch + 1e-6)  # a resumed run starts mid-epoch, e.g. at 0.8


def compute_multilabel_metrics(eval_prediction) -> dict:
    """`compute_metrics` for the Trainer: every metric of `metrics.multilabel_metrics` on sigmoid scores."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    scores = sigmoid_scores(logits)
    results = multilabel_metrics(scores, labels)
    results.pop("AP")
    return results


class Query2LabelTrainer(Trainer):
    """A Trainer for multi-label image classification with Query2Label.

    - `compute_loss`: the config's ASL summed over labels and divided by the number of images in the whole
      accumulated batch, so gradient accumulation gives the same gradients as one big batch (even when micro-batches
      differ in size).
    - `create_optimizer`: AdamW with weight decay on every parameter (the official recipe) or, with
      `exempt_norm_and_bias_from_decay`, without decay on norms and biases; an optional separate backbone rate.
    - `create_scheduler`: one-cycle (`pct_start` 0.2 by default), stepped every iteration.
    - EMA: with `ema_decay`, an exponential moving average of the weights (timm's `ModelEmaV3`, with warm-up so short
      runs work) is updated each step, saved in checkpoints, evaluated next to the regular weights
      (`eval_ema_*` metrics) and swapped in at the end when better (`predict_with_better_weights`).
    """

    loss_is_scaled_for_ga = True  # compute_loss divides by the images of the whole accumulated batch

    def __init__(
        self,
        *args,
        ema_decay: float | None = None,
        exempt_norm_and_bias_from_decay: bool = False,
        backbone_learning_rate: float | None = None,
        one_cycle_pct_start: float = 0.2,
        adaptive_asymmetry: tuple[float, float] | None = None,
        **kwargs,
    ):
        kwargs.setdefault("compute_metrics", compute_multilabel_metrics)
        super().__init__(*args, **kwargs)
        if hasattr(self.train_dataset, "augmentation_seed"):
            self.add_callback(AugmentationEpochCallback(self.train_dataset))
        self.exempt_norm_and_bias_from_decay = exempt_norm_and_bias_from_decay
        self.backbone_learning_rate = backbone_learning_rate
        self.one_cycle_pct_start = one_cycle_pct_start
        self.ema = None
        if ema_decay:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=ema_decay, use_warmup=True)
            self.ema.requires_grad_(False)
            self.add_callback(EmaCallback(self.ema))
        self.probability_gap = None
        if adaptive_asymmetry is not None:
            self.probability_gap = ProbabilityGap()
            self.add_callback(AdaptiveAsymmetryCallback(self.probability_gap, *adaptive_asymmetry))

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        self._broadcast_buffers_from_main_process()
        return output

    def _broadcast_buffers_from_main_process(self):
        """Give every process the main process's buffers (BatchNorm statistics, EMA buffers).

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

    def log(self, logs: dict, *args, **kwargs):
        if self.probability_gap is not None and "loss" in logs:
            logs["gamma_neg"] = round(self.accelerator.unwrap_model(self.model).config.asl_gamma_neg, 4)
            logs["probability_gap"] = round(self.probability_gap.mean, 4)
            self.probability_gap.reset()
        super().log(logs, *args, **kwargs)

    # -- loss -------------------------------------------------------------------------------------------------------

    def _get_num_items_in_batch(self, batch_samples, device):
        # The loss is normalised per image: count the images of the whole accumulated batch.
        return sum(len(batch["labels"]) for batch in batch_samples)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(pixel_values=inputs["pixel_values"])
        config = getattr(model, "module", model).config
        loss = asymmetric_loss_from_config(config)(outputs.logits, labels)
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else len(labels))
        if self.probability_gap is not None and model.training:
            self.probability_gap.update(self._probability_gap(outputs.logits.detach(), labels))
        return (loss, outputs) if return_outputs else loss

    def _probability_gap(self, logits, labels) -> float:
        probabilities = torch.sigmoid(logits.float())
        positive, negative = (labels == 1).float(), (labels == 0).float()
        sums = torch.stack([(probabilities * positive).sum(), positive.sum(), (probabilities * negative).sum(), negative.sum()])
        sums = self.accelerator.reduce(sums, reduction="sum")  # one gamma_neg for every process
        return float(sums[0] / sums[1].clamp(min=1) - sums[2] / sums[3].clamp(min=1))

    # -- optimiser and schedule -------------------------------------------------------------------------------------

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        model = model or self.model
        no_decay = set()
        if self.exempt_norm_and_bias_from_decay:
            no_decay = {name for name, p in model.named_parameters() if p.ndim <= 1 or name.endswith(".bias")}
        groups = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            is_backbone = ".backbone." in f".{name}" and self.backbone_learning_rate is not None
            key = (name in no_decay, is_backbone)
            groups.setdefault(key, []).append(parameter)
        param_groups = [
            {
                "params": params,
                "weight_decay": 0.0 if skip_decay else self.args.weight_decay,
                "lr": self.backbone_learning_rate if is_backbone else self.args.learning_rate,
            }
            for (skip_decay, is_backbone), params in groups.items()
        ]
        self.optimizer = torch.optim.AdamW(
            param_groups,
            lr=self.args.learning_rate,
            betas=(self.args.adam_beta1, self.args.adam_beta2),
            eps=self.args.adam_epsilon,
        )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            self.lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=num_training_steps,
                pct_start=self.one_cycle_pct_start,
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # -- EMA --------------------------------------------------------------------------------------------------------

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

    # -- checkpoints: EMA weights and the adapted gamma_neg travel with them ------------------------------------

    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)
        if not self.args.should_save:
            return
        if self.ema is not None:
            from safetensors.torch import save_file

            state = {k: v.contiguous() for k, v in self.ema.module.state_dict().items()}
            save_file(state, os.path.join(output_dir, EMA_WEIGHTS_NAME))
        config = self.accelerator.unwrap_model(self.model).config
        Path(output_dir, TRAINING_STATE_NAME).write_text(json.dumps({"asl_gamma_neg": config.asl_gamma_neg}))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        ema_file = os.path.join(checkpoint, EMA_WEIGHTS_NAME)
        if self.ema is not None:
            if not os.path.isfile(ema_file):
                raise FileNotFoundError(f"{checkpoint} has no EMA weights ({EMA_WEIGHTS_NAME}); resume with the same --ema_decay setting as the run that wrote it.")
            from safetensors.torch import load_file

            self.ema.module.load_state_dict(load_file(ema_file))
        state_file = os.path.join(checkpoint, TRAINING_STATE_NAME)
        if os.path.isfile(state_file):
            state = json.loads(Path(state_file).read_text())
            self.accelerator.unwrap_model(self.model).config.asl_gamma_neg = state["asl_gamma_neg"]
