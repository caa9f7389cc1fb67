"""Trainer callbacks of the Query2Label recipe, each keeping its own state and saving it into checkpoints.

- `EmaCallback`: an exponential moving average of the weights (timm's `ModelEmaV3`).
- `AdaptiveAsymmetryCallback`: adaptive asymmetry (ASL paper, section 2.7), which moves the loss's gamma_neg.
- `AugmentationEpochCallback`: tells the training dataset which epoch starts (per-sample augmentation seeds).

Checkpointed callbacks write their file into the checkpoint folder in `on_save` and read it back in
`load_checkpoint(folder)`, which `Query2LabelTrainer.train` calls before resuming.
"""

import json
import math
import os
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

EMA_WEIGHTS_NAME = "ema_model.safetensors"
ADAPTIVE_ASYMMETRY_STATE_NAME = "q2l_adaptive_asymmetry.json"


def checkpoint_folder(args, state) -> str:
    """The folder the Trainer has just saved a checkpoint into (its own naming)."""
    return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


def unwrap(model):
    return getattr(model, "module", model)


class EmaCallback(TrainerCallback):
    """An exponential moving average of the weights, updated after every optimizer step, with warm-up so short runs
    work. Its weights are saved in every checkpoint (`ema_model.safetensors`)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True)
        self.ema.requires_grad_(False)

    @property
    def module(self) -> torch.nn.Module:
        return self.ema.module

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(unwrap(model), step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            from safetensors.torch import save_file

            tensors = {key: value.contiguous() for key, value in self.ema.module.state_dict().items()}
            save_file(tensors, os.path.join(checkpoint_folder(args, state), EMA_WEIGHTS_NAME))

    def load_checkpoint(self, folder: str) -> None:
        path = os.path.join(folder, EMA_WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{folder} has no EMA weights ({EMA_WEIGHTS_NAME}); resume with the same --ema_decay setting as the run "
                "that wrote it."
            )
        from safetensors.torch import load_file

        self.ema.module.load_state_dict(load_file(path))


class AdaptiveAsymmetryCallback(TrainerCallback):
    """Adaptive asymmetry (ASL paper, section 2.7): after every step,
    gamma_neg <- max(0, gamma_neg + step_size * (gap - target_gap)), where gap is the batch's mean probability of
    positive labels minus that of negative labels (over all processes). The callback owns gamma_neg and sets it on
    the model's loss (`model.criterion`); the config keeps the starting value."""

    def __init__(self, gamma_neg: float, target_gap: float, step_size: float):
        self.gamma_neg, self.target_gap, self.step_size = float(gamma_neg), target_gap, step_size
        self.last_gap, self.gap_total, self.gap_count = float("nan"), 0.0, 0

    def observe(self, logits: torch.Tensor, labels: torch.Tensor, reduce=None) -> None:
        """Record the probability gap of one training batch; `reduce` sums a tensor over processes."""
        probabilities = torch.sigmoid(logits.detach().float())
        positive, negative = (labels == 1).float(), (labels == 0).float()
        sums = torch.stack([(probabilities * positive).sum(), positive.sum(), (probabilities * negative).sum(), negative.sum()])
        if reduce is not None:
            sums = reduce(sums)
        self.last_gap = float(sums[0] / sums[1].clamp(min=1) - sums[2] / sums[3].clamp(min=1))
        self.gap_total += self.last_gap
        self.gap_count += 1

    def pop_logs(self) -> dict:
        """`gamma_neg` and the mean probability gap since the previous call, for the training log."""
        mean_gap = self.gap_total / self.gap_count if self.gap_count else float("nan")
        self.gap_total, self.gap_count = 0.0, 0
        return {"gamma_neg": round(self.gamma_neg, 4), "probability_gap": round(mean_gap, 4)}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        unwrap(model).criterion.gamma_neg = self.gamma_neg

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if math.isnan(self.last_gap):
            return
        self.gamma_neg = max(0.0, self.gamma_neg + self.step_size * (self.last_gap - self.target_gap))
        unwrap(model).criterion.gamma_neg = self.gamma_neg

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            path = Path(checkpoint_folder(args, state), ADAPTIVE_ASYMMETRY_STATE_NAME)
            path.write_text(json.dumps({"gamma_neg": self.gamma_neg}))

    def load_checkpoint(self, folder: str) -> None:
        path = Path(folder, ADAPTIVE_ASYMMETRY_STATE_NAME)
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} has no adaptive-asymmetry state ({ADAPTIVE_ASYMMETRY_STATE_NAME}); resume with the same "
                "--adaptive_asymmetry setting as the run that wrote it."
            )
        self.gamma_neg = json.loads(path.read_text())["gamma_neg"]


class AugmentationEpochCallback(TrainerCallback):
    """Tells a `MultiLabelImageDataset` which epoch starts, so its per-sample augmentation seeds change each epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.epoch = int(state.epoch + 1e-6)  # a resumed run starts mid-epoch, e.g. at 0.8
