"""Query2Label image processor: square resize to the model's resolution, RGB conversion, normalisation.

Saved next to the weights for `trust_remote_code`: depends on transformers and torch only.
"""

import torch
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    PILImageResampling,
    is_pil_image,
)

try:  # transformers >= 5.4
    from transformers.image_processing_backends import TorchvisionBackend as _TorchImageProcessor
except ImportError:  # 5.0 to 5.3: the same torchvision processing under its earlier name
    from transformers.image_processing_utils_fast import BaseImageProcessorFast as _TorchImageProcessor

_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_eight_bit(image):
    """A 16-bit or 32-bit single-channel PIL image as an 8-bit `(3, height, width)` uint8 tensor; anything else is
    returned as it is. PIL's own `convert("RGB")` clips such images to white. 16-bit values are scaled by 65535,
    32-bit integers and floats by their observed range."""
    if not is_pil_image(image) or image.mode not in _HIGH_BIT_DEPTH_MODES:
        return image
    if image.mode == "F":
        values = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.float32).double()
    else:  # PIL converts every 16-bit layout to 32-bit integers without loss
        values = torch.frombuffer(bytearray(image.convert("I").tobytes()), dtype=torch.int32).double()
    values = values.reshape(image.height, image.width)
    if image.mode.startswith("I;16"):
        values = values / 65535.0
    else:
        low, high = values.min(), values.max()
        values = (values - low) / (high - low) if high > low else torch.zeros_like(values)
    gray = torch.round(values * 255.0).clamp(0, 255).to(torch.uint8)
    return gray.unsqueeze(0).expand(3, -1, -1).contiguous()


def to_rgb_input(image):
    """What the processor resizes: 16/32-bit images as 8-bit tensors (`to_eight_bit`), images with transparency
    composited onto white, every other PIL mode (L, P, CMYK, ...) converted to RGB; tensors and arrays as they are.
    Done here rather than by transformers, whose conversion differs between releases."""
    image = to_eight_bit(image)
    if not is_pil_image(image) or image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        white = image.copy()
        white.paste((255, 255, 255, 255), (0, 0, *image.size))
        white.alpha_composite(image)  # PIL's own compositing, through the image's methods (no PIL import here)
        return white.convert("RGB")
    return image.convert("RGB")


class Query2LabelImageProcessor(_TorchImageProcessor):
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

    def process_image(self, image, *args, **kwargs):  # transformers >= 5.4
        return super().process_image(to_rgb_input(image), *args, **kwargs)

    def _process_image(self, image, *args, **kwargs):  # transformers 5.0 to 5.3
        return super()._process_image(to_rgb_input(image), *args, **kwargs)


__all__ = ["Query2LabelImageProcessor"]
