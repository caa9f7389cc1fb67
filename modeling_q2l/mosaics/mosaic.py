"""Multi-label mosaics built from a single-label image dataset.

Each mosaic is a square canvas holding 1 to 4 objects, each a single-label image cut out by its own intensity
(bright object on dark background, as Fashion-MNIST), tinted, scaled to a random side and pasted with limited
overlap. Which classes appear together follows "outfit" groups with some probability, so labels co-occur the way
objects do in real scenes. Every object keeps its box, so the set supports the object-size analysis of the paper.
"""

import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Object-size buckets for mosaics (box area in pixels): small < 24^2 <= medium < 48^2 <= large. COCO's 32^2 / 96^2
# would leave almost no large object on a 128-pixel canvas.
MOSAIC_AREA_THRESHOLDS = (24**2, 48**2)

# Fashion-MNIST class ids: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
# 8 Bag, 9 Ankle boot.
FASHION_OUTFITS = (
    (0, 1, 7, 8),  # casual
    (3, 5, 8),  # summer
    (4, 2, 1, 9),  # winter
    (6, 1, 9, 8),  # office
    (0, 3, 5, 7),  # weekend
)


@dataclass
class MosaicSpec:
    """How mosaics are drawn.

    Args:
        canvas_size: side of the square canvas in pixels.
        min_object_size, max_object_size: range of an object's side in pixels (small, medium and large objects).
        max_objects: at most this many objects per mosaic (at least one).
        outfits: groups of class ids that tend to appear together; empty for independent classes.
        outfit_probability: probability that a mosaic draws its classes from one outfit.
        max_overlap: largest fraction of a new object's box that may cover earlier boxes.
        varied_background_probability: probability that a mosaic gets a varied background (any colour and
            brightness: a flat colour, a gradient or a smooth texture, with pixel noise) and objects of any tint,
            darker than the background included; otherwise the background is dark and the objects bright.
        background_styles: when given, each mosaic draws its background from these `BACKGROUND_STYLES` (uniformly;
            `varied_background_probability` is then unused): "dark" (bright objects), "varied", "light" (dark
            objects), "pattern" (stripes, checks or dots) or "noise" (coloured noise), the last three any tint.
        object_contrast: 1 draws objects in their own tint; below 1 moves each object's colour toward the
            background under it (0.3: faint objects).
        noise_std: standard deviation of Gaussian pixel noise added to the finished canvas (0-255 scale).
        blur_radius: radius of a Gaussian blur of the finished canvas (0: none).
    """

    canvas_size: int = 128
    min_object_size: int = 16
    max_object_size: int = 80
    max_objects: int = 4
    outfits: Sequence[Sequence[int]] = FASHION_OUTFITS
    outfit_probability: float = 0.75
    max_overlap: float = 0.25
    varied_background_probability: float = 0.0
    background_styles: Sequence[str] = ()
    object_contrast: float = 1.0
    noise_std: float = 0.0
    blur_radius: float = 0.0

    def __post_init__(self):
        unknown = sorted(set(self.background_styles) - set(BACKGROUND_STYLES))
        if unknown:
            raise ValueError(f"Unknown background styles {unknown}: choose from {list(BACKGROUND_STYLES)}.")


# Background styles and the object tints drawn on them (a colour's channels are drawn from this range)
BACKGROUND_STYLES = ("dark", "varied", "light", "pattern", "noise")
_TINT_RANGE = {"dark": (0.35, 1.0), "varied": (0.0, 1.0), "light": (0.0, 0.4), "pattern": (0.0, 1.0), "noise": (0.0, 1.0)}


