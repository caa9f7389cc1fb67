"""Layout randomisation: a training augmentation that changes the look of a multi-label image (its background, the
objects' tint and size, noise, blur, compression) without changing which objects it holds, so that a model trained
on one layout of data keeps its accuracy on others.

It works on any image; on images with a flat background (the border's colour, e.g. the dark mosaics) it separates the
objects from the background by their distance to that colour, so it can shrink and move them, recolour them and put
them on a new background of any `BACKGROUND_STYLES` style. On other images it changes the whole image only. The
random draws come from torch's generator (seeded per sample by `ImagePreparation`), so runs are reproducible.
"""

import io

import numpy as np
import torch
from PIL import Image

from .mosaic import BACKGROUND_STYLES, draw_background

# a border whose pixels lie within this many levels (0-255) of its median colour is a flat background
FLAT_BORDER_SPREAD = 14
# an object pixel lies this far from the background colour (alpha ramps from 0 to 1 over the second number)
OBJECT_DISTANCE, OBJECT_RAMP = 10.0, 30.0
# object tints drawn for each new background: dark objects on light backgrounds, any tint elsewhere
_NEW_TINT_RANGE = {"dark": (0.35, 1.0), "light": (0.0, 0.45)}


def numpy_generator() -> np.random.Generator:
    """A numpy generator drawn from torch's (which `ImagePreparation` seeds per sample)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ())))


def flat_background(image: np.ndarray) -> np.ndarray | None:
    """The colour of a flat background (the border's median), or None when the border varies or nothing stands out
    clearly from it (objects close to the background's colour would be lost with it)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    colour = np.median(border, axis=0)
    spread = np.percentile(np.abs(border - colour).max(axis=1), 90)
    if spread >= FLAT_BORDER_SPREAD or np.abs(image - colour).max() < OBJECT_DISTANCE + 2 * OBJECT_RAMP:
        return None
    return colour


def object_distance(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """`(H, W, 1)` distance of each pixel to the background colour (largest over the channels)."""
    return np.abs(pixels - background.astype(np.float32)).max(axis=2, keepdims=True)


def object_alpha(pixels: np.ndarray, background: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
    """`(H, W, 1)` opacity of the objects on a flat `background`: 0 within `OBJECT_DISTANCE` of its colour, ramping
    to 1 over `OBJECT_RAMP` more."""
    distance = object_distance(pixels, background) if distance is None else distance
    return np.clip((distance - OBJECT_DISTANCE) / OBJECT_RAMP, 0.0, 1.0)


def resize_layer(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """`(H, W, C)` float array resized to `(height, width, C)`, bilinear with antialiasing."""
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    resized = torch.nn.functional.interpolate(tensor, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].numpy().transpose(1, 2, 0)


class LayoutRandomization:
    """uint8 `(3, H, W)` tensor -> the same objects in another layout, with probability `probability`.

    Args:
        probability: chance that an image is changed at all.
        min_scale: smallest factor the objects of a flat-background image are shrunk by (they are then placed at a
            random position on the new background; 1 keeps their size).
        noise_std: largest standard deviation of the added pixel noise (0-255 scale).
    """

    def __init__(self, probability: float = 0.8, min_scale: float = 0.5, noise_std: float = 20.0):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"layout randomisation probability must lie in [0, 1], got {probability}.")
        self.probability, self.min_scale, self.noise_std = probability, min_scale, noise_std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        rng = numpy_generator()
        if rng.random() >= self.probability:
            return image
        pixels = image.permute(1, 2, 0).numpy().astype(np.float32)  # (H, W, 3)
        background = flat_background(pixels)
        if background is not None and rng.random() < 0.85:
            pixels = self._new_background(pixels, background, rng)
        elif rng.random() < 0.3:
            pixels = self._shrink_onto(pixels, np.ones(pixels.shape[:2] + (1,), np.float32), rng)
        pixels = self._whole_image(pixels, rng)
        return torch.from_numpy(pixels.round().clip(0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()

    def _new_background(self, pixels: np.ndarray, background: np.ndarray, rng) -> np.ndarray:
        """Separate the objects from their flat background, maybe recolour them, shrink them, and lay them on a new
        background."""
        distance = object_distance(pixels, background)  # the objects' brightness
        alpha = object_alpha(pixels, background, distance)
        style = BACKGROUND_STYLES[int(rng.integers(len(BACKGROUND_STYLES)))]
        low, high = _NEW_TINT_RANGE.get(style, (0.0, 1.0))
        if style in _NEW_TINT_RANGE or rng.random() < 0.6:  # a new tint: the objects' brightness times a colour
            inside = distance[alpha > 0.5]
            peak = max(float(np.percentile(inside, 95)) if inside.size else 1.0, 1.0)
            colour = (rng.uniform(low, high, size=3) * 255.0).astype(np.float32)
            pixels = np.clip(distance / peak, 0.0, 1.0) * colour
        return self._shrink_onto(pixels, alpha, rng, style)

    def _shrink_onto(self, pixels: np.ndarray, alpha: np.ndarray, rng, style: str | None = None) -> np.ndarray:
        """Composite `pixels` (with `alpha`) onto a new background, shrunk by a random factor at a random place."""
        side = pixels.shape[0]
        if style is None:
            style = BACKGROUND_STYLES[int(rng.integers(len(BACKGROUND_STYLES)))]
        canvas = draw_background(rng, side, style)
        scale = rng.uniform(self.min_scale, 1.0) if rng.random() < 0.5 else 1.0
        small = max(8, round(side * scale))
        if small < side:
            layer = resize_layer(np.concatenate([pixels, alpha], axis=2), small, small)
            pixels, alpha = layer[..., :3], np.clip(layer[..., 3:], 0.0, 1.0)
        x, y = (int(rng.integers(0, side - small + 1)) for _ in range(2))
        region = canvas[y : y + small, x : x + small]
        canvas[y : y + small, x : x + small] = region * (1 - alpha) + pixels * alpha
        return canvas

    def _whole_image(self, pixels: np.ndarray, rng) -> np.ndarray:
        """Changes of the whole image: channel order, blur, noise and JPEG compression, each now and then."""
        if rng.random() < 0.3:
            pixels = pixels[..., rng.permutation(3)]
        if rng.random() < 0.2:
            from torchvision.transforms.v2 import functional

            tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
            sigma = float(rng.uniform(0.3, 1.2))
            pixels = functional.gaussian_blur(tensor, kernel_size=5, sigma=sigma).numpy().transpose(1, 2, 0)
        if rng.random() < 0.3:
            pixels = pixels + rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(rng.uniform(2, self.noise_std))
        if rng.random() < 0.2:
            buffer = io.BytesIO()
            Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=int(rng.integers(25, 85)))
            pixels = np.asarray(Image.open(buffer), dtype=np.float32)
        return pixels
