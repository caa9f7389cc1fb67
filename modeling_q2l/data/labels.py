"""Labels: the label sets Query2Label is evaluated on, and the label formats of multi-label datasets.

Label formats recognised (`detect_label_format`), each converted to a multi-hot vector by a `LabelEncoder`:
- `ids`: a list of class ids (`List(ClassLabel)`, or integers with `label_names` given); a single `ClassLabel`;
- `names`: a list of class names (strings);
- `multi_hot`: a fixed-length vector of 0/1 (-1 for unknown);
- `objects`: detection-style annotations, a dict with `category` / `categories` / `label` / `labels` lists
  (COCO, cppe-5), of ids or names; a COCO instances JSON (`loading.load_coco_instances`) becomes this format.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

VOC_LABELS = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

NAMED_LABEL_SETS = {"coco": COCO_LABELS, "voc": VOC_LABELS, "fashion-mnist": FASHION_MNIST_LABELS}


LABEL_FORMATS = ("auto", "ids", "names", "multi_hot", "objects")
OBJECT_LABEL_KEYS = ("category", "categories", "label", "labels", "category_id")


def object_category_key(objects) -> str | None:
    """The key of an `objects` annotation (or feature) that holds each object's category, or None."""
    return next((key for key in OBJECT_LABEL_KEYS if key in objects), None)


class BadSampleError(ValueError):
    """A sample whose image or labels cannot be used; `reason` is the short category counted when skipping."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def resolve_labels(spec: str) -> list[str]:
    """Label names from a set name (`coco`, `voc`, `fashion-mnist`) or a file (a JSON list or one name per line)."""
    if spec.lower() in NAMED_LABEL_SETS:
        return list(NAMED_LABEL_SETS[spec.lower()])
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"Unknown label set {spec!r}: use one of {sorted(NAMED_LABEL_SETS)} or the path of a names file "
            "(a JSON list, or one name per line)."
        )
    text = path.read_text(encoding="utf-8")
    names = json.loads(text) if text.lstrip().startswith("[") else [line.strip() for line in text.splitlines()]
    names = [str(name) for name in names if str(name)]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: label names must be unique.")
    return names


def parse_label_names(spec: str | None) -> list[str] | None:
    """Label names from a names file / set name (see `labels.resolve_labels`) or a comma-separated list."""
    if not spec:
        return None
    if Path(spec).is_file() or spec.lower() in NAMED_LABEL_SETS:
        return resolve_labels(spec)
    return [name.strip() for name in spec.split(",") if name.strip()]


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
        object_key = object_category_key(feature)
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
