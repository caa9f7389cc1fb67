"""Query2Label image processor: square resize to the model's resolution, RGB conversion, normalisation.

Saved next to the weights for `trust_remote_code`: depends on transformers, torch and PIL only.
"""

import numpy as np
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

try:
    from PIL import Image
except ImportError:  # PIL is optional for tensor inputs
    Image = None

_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_eight_bit(image):
    """Map a 16-bit or 32-bit single-channel PIL image onto 8 bits (PIL's own `convert("RGB")` clips it to white)."""
    if Image is None or not isinstance(image, Image.Image) or image.mode not in _HIGH_BIT_DEPTH_MODES:
        return image
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        array = array / 65535.0
    else:  # 32-bit integer or float: scale by the observed range
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return Image.fromarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8), mode="L")


class Query2LabelImageProcessor(TorchvisionBackend):
    r"""Image processor for Query2Label.

    Resizes to a square `size` (as the official code does: no crop, aspect ratio not kept), converts L, LA, P, RGBA,
    CMYK and 16-bit images to RGB (transparency composited on white), rescales to [0, 1] and normalises with the
    backbone's mean and std (ImageNet by default; `(0.5, 0.5, 0.5)` for the TensorFlow-ported EfficientNets).
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 448, "width": 448}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def process_image(self, image, *args, **kwargs):
        return super().process_image(to_eight_bit(image), *args, **kwargs)


__all__ = ["Query2LabelImageProcessor"]
