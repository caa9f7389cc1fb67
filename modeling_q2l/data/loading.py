"""Reading multi-label data as it is stored: Hub ids, local folders, parquet files and COCO instances files, and
images in any of the forms a dataset or a user hands over. What is done with it (named splits, labels encoded, every
sample checked) is `data.splits`."""

import io
import json
import logging
import os
from pathlib import Path

from PIL import Image

from ..model.image_processing_query2label import to_rgb_input

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
