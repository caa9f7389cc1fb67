"""Asymmetric Loss (ASL) for multi-label classification (Ben-Baruch, Ridnik et al., ICCV 2021).

Saved next to the weights for `trust_remote_code` (the model imports it): depends on torch only. The model's
`forward(labels=...)` and the Trainer compute the loss through `image_averaged_loss`, the one place it is defined.
"""

import torch
from torch import nn

_REDUCTIONS = ("sum", "mean", "none")


class AsymmetricLoss(nn.Module):
    r"""Asymmetric loss on multi-hot targets.

    With `p = sigmoid(z)`, positives contribute `(1 - p)^gamma_pos * log(p)` and negatives contribute
    `p_m^gamma_neg * log(1 - p_m)` with the shifted probability `p_m = max(p - clip, 0)`; the loss is the negated sum.
    `gamma_pos = gamma_neg = clip = 0` is binary cross-entropy, `clip = 0, gamma_pos = gamma_neg` is focal loss.

    Args:
        gamma_neg: focusing parameter of negatives.
        gamma_pos: focusing parameter of positives.
        clip: probability margin `m` for negatives (0 or `None` disables it).
        eps: clamp applied to the arguments of the logarithms.
        disable_focal_grad: treat the focusing weight as a constant. Implemented by detaching the weight, so a
            caller's `torch.no_grad()` block is never affected (the authors' code flips the global grad mode).
        reduction: `"sum"` (the authors' value: the negated sum over every entry), `"mean"` (the sum divided by the
            number of known entries) or `"none"` (per-entry losses, zero where the label is unknown).

    Call as `loss(logits, labels)` with both of shape `(batch, num_labels)`. Labels are 0/1 (float or int); entries
    equal to -1 are unknown and contribute nothing. The loss is computed in float32, so it stays finite under fp16
    and bf16 autocast.
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float | None = 0.05,
        eps: float = 1e-8,
        disable_focal_grad: bool = True,
        reduction: str = "sum",
    ):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        if clip is not None and not 0 <= clip < 1:
            raise ValueError(f"clip must lie in [0, 1), got {clip}.")
        self.gamma_neg = float(gamma_neg)
        self.gamma_pos = float(gamma_pos)
        self.clip = float(clip or 0.0)
        self.eps = float(eps)
        self.disable_focal_grad = disable_focal_grad
        self.reduction = reduction

    @classmethod
    def from_config(cls, config, reduction: str = "sum") -> "AsymmetricLoss":
        """The loss a `Query2LabelConfig` describes: its `asl_*` fields are this class's arguments."""
        names = ("gamma_neg", "gamma_pos", "clip", "eps", "disable_focal_grad")
        return cls(reduction=reduction, **{name: getattr(config, f"asl_{name}") for name in names})

    def extra_repr(self) -> str:
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, eps={self.eps}, "
            f"disable_focal_grad={self.disable_focal_grad}, reduction={self.reduction!r}"
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape != labels.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must have the same shape "
                "(batch, num_labels); labels are multi-hot vectors."
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            known = (labels != -1).float()
            targets = labels.float().clamp(min=0) * known  # unknown entries: target 0, masked below

            prob_pos = torch.sigmoid(logits)
            prob_neg = 1.0 - prob_pos  # (batch, num_labels)
            if self.clip > 0:
                prob_neg = (prob_neg + self.clip).clamp(max=1.0)  # == 1 - max(p - clip, 0)

            loss = targets * torch.log(prob_pos.clamp(min=self.eps))
            loss = loss + (1.0 - targets) * torch.log(prob_neg.clamp(min=self.eps))

            if self.gamma_neg > 0 or self.gamma_pos > 0:
                prob_target = prob_pos * targets + prob_neg * (1.0 - targets)
                gamma = self.gamma_pos * targets + self.gamma_neg * (1.0 - targets)
                focal_weight = torch.pow(1.0 - prob_target, gamma)
                if self.disable_focal_grad:
                    focal_weight = focal_weight.detach()
                loss = loss * focal_weight

            loss = -loss * known
        if self.reduction == "none":
            return loss
        if self.reduction == "mean":
            return loss.sum() / known.sum().clamp(min=1.0)
        return loss.sum()


def image_averaged_loss(
    criterion: AsymmetricLoss,
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of Query2Label: `criterion` summed over labels and averaged over images.

    Without `num_items_in_batch` it is averaged over this batch's images. The Trainer passes `num_items_in_batch`, the
    label entries of the whole accumulated batch over all processes (it counts entries that are not -100, and our
    unknown labels are -1): divided by the number of labels that is the number of images, so micro-batches of any
    size add up to the gradient of one big batch.
    """
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels must be multi-hot of shape (batch, num_labels) = {tuple(logits.shape)}, got "
            f"{tuple(labels.shape)}; use -1 for unknown labels."
        )
    if criterion.reduction != "sum":
        raise ValueError("image_averaged_loss needs a criterion with reduction='sum'.")
    num_images = logits.shape[0] if num_items_in_batch is None else num_items_in_batch / logits.shape[1]
    return criterion(logits, labels) / num_images


__all__ = ["AsymmetricLoss", "image_averaged_loss"]
