"""Object recomposition: a training augmentation that lays the boxed objects of a training image, and of another
training image, out again on an empty canvas, with new sizes, places, counts and overlaps.

A stored multi-label dataset fixes how many objects an image holds, how large they are, how much they overlap and
which labels come together; a model trained on it learns those habits along with the objects. Recomposing draws them
anew for every sample: 1 to `max_objects` objects picked from the two images, each scaled to a random size and placed
where it covers earlier ones by at most a random share of its box. The labels are those of the objects left visible.

It needs boxes (an `objects` column, COCO-style `[x, y, width, height]` with a category each) and a flat background
(the border's colour, e.g. the dark Fashion-MNIST mosaics), against which each object is cut out by its colour
distance; an image without one is left as it is (`LayoutRandomization` then changes its look). The random draws come
from torch's generator, which `ImagePreparation` seeds per sample, so runs are reproducible.
"""

import math

import numpy as np
import torch
from PIL import Image

from ..data.labels import object_category_key
from .layout_augmentation import flat_background, numpy_generator, object_alpha, resize_layer
from ..data.loading import open_image, to_rgb
from .mosaic import place_box


class ObjectRecomposition:
    """(PIL image, multi-hot labels, index) of a training sample -> a recomposed image and its labels, with
    probability `probability`.

    Args:
        dataset: the training split (`datasets.Dataset`) the sample comes from; partners are drawn from it.
        image_column: its image column.
        encoder: the split's `LabelEncoder` (maps an object's category, name or id, to its label index).
        probability: chance that a sample is recomposed.
        max_objects: most objects on a recomposed image.
        object_sides: range of an object's longer side in pixels (drawn log-uniformly).
        max_overlap: the share of a new object's box that may cover earlier boxes is drawn from [0, max_overlap].
        min_visible: an object counts (its label is positive) when at least this share of its pixels stays visible.
    """

    def __init__(
        self,
        dataset,
        image_column: str,
        encoder,
        probability: float = 0.5,
        max_objects: int = 6,
        object_sides: tuple[int, int] = (10, 100),
        max_overlap: float = 0.6,
        min_visible: float = 0.3,
    ):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"object recomposition probability must lie in [0, 1], got {probability}.")
        if "objects" not in dataset.features:
            raise ValueError(
                "--object_recomposition needs boxes: the training split has no `objects` column (COCO-style bbox + "
                "category per object). Train without it (--object_recomposition 0)."
            )
        self.dataset, self.image_column, self.encoder = dataset, image_column, encoder
        self.annotations = list(dataset["objects"])  # read once: a partner's image is then the only column decoded
        self.probability, self.max_objects, self.object_sides = probability, max_objects, object_sides
        self.max_overlap, self.min_visible = max_overlap, min_visible

    def __call__(self, image: Image.Image, labels: torch.Tensor, index: int) -> tuple[Image.Image, torch.Tensor]:
        rng = numpy_generator()
        if rng.random() >= self.probability or len(self.dataset) < 2:
            return image, labels
        pixels = np.asarray(to_rgb(image), dtype=np.float32)
        background = flat_background(pixels)
        if background is None:
            return image, labels
        partner = int(rng.integers(len(self.dataset) - 1))
        partner += partner >= index
        partner_pixels = np.asarray(to_rgb(open_image(self.dataset[partner][self.image_column])), dtype=np.float32)
        pool = self._cut_out(pixels, background, self.annotations[index])
        partner_background = flat_background(partner_pixels)
        if partner_background is not None:
            pool += self._cut_out(partner_pixels, partner_background, self.annotations[partner])
        if not pool:
            return image, labels
        count = int(rng.integers(1, min(self.max_objects, len(pool)) + 1))
        chosen = [pool[i] for i in rng.permutation(len(pool))[:count]]
        canvas, visible = self._lay_out(chosen, background, pixels.shape, rng)
        if not visible:
            return image, labels
        new_labels = torch.zeros_like(labels)
        new_labels[sorted(visible)] = 1
        return Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8)), new_labels

    def _cut_out(self, pixels: np.ndarray, background: np.ndarray, annotation: dict) -> list[tuple[int, np.ndarray]]:
        """(label index, `(h, w, 4)` colour + alpha layer) of each boxed object that stands out from the background."""
        key = object_category_key(annotation)
        if key is None:
            return []
        height, width = pixels.shape[:2]
        objects = []
        for (x, y, box_width, box_height), category in zip(annotation["bbox"], annotation[key]):
            left, top = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
            right, bottom = min(width, int(math.ceil(x + box_width))), min(height, int(math.ceil(y + box_height)))
            if right - left < 2 or bottom - top < 2:
                continue
            crop = pixels[top:bottom, left:right]
            alpha = object_alpha(crop, background)
            if alpha.max() < 0.5:
                continue
            objects.append((self.encoder.label_index(category), np.concatenate([crop, alpha], axis=2)))
        return objects

    def _lay_out(self, objects, background: np.ndarray, shape, rng) -> tuple[np.ndarray, set[int]]:
        """The objects at random sizes and places on a canvas of `background`'s colour; returns the canvas and the
        labels of the objects that stay visible."""
        height, width = shape[:2]
        canvas = np.empty(shape, dtype=np.float32)
        canvas[:] = background
        owner = np.full((height, width), -1)  # which object each pixel shows (alpha > 0.5)
        max_overlap = rng.uniform(0.0, self.max_overlap)
        boxes, placed = [], []  # placed: (label, its pixel count)
        low, high = self.object_sides
        for label, layer in objects:
            side = min(math.exp(rng.uniform(math.log(low), math.log(high))), height, width)
            scale = side / max(layer.shape[:2])
            new_height, new_width = max(2, round(layer.shape[0] * scale)), max(2, round(layer.shape[1] * scale))
            new_height, new_width = min(new_height, height), min(new_width, width)
            corner = place_box(rng, (width, height), max_overlap, boxes, new_width, new_height)
            if corner is None:
                continue
            resized = resize_layer(layer, new_height, new_width)
            colour, alpha = resized[..., :3], np.clip(resized[..., 3:], 0.0, 1.0)
            x, y = corner
            region = canvas[y : y + new_height, x : x + new_width]
            canvas[y : y + new_height, x : x + new_width] = region * (1 - alpha) + colour * alpha
            solid = alpha[..., 0] > 0.5
            owner[y : y + new_height, x : x + new_width][solid] = len(placed)
            boxes.append((x, y, new_width, new_height))
            placed.append((label, int(solid.sum())))
        visible = {
            label
            for number, (label, pixel_count) in enumerate(placed)
            if pixel_count > 0 and (owner == number).sum() >= self.min_visible * pixel_count
        }
        return canvas, visible
