"""Datasets for multi-label training: loading, label formats, sample validation, transforms and batching.

Label formats recognised (`detect_label_format`), each converted to a multi-hot vector:
- `ids`: a list of class ids (`List(ClassLabel)`, or integers with `label_names` given); a single `ClassLabel`;
- `names`: a list of class names (strings);
- `multi_hot`: a fixed-length vector of 0/1 (-1 for unknown);
- `objects`: detection-style annotations, a dict with `category` / `categories` / `label` / `labels` lists
  (COCO, cppe-5), of ids or names;
- a COCO instances JSON with an image folder (`load_coco_instances`) becomes the `objects` format.

Bad samples (unreadable or truncated images, ids out of range, unknown names, empty label lists) stop the run
with an error naming the sample, unless `skip_bad_samples` is set: then they are dropped, counted and reported.
"""

import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .image_processing_query2label import to_eight_bit

logger = logging.getLogger(__name__)

LABEL_FORMATS = ("auto", "ids", "names", "multi_hot", "objects")
OBJECT_LABEL_KEYS = ("category", "categories", "label", "labels", "category_id")


class BadSampleError(ValueError):
    """A sample whose image or labels cannot be used; `reason` is the short category counted when skipping."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_coco_instances(annotation_file: str | Path, image_dir: str | Path):
    """A `datasets.Dataset` from a COCO instances JSON: `image` (path), `objects` {bbox, category} with categories
    renumbered 0..K-1 in the order of the file's `categories`; images without annotations keep an empty list."""
    from datasets import ClassLabel, Dataset, Features, List, Value
    from datasets import Image as ImageFeature

    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    coco = json.loads(annotation_file.read_text(encoding="utf-8"))
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"{annotation_file} is not a COCO instances file: it has no {key!r}.")
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    objects = {image["id"]: {"bbox": [], "category": []} for image in coco["images"]}
    for annotation in coco["annotations"]:
        if annotation["category_id"] not in index_of:
            raise ValueError(
                f"{annotation_file}: annotation {annotation.get('id')} has category_id {annotation['category_id']}, "
                "which is not among the file's categories."
            )
        target = objects[annotation["image_id"]]
        target["bbox"].append([float(v) for v in annotation["bbox"]])
        target["category"].append(index_of[annotation["category_id"]])
    names = [c["name"] for c in categories]
    features = Features(
        {
            "image": ImageFeature(),
            "objects": {"bbox": List(List(Value("float32"), length=4)), "category": List(ClassLabel(names=names))},
        }
    )
    rows = [{"image": str(image_dir / image["file_name"]), "objects": objects[image["id"]]} for image in coco["images"]]
    return Dataset.from_list(rows, features=features)


def load_raw_datasets(dataset_name: str, dataset_config_name: str | None = None, cache_dir: str | None = None):
    """A `DatasetDict` from a Hub id, a local folder (Hub layout, parquet, `imagefolder` with metadata) or a parquet
    file. Hub ids need the network or a populated cache; everything else works offline."""
    from datasets import load_dataset

    path = Path(dataset_name)
    if path.is_file() and path.suffix == ".parquet":
        return load_dataset("parquet", data_files={"train": str(path)}, cache_dir=cache_dir)
    if path.is_dir() or path.is_file():
        return load_dataset(str(path), dataset_config_name, cache_dir=cache_dir)
    try:
        return load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir)
    except Exception as error:
        raise ValueError(
            f"Cannot load dataset {dataset_name!r} ({type(error).__name__}: {error}). Pass a local folder or "
            "parquet file, or check the Hub id and your connection."
        ) from error


# ----------------------------------------------------------------------------------------------------------------
# Labels


def _feature_kind(feature) -> str:
    from datasets import ClassLabel, List, Sequence, Value

    if isinstance(feature, ClassLabel):
        return "class_label"
    if isinstance(feature, dict):
        return "objects"
    if isinstance(feature, (List, Sequence)):
        inner = feature.feature
        if isinstance(inner, ClassLabel):
            return "ids"
        if isinstance(inner, Value):
            if inner.dtype == "string":
                return "names"
            if inner.dtype == "bool" or inner.dtype.startswith("float") or getattr(feature, "length", -1) not in (-1, None):
                return "multi_hot"
            return "int_list"
    raise ValueError(f"Unsupported label feature {feature!r}.")