def is_fashion_mnist_mosaic(dataset_name: str | None) -> bool:
    """Whether `dataset_name` is a local folder of Fashion-MNIST mosaics (the embedded set), by its card's name."""
    card = Path(dataset_name or "") / "README.md"
    return bool(dataset_name) and card.is_file() and "pretty_name: Fashion-MNIST mosaics" in card.read_text(encoding="utf-8")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): Fashion-MNIST / MNIST image or label arrays."""
    path = Path(path)
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if raw[:2] != b"\x00\x00":
        raise ValueError(f"{path} is not an idx file.")
    num_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * num_dims).reshape(shape)


def load_fashion_mnist(directory: str | Path, split: str = "train"):
    """Fashion-MNIST images `(N, 28, 28)` uint8 and labels `(N,)` from a folder of its idx files (the Debian package
    `dataset-fashion-mnist` installs them; `scripts/build_mosaic_dataset.py` knows where)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    directory = Path(directory)
    images_file = directory / f"{prefix}-images-idx3-ubyte.gz"
    if not images_file.is_file():
        raise ValueError(
            f"No Fashion-MNIST files in {directory}: `apt-get install dataset-fashion-mnist`, or pass the folder "
            "holding the idx files (--fashion_mnist_dir), or build from another dataset (--dataset_name)."
        )
    return read_idx(images_file), read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)


def _choose_classes(rng: np.random.Generator, spec: MosaicSpec, num_classes: int) -> list[int]:
    count = int(rng.choice(np.arange(1, spec.max_objects + 1), p=_count_probabilities(spec.max_objects)))
    if spec.outfits and rng.random() < spec.outfit_probability:
        outfit = spec.outfits[rng.integers(len(spec.outfits))]
        classes = list(rng.choice(outfit, size=min(count, len(outfit)), replace=False))
    else:
        classes = list(rng.choice(num_classes, size=min(count, num_classes), replace=False))
    if len(classes) < spec.max_objects and rng.random() < 0.1:  # occasionally two objects of one class
        classes.append(classes[0])
    return [int(c) for c in classes]


def _count_probabilities(max_objects: int) -> np.ndarray:
    weights = np.array([1.0] + [1.5] * (max_objects - 1))
    return weights / weights.sum()


def place_box(rng, canvas: tuple[int, int], max_overlap: float, boxes: list, width: int, height: int, attempts: int = 30):
    """A top-left corner for a `width` x `height` box on a `canvas` (width, height) such that at most `max_overlap`
    of the box covers the earlier `boxes` ([x, y, w, h] each), or None after `attempts` random tries."""
    for _ in range(attempts):
        x, y = int(rng.integers(0, canvas[0] - width + 1)), int(rng.integers(0, canvas[1] - height + 1))
        covered = sum(
            max(0, min(x + width, bx + bw) - max(x, bx)) * max(0, min(y + height, by + bh) - max(y, by))
            for bx, by, bw, bh in boxes
        )
        if covered <= max_overlap * width * height:
            return x, y
    return None


def _varied_background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A background of any colour and brightness: flat, a gradient between two colours, or a smooth texture (a coarse
    random grid upsampled), plus pixel noise. `(side, side, 3)` float in [0, 255]."""
    first, second = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
    style = rng.integers(3)
    if style == 0:
        weight = np.zeros((side, side, 1), dtype=np.float32)
    elif style == 1:
        angle = rng.uniform(0, 2 * np.pi)
        axis = np.cos(angle) * np.arange(side)[None, :] + np.sin(angle) * np.arange(side)[:, None]
        weight = ((axis - axis.min()) / max(np.ptp(axis), 1e-6))[..., None].astype(np.float32)
    else:
        cells = int(rng.integers(3, 9))
        grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
        weight = np.asarray(Image.fromarray(grid).resize((side, side), Image.BICUBIC), dtype=np.float32)[..., None] / 255.0
    background = first * (1 - weight) + second * weight
    background += rng.normal(0, rng.uniform(0, 4), size=background.shape)
    return np.clip(background, 0, 255).astype(np.float32)


def _light_background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A pale background: flat or a gradient between two light colours, with a little pixel noise."""
    first, second = rng.uniform(170, 255, size=3), rng.uniform(170, 255, size=3)
    position = np.linspace(0.0, 1.0, side, dtype=np.float32)
    weight = position[None, :, None] if rng.random() < 0.5 else position[:, None, None]
    background = first * (1 - weight) + second * weight + rng.normal(0, 2, size=(side, side, 3))
    return np.clip(background, 0, 255).astype(np.float32)


