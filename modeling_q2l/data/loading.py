"""Loading multi-label datasets: Hub ids, local folders, parquet files and COCO instances files, and the check of
every sample before training.

Bad samples (unreadable or truncated images, ids out of range, unknown names, empty label lists) stop the run
with an error naming the sample, unless `skip_bad_samples` is set: then they are dropped, counted and reported.
"""

import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..model.image_processing_query2label import to_rgb_input
from .labels import BadSampleError, LabelEncoder

logger = logging.getLogger(__name__)


def default_loader_workers() -> int:
    """Data-loading processes beside a training or prediction process, which keeps the cores for its own threads: one
    per two cores (decoding and augmenting the next batch meanwhile costs the model less than it saves), at most 4."""
    return min(4, (os.cpu_count() or 1) // 2)


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
    """A `DatasetDict` from a Hub id, a local folder (Hub layout, parquet, `imagefolder` with metadata, or a folder
    written by `save_to_disk`) or a parquet file. Hub ids need the network or a populated cache; everything else works
    offline. A `Dataset` saved on its own is the `train` split."""
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    path = Path(dataset_name)
    if path.is_file() and path.suffix == ".parquet":
        return load_dataset("parquet", data_files={"train": str(path)}, cache_dir=cache_dir)
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        saved = load_from_disk(str(path))
        return DatasetDict({"train": saved}) if isinstance(saved, Dataset) else saved
    if path.is_dir() or path.is_file():
        return load_dataset(str(path), dataset_config_name, cache_dir=cache_dir)
    try:
        return load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir)
    except Exception as error:
        raise ValueError(
            f"Cannot load dataset {dataset_name!r} ({type(error).__name__}: {error}). Pass a local folder or "
            "parquet file, or check the Hub id and your connection."
        ) from error


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
    """RGB as the image processor makes it (`to_rgb_input`): 16-bit scaled to 8 bits, transparency composited on
    white, any other mode converted."""
    image = to_rgb_input(image)
    if not isinstance(image, Image.Image):  # a (3, height, width) uint8 tensor
        return Image.fromarray(image.permute(1, 2, 0).numpy())
    return image


@dataclass
class PreparedSplit:
    """A split ready for training: the dataset (bad samples removed), its multi-hot labels and what was skipped."""

    dataset: object
    labels: np.ndarray  # (num_samples, num_labels)
    skipped: dict  # reason -> count


def check_sample(encoder: LabelEncoder, raw_labels, raw_image, verify_images: bool = True):
    """(multi-hot vector, None, None) for a usable sample, else (None, the error message, the reason to count)."""
    try:
        vector = encoder(raw_labels)
    except BadSampleError as error:
        return None, str(error), error.reason
    except (TypeError, ValueError, KeyError) as error:  # e.g. a label that is not an id
        return None, f"{type(error).__name__}: {error}", "invalid labels"
    if verify_images:
        try:
            open_image(raw_image)
        except (OSError, ValueError, SyntaxError) as error:  # what PIL raises on unreadable or truncated files
            return None, f"unreadable image ({error})", "unreadable image"
    return vector, None, None


class _BatchChecker:
    """`datasets.map` function (batched): each sample's multi-hot vector, or why it cannot be used. A class, not a
    closure, so that `num_proc` workers can pickle it and `datasets` can fingerprint it for its cache."""

    def __init__(self, encoder: LabelEncoder, image_column: str, label_column: str, verify_images: bool):
        self.encoder, self.image_column, self.label_column = encoder, image_column, label_column
        self.verify_images = verify_images

    def __call__(self, batch: dict) -> dict:
        width = len(self.encoder.names)
        vectors, problems, reasons = [], [], []
        for raw_labels, raw_image in zip(batch[self.label_column], batch[self.image_column]):
            vector, problem, reason = check_sample(self.encoder, raw_labels, raw_image, self.verify_images)
            vectors.append(vector.tolist() if vector is not None else [0.0] * width)
            problems.append(problem)
            reasons.append(reason)
        return {"_q2l_labels": vectors, "_q2l_problem": problems, "_q2l_reason": reasons}


def prepare_split(
    dataset,
    encoder: LabelEncoder,
    image_column: str,
    label_column: str,
    skip_bad_samples: bool = False,
    verify_images: bool = True,
    split_name: str = "train",
    num_proc: int | None = None,
) -> PreparedSplit:
    """Encode every sample's labels and (optionally) check that its image decodes.

    Runs through `datasets.map`: `num_proc` processes, a progress bar, and for datasets read from files a cache, so a
    second run over the same data skips the work. A bad sample raises `BadSampleError` naming it, or with
    `skip_bad_samples` is dropped and counted.
    """
    from datasets import Image as ImageFeature
    from datasets import List, Value

    if image_column not in dataset.features:
        raise ValueError(
            f"No column {image_column!r} in the {split_name} split (columns: {list(dataset.features)}); pass "
            "--image_column_name."
        )
    raw = dataset.cast_column(image_column, ImageFeature(decode=False))
    features = raw.features.copy()
    features.update(
        {"_q2l_labels": List(Value("float32")), "_q2l_problem": Value("string"), "_q2l_reason": Value("string")}
    )
    checked = raw.map(
        _BatchChecker(encoder, image_column, label_column, verify_images),
        batched=True,
        batch_size=256,
        num_proc=num_proc if num_proc and num_proc > 1 and len(raw) >= 2 * num_proc else None,
        features=features,
        desc=f"Checking the {split_name} split" + (" (labels and images)" if verify_images else " (labels)"),
    )
    problems = checked["_q2l_problem"]
    bad = [index for index, problem in enumerate(problems) if problem is not None]
    if bad and not skip_bad_samples:
        index = bad[0]
        path = raw[index][image_column].get("path") if isinstance(raw[index][image_column], dict) else None
        raise BadSampleError(
            f"{split_name} sample {index}" + (f" ({path})" if path else "") + f": {problems[index]}. Fix the data, or "
            "pass --skip_bad_samples to drop such samples (they are counted and reported)."
            + (f" {len(bad) - 1} more samples are bad." if len(bad) > 1 else "")
        )
    skipped = Counter(checked["_q2l_reason"][index] for index in bad)
    if skipped:
        logger.warning("%s: skipped %d bad samples: %s", split_name, sum(skipped.values()), dict(skipped))
    if len(bad) == len(dataset):
        raise ValueError(f"The {split_name} split has no usable sample.")
    keep = np.setdiff1d(np.arange(len(dataset)), np.asarray(bad, dtype=np.int64))
    labels = np.asarray(checked.select_columns("_q2l_labels").with_format("numpy")["_q2l_labels"], dtype=np.float32)
    labels = labels.reshape(len(dataset), len(encoder.names))[keep]
    if bad:
        dataset = dataset.select(keep)
    return PreparedSplit(dataset, labels, dict(skipped))