@dataclass
class LabelEncoder:
    """Turns one sample's raw labels into a multi-hot float vector (-1 where unknown)."""

    label_format: str
    names: list[str]
    object_key: str | None = None
    allow_empty: bool = False
    index_of: dict = field(init=False)

    def __post_init__(self):
        self.index_of = {name: i for i, name in enumerate(self.names)}

    def _ids_from_names(self, values) -> list[int]:
        unknown = [value for value in values if value not in self.index_of]
        if unknown:
            raise BadSampleError(f"unknown label names {unknown} (known: {self.names})", "unknown label names")
        return [self.index_of[value] for value in values]

    def label_index(self, category) -> int:
        """The label index of one object category, given by name or by id."""
        return self.index_of[category] if isinstance(category, str) else int(category)

    def __call__(self, raw) -> np.ndarray:
        num_labels = len(self.names)
        if self.label_format == "multi_hot":
            vector = np.asarray(raw, dtype=np.float32)
            if vector.shape != (num_labels,):
                raise BadSampleError(f"multi-hot vector of length {vector.size}, expected {num_labels}", "wrong vector length")
            if not np.isin(vector, (-1.0, 0.0, 1.0)).all():
                raise BadSampleError("multi-hot values must be 0, 1 or -1 (unknown)", "invalid multi-hot value")
            if not self.allow_empty and not (vector == 1).any():
                raise BadSampleError("no positive label")
            return vector
        values = raw[self.object_key] if self.label_format == "objects" else raw
        if not isinstance(values, (list, tuple, np.ndarray)):
            values = [values]
        values = list(values)
        if values and isinstance(values[0], str):
            ids = self._ids_from_names(values)
        else:
            ids = [int(value) for value in values]
        out_of_range = [i for i in ids if not 0 <= i < num_labels]
        if out_of_range:
            raise BadSampleError(f"label ids {out_of_range} out of range 0..{num_labels - 1}", "label id out of range")
        if not ids and not self.allow_empty:
            raise BadSampleError("empty label list")
        vector = np.zeros(num_labels, dtype=np.float32)
        vector[ids] = 1.0
        return vector


def detect_label_format(
    dataset,
    label_column: str,
    label_names: list[str] | None = None,
    label_format: str = "auto",
    allow_empty: bool = False,
):
    """Work out the label format of `label_column` and the label names; returns a `LabelEncoder` (which accepts
    samples without labels when `allow_empty`)."""
    from datasets import ClassLabel

    if label_column not in dataset.features:
        raise ValueError(
            f"No column {label_column!r} in the dataset (columns: {list(dataset.features)}); pass "
            "--label_column_name."
        )
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS}, got {label_format!r}.")
    feature = dataset.features[label_column]
    kind = _feature_kind(feature)
    object_key = None
    names = list(label_names) if label_names else None
    if kind == "objects" or label_format == "objects":
        object_key = next((key for key in OBJECT_LABEL_KEYS if key in feature), None)
        if object_key is None:
            raise ValueError(
                f"Column {label_column!r} holds objects without a category list (looked for {OBJECT_LABEL_KEYS})."
            )
        inner = feature[object_key].feature if hasattr(feature[object_key], "feature") else feature[object_key]
        names = names or (inner.names if isinstance(inner, ClassLabel) else None)
        if names is None and getattr(inner, "dtype", None) == "string":
            names = sorted({v for row in dataset[label_column] for v in row[object_key]})
        kind = "objects"
    elif kind in ("ids", "class_label"):
        inner = feature.feature if kind == "ids" else feature
        names = names or inner.names
        kind = "ids"
    elif kind == "names":
        names = names or sorted({value for row in dataset[label_column] for value in row})
    elif kind == "int_list":
        kind = "multi_hot" if label_format == "multi_hot" or _looks_multi_hot(dataset[label_column][:200]) else "ids"
    if label_format not in ("auto", kind):
        kind = label_format
    if kind == "multi_hot" and names is None:
        width = len(dataset[0][label_column])
        names = [f"LABEL_{i}" for i in range(width)]
    if names is None:
        raise ValueError(
            f"Column {label_column!r} holds integer class ids without names: pass --class_names (a names file or a "
            "comma-separated list)."
        )
    return LabelEncoder(kind, list(names), object_key, allow_empty)


def resolve_label_column(dataset, requested: str | None) -> str:
    if requested:
        return requested
    for candidate in ("labels", "label", "objects", "tags"):
        if candidate in dataset.features:
            return candidate
    raise ValueError(f"Cannot tell which column holds the labels ({list(dataset.features)}): pass --label_column_name.")


def _looks_multi_hot(rows) -> bool:
    lengths = {len(row) for row in rows}
    values = {value for row in rows for value in row}
    return len(lengths) == 1 and lengths.pop() >= 3 and values <= {-1, 0, 1}


# ----------------------------------------------------------------------------------------------------------------
# Images


