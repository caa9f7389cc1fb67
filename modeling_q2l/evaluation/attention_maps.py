"""Where each label's query looks: cross-attention maps, and how well they point at the labelled objects.

A Query2Label decoder layer returns, with `output_attentions=True`, one map per head and label over the backbone's
feature grid: `(batch, heads, num_labels, height, width)`. `label_attention_maps` picks a layer, averages the heads
(or keeps them) and can carry the map back through the encoder's self-attention ("rollout"): each memory token the
queries attend to is itself a mixture of feature positions, so the map over memory tokens is not yet a map over the
image.

Localisation on data with boxes (`localization_scores`), at the model's input resolution:
- pointing game: the map's peak (upsampled bilinearly to the input) falls inside one of the label's boxes;
- attention mass: the share of the map inside the label's boxes;
- chance: the share of the image the boxes cover, what a uniform map gets for both (and a random point for the first).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class LabelAttention:
    """Sigmoid scores `(batch, num_labels)` and maps `(batch, num_labels, h, w)` (or `(batch, heads, num_labels, h, w)`
    with `per_head`), each map summing to 1."""

    scores: torch.Tensor
    maps: torch.Tensor


def _check_layer(num_layers: int, layer: int) -> int:
    if not -num_layers <= layer < num_layers:
        raise ValueError(f"layer={layer}: the decoder has {num_layers} layers (use 0..{num_layers - 1} or -1 for the last).")
    return layer % num_layers


def rollout_through_encoder(maps: torch.Tensor, encoder_attentions) -> torch.Tensor:
    """Carry maps over memory tokens `(..., num_labels, h * w)` back to feature positions through the encoder's
    self-attention, each layer counted with its residual path: `0.5 * I + 0.5 * mean over heads` (Abnar & Zuidema)."""
    mixing = None
    for weights in encoder_attentions:  # each (batch, heads, h * w, h * w)
        layer_mix = 0.5 * weights.mean(dim=1) + 0.5 * torch.eye(weights.shape[-1], device=weights.device, dtype=weights.dtype)
        mixing = layer_mix if mixing is None else layer_mix @ mixing  # later layers act on earlier layers' output
    if mixing is None:
        return maps
    if maps.dim() == 4:  # (batch, heads, labels, tokens): the same mixing for every head
        mixing = mixing.unsqueeze(1)
    return maps @ mixing


@torch.no_grad()
def label_attention_maps(
    model,
    pixel_values: torch.Tensor,
    layer: int = -1,
    per_head: bool = False,
    through_encoder: bool = False,
    head: int | None = None,
) -> LabelAttention:
    """Scores and attention maps of one decoder layer (default: the last) for a batch of processed images: the mean
    over heads, every head (`per_head`) or one (`head`)."""
    if getattr(model.config, "classifier_head", "query2label") != "query2label":
        raise ValueError("Attention maps need the Query2Label head; this model pools globally (classifier_head).")
    outputs = model(pixel_values=pixel_values, output_attentions=True)
    cross = outputs.cross_attentions
    weights = cross[_check_layer(len(cross), layer)].float()  # (batch, heads, queries, h, w)
    if getattr(model.config, "label_groups", None):  # group decoding: each label looks where its group's query looks
        queries = [model.config.query_of_label(label) for label in range(model.config.num_labels)]
        weights = weights[:, :, queries]  # (batch, heads, labels, h, w)
    height, width = weights.shape[-2:]
    if head is not None:
        if not 0 <= head < weights.shape[1]:
            raise ValueError(f"head={head}: the decoder has {weights.shape[1]} attention heads (0..{weights.shape[1] - 1}).")
        weights = weights[:, head : head + 1]  # the mean of one head is that head
    maps = weights.flatten(-2) if per_head else weights.mean(dim=1).flatten(-2)
    if through_encoder and outputs.encoder_attentions:
        maps = rollout_through_encoder(maps, [w.float() for w in outputs.encoder_attentions])
    maps = maps / maps.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return LabelAttention(torch.sigmoid(outputs.logits.float()), maps.unflatten(-1, (height, width)))


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps `(..., h, w)` resized bilinearly to `size` (height, width), each renormalised to sum to 1."""
    leading = maps.shape[:-2]
    resized = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    resized = resized.clamp_min(0).reshape(*leading, *size)
    return resized / resized.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def box_mask(boxes, image_size: tuple[int, int], grid_size: tuple[int, int]) -> np.ndarray:
    """Boolean `(grid_h, grid_w)` mask of the union of COCO boxes `[x, y, w, h]` (pixels of an image of
    `image_size` = (height, width)), drawn on a grid covering the image (the model's input resolution)."""
    image_height, image_width = image_size
    grid_height, grid_width = grid_size
    mask = np.zeros(grid_size, dtype=bool)
    # a grid pixel is inside a box when its centre is
    ys = (np.arange(grid_height) + 0.5) * image_height / grid_height
    xs = (np.arange(grid_width) + 0.5) * image_width / grid_width
    for x, y, w, h in boxes:
        rows = (ys >= y) & (ys < y + h)
        cols = (xs >= x) & (xs < x + w)
        mask |= rows[:, None] & cols[None, :]
    return mask


@dataclass
class LocalizationCounts:
    """Per-label sums over (image, present label) pairs with boxes."""

    hits: np.ndarray
    mass: np.ndarray
    chance: np.ndarray
    count: np.ndarray

    @classmethod
    def zeros(cls, num_labels: int) -> "LocalizationCounts":
        return cls(*(np.zeros(num_labels) for _ in range(4)))


def add_image(counts: LocalizationCounts, maps: torch.Tensor, boxes_by_label: dict[int, list], image_size) -> None:
    """Score one image: `maps` `(num_labels, H, W)` at input resolution (summing to 1), `boxes_by_label` the boxes of
    each present label in the image's own pixels, `image_size` its (height, width)."""
    grid = tuple(maps.shape[-2:])
    flat = maps.flatten(1).cpu().numpy()
    peaks = flat.argmax(axis=1)
    for label, boxes in boxes_by_label.items():
        mask = box_mask(boxes, image_size, grid).ravel()
        counts.hits[label] += mask[peaks[label]]
        counts.mass[label] += flat[label][mask].sum()
        counts.chance[label] += mask.mean()
        counts.count[label] += 1


def localization_summary(counts: LocalizationCounts, label_names: list[str]) -> dict:
    """Pointing-game accuracy, attention mass in boxes and their chance level, per label and over all pairs."""
    with np.errstate(invalid="ignore", divide="ignore"):
        per_label = [
            {
                "label": name,
                "pairs": int(counts.count[i]),
                "pointing_game": float(counts.hits[i] / counts.count[i]) if counts.count[i] else None,
                "mass_in_boxes": float(counts.mass[i] / counts.count[i]) if counts.count[i] else None,
                "chance": float(counts.chance[i] / counts.count[i]) if counts.count[i] else None,
            }
            for i, name in enumerate(label_names)
        ]
    total = counts.count.sum()
    if not total:
        raise ValueError("No present label with a box: localisation needs data with boxes (an `objects` column).")
    return {
        "pairs": int(total),
        "pointing_game": float(counts.hits.sum() / total),
        "mass_in_boxes": float(counts.mass.sum() / total),
        "chance": float(counts.chance.sum() / total),
        "per_label": per_label,
    }