def _pattern_background(rng: np.random.Generator, side: int) -> np.ndarray:
    """Stripes at any angle, checks or dots between two colours, with a period of 4 to 20 pixels."""
    first, second = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
    period = rng.uniform(4, 20)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0, np.pi)
        weight = (np.cos(angle) * xs + np.sin(angle) * ys) % period < period / 2
    elif kind == 1:
        weight = ((xs // (period / 2)) + (ys // (period / 2))) % 2 == 0
    else:
        weight = np.hypot(xs % period - period / 2, ys % period - period / 2) < period / 4
    weight = weight.astype(np.float32)[..., None]
    return (first * (1 - weight) + second * weight).astype(np.float32)


def _noise_background(rng: np.random.Generator, side: int) -> np.ndarray:
    """Coloured noise around a random mean colour."""
    mean, spread = rng.uniform(40, 215, size=3), rng.uniform(20, 70)
    return np.clip(mean + rng.normal(0, spread, size=(side, side, 3)), 0, 255).astype(np.float32)


def draw_background(rng: np.random.Generator, side: int, style: str) -> np.ndarray:
    """`(side, side, 3)` float background in [0, 255] of one of `BACKGROUND_STYLES`."""
    if style == "dark":
        background = np.empty((side, side, 3), dtype=np.float32)
        background[:] = rng.uniform(0, 45, size=3)  # a dark, tinted background
        return background
    return {"varied": _varied_background, "light": _light_background, "pattern": _pattern_background, "noise": _noise_background}[style](rng, side)


def _tinted_object(
    patch: np.ndarray, size: int, rng: np.random.Generator, tint_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize a grayscale object to `size` and tint it with a colour whose channels lie in `tint_range` (0 to 1):
    returns RGB (size, size, 3) and alpha (size, size)."""
    resized = np.asarray(Image.fromarray(patch).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    color = rng.uniform(*tint_range, size=3)
    rgb = resized[..., None] * color * 255.0
    alpha = np.clip(resized * 1.6, 0.0, 1.0)[..., None]
    return rgb, alpha


def make_mosaic(
    images: np.ndarray, labels: np.ndarray, by_class: list[np.ndarray], spec: MosaicSpec, rng: np.random.Generator
) -> tuple[np.ndarray, list[int], list[list[float]]]:
    """One mosaic: an RGB uint8 canvas, the class of each object and its tight box `[x, y, width, height]`."""
    if spec.background_styles:
        style = spec.background_styles[int(rng.integers(len(spec.background_styles)))]
    else:  # the first layouts' draw (kept so that their datasets rebuild identically)
        style = "varied" if rng.random() < spec.varied_background_probability else "dark"
    canvas = draw_background(rng, spec.canvas_size, style)
    placed_classes, boxes, squares = [], [], []
    for class_id in _choose_classes(rng, spec, len(by_class)):
        size = int(rng.integers(spec.min_object_size, spec.max_object_size + 1))
        corner = None
        while corner is None and size >= spec.min_object_size:
            corner = place_box(rng, (spec.canvas_size,) * 2, spec.max_overlap, squares, size, size)
            size = size if corner is not None else int(size * 0.8)
        if corner is None:
            continue
        index = int(rng.choice(by_class[class_id]))
        rgb, alpha = _tinted_object(images[index], size, rng, _TINT_RANGE[style])
        x, y = corner
        region = canvas[y : y + size, x : x + size]
        if spec.object_contrast < 1.0:  # faint objects: their colour moves toward the background under them
            under = region.reshape(-1, 3).mean(axis=0)
            rgb = under + spec.object_contrast * (rgb - under)
        canvas[y : y + size, x : x + size] = region * (1 - alpha) + rgb * alpha
        rows, cols = np.nonzero(alpha[..., 0] > 0.05)
        if len(rows) == 0:
            continue
        boxes.append([float(x + cols.min()), float(y + rows.min()), float(cols.max() - cols.min() + 1), float(rows.max() - rows.min() + 1)])
        squares.append((x, y, size, size))
        placed_classes.append(class_id)
    if not placed_classes:  # cannot happen with sane specs, but never emit an unlabeled mosaic
        return make_mosaic(images, labels, by_class, spec, rng)
    if spec.blur_radius > 0:
        from PIL import ImageFilter

        blurred = Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(spec.blur_radius))
        canvas = np.asarray(blurred, dtype=np.float32)
    if spec.noise_std > 0:
        canvas = canvas + rng.normal(0, spec.noise_std, size=canvas.shape)
    return canvas.round().clip(0, 255).astype(np.uint8), placed_classes, boxes


def build_mosaics(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    spec: MosaicSpec | None = None,
    seed: int = 0,
    image_format: str = "JPEG",
    jpeg_quality: int = 85,
) -> list[dict]:
    """`count` mosaic records: `image` (encoded bytes), `labels` (sorted unique class ids), `objects` (bbox,
    category).

    `images` are single-object grayscale arrays `(N, H, W)` with a dark background; `labels` their class ids.
    JPEG at quality 85 keeps a mosaic near 2 to 3 kB; use PNG for lossless images.
    """
    spec = spec or MosaicSpec()
    if images.ndim != 3:
        raise ValueError(f"Expected grayscale images (N, H, W), got shape {images.shape}.")
    rng = np.random.default_rng(seed)
    num_classes = int(labels.max()) + 1
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    too_large = sorted({c for outfit in spec.outfits for c in outfit if c >= num_classes})
    if too_large:
        raise ValueError(
            f"MosaicSpec.outfits name class ids {too_large}, but the source has {num_classes} classes: give outfits "
            "of its own classes, or outfits=() for independent classes."
        )
    missing = [c for c, members in enumerate(by_class) if len(members) == 0]
    if missing:
        raise ValueError(f"Classes {missing} have no image to draw from.")
    records = []
    for _ in range(count):
        canvas, classes, boxes = make_mosaic(images, labels, by_class, spec, rng)
        buffer = io.BytesIO()
        Image.fromarray(canvas).save(buffer, format=image_format, **({"quality": jpeg_quality} if image_format == "JPEG" else {}))
        records.append(
            {
                "image": {"bytes": buffer.getvalue(), "path": None},
                "labels": sorted(set(classes)),
                "objects": {"bbox": boxes, "category": classes},
            }
        )
    return records


def to_grayscale_array(image: Image.Image, side: int = 28) -> np.ndarray:
    """Prepare an arbitrary single-label image as a mosaic object: grayscale, square, dark background."""
    gray = np.asarray(image.convert("L").resize((side, side), Image.BILINEAR), dtype=np.uint8)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return 255 - gray if border.mean() > 127 else gray  # objects on light backgrounds are inverted


def mosaic_features(class_names: Sequence[str]):
    """The `datasets` features of a mosaic set: an image, its label list and COCO-style objects."""
    from datasets import ClassLabel, Features, List, Value
    from datasets import Image as ImageFeature

    names = list(class_names)
    return Features(
        {
            "image": ImageFeature(),
            "labels": List(ClassLabel(names=names)),
            "objects": {"bbox": List(List(Value("float32"), length=4)), "category": List(ClassLabel(names=names))},
        }
    )


def save_mosaic_splits(splits: dict[str, list[dict]], class_names: Sequence[str], output_dir: str | Path) -> dict:
    """Write each split as `data/{split}-00000-of-00001.parquet` (the Hub's layout); returns the file paths."""
    from datasets import Dataset

    output_dir = Path(output_dir)
    (output_dir / "data").mkdir(parents=True, exist_ok=True)
    features = mosaic_features(class_names)
    paths = {}
    for split, records in splits.items():
        path = output_dir / "data" / f"{split}-00000-of-00001.parquet"
        Dataset.from_list(records, features=features).to_parquet(str(path))
        paths[split] = path
    return paths