def open_image(value) -> Image.Image:
    """A loaded PIL image from what a `datasets` Image column holds (PIL image, path, or {bytes, path})."""
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, dict):
        image = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
    else:
        image = Image.open(value)
    image.load()  # raises on truncated or corrupt files
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any PIL mode: 16-bit scaled to 8 bits, transparency composited on white, CMYK / P / L converted."""
    image = to_eight_bit(image)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass
class PreparedSplit:
    """A split ready for training: the dataset (bad samples removed), its multi-hot labels and what was skipped."""

    dataset: object
    labels: np.ndarray  # (num_samples, num_labels)
    skipped: dict  # reason -> count


def _check_sample(encoder, raw_labels, raw_images, index, image_column, verify_images):
    """(None, multi-hot vector) for a usable sample, else (the error, the reason to count it under)."""
    try:
        vector = encoder(raw_labels)
    except BadSampleError as error:
        return error, error.reason
    except (TypeError, ValueError) as error:  # e.g. a label that is not an id
        return error, "invalid labels"
    if verify_images:
        try:
            open_image(raw_images[index][image_column])
        except (OSError, ValueError, SyntaxError) as error:  # what PIL raises on unreadable or truncated files
            return error, "unreadable image"
    return None, vector


def _describe(raw_images, index: int, image_column: str) -> str:
    raw = raw_images[index][image_column]
    path = raw.get("path") if isinstance(raw, dict) else None
    return f"sample {index}" + (f" ({path})" if path else "")


def prepare_split(
    dataset,
    encoder: LabelEncoder,
    image_column: str,
    label_column: str,
    skip_bad_samples: bool = False,
    verify_images: bool = True,
    split_name: str = "train",
) -> PreparedSplit:
    """Encode every sample's labels and (optionally) check that its image decodes.

    A bad sample raises `BadSampleError` naming it, or with `skip_bad_samples` is dropped and counted.
    """
    from datasets import Image as ImageFeature

    if image_column not in dataset.features:
        raise ValueError(
            f"No column {image_column!r} in the {split_name} split (columns: {list(dataset.features)}); pass "
            "--image_column_name."
        )
    raw_images = dataset.cast_column(image_column, ImageFeature(decode=False))
    keep, vectors, skipped = [], [], Counter()
    for index, raw_labels in enumerate(dataset[label_column]):
        problem, outcome = _check_sample(encoder, raw_labels, raw_images, index, image_column, verify_images)
        if problem is None:  # outcome: the multi-hot vector
            keep.append(index)
            vectors.append(outcome)
            continue
        if not skip_bad_samples:
            raise BadSampleError(
                f"{split_name} {_describe(raw_images, index, image_column)}: {problem}. Fix the data, or pass "
                "--skip_bad_samples to drop such samples (they are counted and reported)."
            ) from problem
        skipped[outcome] += 1  # outcome: the reason
    if skipped:
        logger.warning("%s: skipped %d bad samples: %s", split_name, sum(skipped.values()), dict(skipped))
    if not keep:
        raise ValueError(f"The {split_name} split has no usable sample.")
    if len(keep) < len(dataset):
        dataset = dataset.select(keep)
    return PreparedSplit(dataset, np.stack(vectors).astype(np.float32), dict(skipped))


# ----------------------------------------------------------------------------------------------------------------
# Transforms and batching


def build_transforms(
    image_size: int,
    mean,
    std,
    train: bool,
    randaugment: bool = True,
    randaugment_magnitude: int = 9,
    cutout_probability: float = 0.5,
    horizontal_flip: bool = False,
):
    """Square resize as the official recipe; for training RandAugment (torchvision), optional flip, and a cutout
    that really erases (torchvision's RandomErasing on the normalised tensor, filled with the mean colour)."""
    from torchvision.transforms import v2

    steps = [v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True)]
    if train and horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if train and randaugment:
        steps.append(v2.RandAugment(num_ops=2, magnitude=randaugment_magnitude))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    if train and cutout_probability > 0:
        steps.append(v2.RandomErasing(p=cutout_probability, scale=(0.02, 0.2), ratio=(0.5, 2.0), value=0))
    return v2.Compose(steps)


class MultiLabelImageDataset(torch.utils.data.Dataset):
    """`pixel_values` and multi-hot `labels` for each sample of a prepared split.

    With `augmentation_seed`, each sample's random augmentation is drawn from its own generator seeded by
    (seed, epoch, index): the same image gets the same augmentation whatever the worker count, and a run resumed
    from a checkpoint sees exactly what the uninterrupted run saw. Set `epoch` before each epoch.
    """

    def __init__(self, split: PreparedSplit, image_column: str, transform, augmentation_seed: int | None = None):
        self.dataset = split.dataset
        self.labels = torch.from_numpy(split.labels)
        self.image_column = image_column
        self.transform = transform
        self.augmentation_seed = augmentation_seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        image = to_rgb(open_image(self.dataset[index][self.image_column]))
        if self.augmentation_seed is None:
            pixels = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.augmentation_seed + self.epoch * len(self) + index)
                pixels = self.transform(image)
        return {"pixel_values": pixels, "labels": self.labels[index]}


def collate_multilabel(examples: list[dict]) -> dict:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([example["labels"] for example in examples]),
    }


def parse_label_names(spec: str | None) -> list[str] | None:
    """Label names from a names file / set name (see `labels.resolve_labels`) or a comma-separated list."""
    if not spec:
        return None
    from .labels import NAMED_LABEL_SETS, resolve_labels

    if Path(spec).is_file() or spec.lower() in NAMED_LABEL_SETS:
        return resolve_labels(spec)
    return [name.strip() for name in spec.split(",") if name.strip()]
