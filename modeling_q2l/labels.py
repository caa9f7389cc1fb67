"""Label sets of the datasets Query2Label is evaluated on, in the official class-index order."""

import json
from pathlib import Path

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
