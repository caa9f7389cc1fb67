"""The multi-label image-classification pipeline of Query2Label, saved next to the weights.

The config names it in `custom_pipelines["image-classification"]`, so
`pipeline("image-classification", model=..., trust_remote_code=True)` builds this class. transformers' stock pipeline
answers like a single-label classifier: its `top_k=None` means its default of 5 labels. Here:

- by default, every label whose probability reaches its threshold (`config.label_thresholds`, fitted per label at
  the end of training; 0.5 where the config has none), best first; an image with no label above threshold gives `[]`;
- `top_k=None`: every label, best first; `top_k=k`: the k best;
- `threshold=t`: one threshold for every label (with `top_k`, the best k of those that reach it).

Scores are independent sigmoid probabilities. Inputs are what the stock pipeline takes (paths, URLs, PIL images,
lists of them for a batch); a local file keeps its bit depth (URLs go through transformers' `load_image`, which
converts to 8-bit RGB). Saved next to the weights for `trust_remote_code`: depends on torch and transformers (with
its vision backend, PIL) only.
"""

import os

import torch
from transformers import ImageClassificationPipeline
from transformers.image_utils import is_pil_image

_EVERY_LABEL = "every label"  # what `top_k=None` means here


def open_local_image(path):
    """An image file opened as it is stored, turned upright by its EXIF orientation. transformers' `load_image` would
    also convert it to 8-bit RGB, which clips a 16-bit image to white; the image processor converts modes itself."""
    from PIL import Image, ImageOps  # transformers' vision backend, which every image processor needs

    return ImageOps.exif_transpose(Image.open(path))


class Query2LabelImageClassificationPipeline(ImageClassificationPipeline):
    """Multi-label image classification: labels above their thresholds by default, every label with `top_k=None`.
    The model is prepared for inference once (`optimize_for_inference()`: the fast CPU path, where it applies)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if hasattr(self.model, "optimize_for_inference"):
            self.model.optimize_for_inference()

    def __call__(self, inputs=None, **kwargs):
        if "top_k" in kwargs and kwargs["top_k"] is None:  # the stock pipeline would read it as "the default"
            kwargs["top_k"] = _EVERY_LABEL
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, threshold=None, function_to_apply=None, timeout=None):
        if function_to_apply is not None and str(function_to_apply).lower() != "sigmoid":
            raise ValueError(
                f"function_to_apply={function_to_apply!r}: Query2Label's scores are independent sigmoid probabilities "
                "(one per label); leave function_to_apply out."
            )
        if top_k is not None and top_k != _EVERY_LABEL and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None (every label), got {top_k!r}.")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] (a probability), got {threshold!r}.")
        preprocess_params = {"timeout": timeout} if timeout is not None else {}
        postprocess_params = {"top_k": top_k, "threshold": None if threshold is None else float(threshold)}
        return preprocess_params, {}, postprocess_params

    def preprocess(self, image, timeout=None):
        if isinstance(image, (str, os.PathLike)) and os.path.isfile(image):
            image = open_local_image(image)
        if is_pil_image(image):  # the processor converts modes itself, 16-bit images without clipping them
            return self.image_processor(images=image, return_tensors="pt").to(self.dtype)
        return super().preprocess(image, timeout=timeout)

    def label_thresholds(self) -> torch.Tensor:
        """The config's per-label thresholds, or 0.5 for every label."""
        config = self.model.config
        thresholds = getattr(config, "label_thresholds", None)
        if thresholds is None:
            return torch.full((config.num_labels,), 0.5)
        if len(thresholds) != config.num_labels:
            raise ValueError(
                f"config.label_thresholds has {len(thresholds)} values for {config.num_labels} labels; refit them "
                "(scripts/evaluate_model.py --fit_thresholds) or pass threshold=."
            )
        return torch.tensor(thresholds, dtype=torch.float32)

    def postprocess(self, model_outputs, top_k=None, threshold=None):
        scores = torch.sigmoid(model_outputs["logits"][0].float())  # (num_labels,)
        order = torch.argsort(scores, descending=True)
        if top_k is None and threshold is None:
            keep = scores[order] >= self.label_thresholds()[order]
        else:
            keep = scores[order] >= (threshold if threshold is not None else 0.0)
        order = order[keep]
        if top_k not in (None, _EVERY_LABEL):
            order = order[:top_k]
        id2label = self.model.config.id2label
        return [{"label": id2label[index], "score": scores[index].item()} for index in order.tolist()]


__all__ = ["Query2LabelImageClassificationPipeline"]
