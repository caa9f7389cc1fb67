"""Attention figures: each predicted label's cross-attention map over the image it was computed on
(`scripts/visualize_attention.py`, the Gradio demo). The maps come from `attention_maps.label_attention_maps`."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.loading import to_rgb
from ..extras import require
from .attention_maps import label_attention_maps, upsample_maps
from .predict import expand_inputs, label_thresholds, load_classifier, open_for_prediction


@dataclass
class ImageAttention:
    """One image's scores `(num_labels,)`, maps at the image's size `(num_labels, H, W)` (mean over heads) and, when
    asked for, per head `(heads, num_labels, H, W)`; `shown` are the label indices to draw, best first."""

    image: Image.Image
    scores: np.ndarray
    maps: np.ndarray
    head_maps: np.ndarray | None
    shown: list[int]
    label_names: list[str]
    thresholds: np.ndarray


def label_indices(label_names: list[str], requested) -> list[int]:
    """Indices of the labels named in `requested` (names), with an error naming any the model does not have."""
    unknown = [name for name in requested if name not in label_names]
    if unknown:
        raise ValueError(f"Unknown labels {unknown}; the model's labels are {label_names}.")
    return [label_names.index(name) for name in requested]


@torch.no_grad()
def explain_image(
    model,
    processor,
    image: Image.Image,
    labels=(),
    threshold: float | None = None,
    layer: int = -1,
    per_head: bool = False,
    through_encoder: bool = False,
) -> ImageAttention:
    """Scores and attention maps of one image; the labels shown are those at or above their threshold plus `labels`
    (names), best first; with none of either, the best-scoring label. `through_encoder` rolls the maps back
    through the encoder's self-attention (see `attention_maps.rollout_through_encoder`)."""
    image = to_rgb(image)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    requested = label_indices(names, labels)
    pixels = processor(images=image, return_tensors="pt")["pixel_values"].to(next(model.parameters()).device, model.dtype)
    size = (image.height, image.width)
    attention = label_attention_maps(model, pixels, layer=layer, per_head=per_head, through_encoder=through_encoder)
    head_maps = upsample_maps(attention.maps[0], size).cpu().numpy() if per_head else None
    mean_maps = attention.maps[0].mean(dim=0) if per_head else attention.maps[0]  # the mean over heads
    scores = attention.scores[0].cpu().numpy()
    thresholds = label_thresholds(model.config, threshold).numpy().astype(np.float64)
    shown = [int(i) for i in np.argsort(-scores) if scores[i] >= thresholds[i] or i in requested]
    if not shown:
        shown = [int(scores.argmax())]
    return ImageAttention(image, scores, upsample_maps(mean_maps, size).cpu().numpy(), head_maps, shown, names, thresholds)


def overlay(image: Image.Image, attention_map: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> Image.Image:
    """The image with a map (at the image's size) drawn over it in colour, scaled to its own maximum."""
    colormaps = require("matplotlib", "Drawing attention maps").colormaps

    scaled = attention_map / max(float(attention_map.max()), 1e-12)
    heat = (colormaps[colormap](scaled)[..., :3] * 255).astype(np.uint8)
    return Image.blend(image.convert("RGB"), Image.fromarray(heat), alpha)


def panel_title(explained: ImageAttention, index: int) -> str:
    name, score = explained.label_names[index], explained.scores[index]
    below = "" if score >= explained.thresholds[index] else " (below threshold)"
    return f"{name}: {score:.2f}{below}"


def attention_figure(explained: ImageAttention, layer: int = -1, through_encoder: bool = False):
    """A matplotlib figure: the image, then one overlay per shown label (title: label and score); with per-head
    maps, one more row per head."""
    from .plots import pyplot

    plt = pyplot()
    heads = 0 if explained.head_maps is None else explained.head_maps.shape[0]
    columns, rows = 1 + len(explained.shown), 1 + heads
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    axes[0, 0].imshow(explained.image)
    axes[0, 0].set_title("input", fontsize=10)
    for column, index in enumerate(explained.shown, start=1):
        axes[0, column].imshow(overlay(explained.image, explained.maps[index]))
        axes[0, column].set_title(panel_title(explained, index), fontsize=10)
        for head in range(heads):
            axes[1 + head, column].imshow(overlay(explained.image, explained.head_maps[head, index]))
            axes[1 + head, column].set_title(f"head {head}", fontsize=9)
    layer_name = "last decoder layer" if layer == -1 else f"decoder layer {layer}"
    rollout = ", rolled out through the encoder" if through_encoder else ""
    figure.suptitle(f"Cross-attention of each label's query ({layer_name}, mean over heads{rollout})", fontsize=11)
    figure.tight_layout()
    return figure


def save_attention_figure(explained: ImageAttention, path, layer: int = -1, through_encoder: bool = False) -> None:
    from .plots import pyplot

    figure = attention_figure(explained, layer, through_encoder)
    figure.savefig(path, dpi=110)
    pyplot().close(figure)


def run_visualization(args, inputs: list[str], stderr) -> tuple[list[str], int]:
    """One figure per readable image of `inputs` (files or folders) in `args.output_dir`; unreadable files are named
    on `stderr`. Returns the written paths and the exit status (1 when any image could not be drawn)."""
    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"No image files in {inputs}.")
    model, processor = load_classifier(args.model, args.device, args.dtype)
    label_indices([model.config.id2label[i] for i in range(model.config.num_labels)], args.labels)  # fail early
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written, failures = [], 0
    for number, path in enumerate(paths):
        try:
            image = open_for_prediction(Path(path))
        except ValueError as error:
            stderr.write(f"error: {error}\n")
            failures += 1
            continue
        explained = explain_image(
            model, processor, image, args.labels, args.threshold, args.layer, args.per_head, args.through_encoder
        )
        target = output_dir / f"{number:04d}_{Path(path).stem}_attention.png"
        save_attention_figure(explained, target, args.layer, args.through_encoder)
        written.append(str(target))
    return written, int(failures > 0)
