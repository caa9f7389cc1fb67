"""Prediction on image files and folders with a saved model (the logic behind `scripts/predict.py`)."""

import csv
import io
import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from ..data.loading import open_image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_classifier(model_path: str, device: str | None = None):
    """Model (eval mode, on `device`) and image processor of a saved folder or Hub id."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_path, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=True)
    return model.to(device or default_device()), processor


def label_thresholds(config, threshold: float | None = None, thresholds_file: str | None = None) -> torch.Tensor:
    """Per-label thresholds: `threshold` for every label if given, else the config's fitted ones (0.5 without);
    then the labels a JSON object {label: threshold} names."""
    names = [config.id2label[i] for i in range(config.num_labels)]
    if threshold is not None:
        values = torch.full((len(names),), float(threshold))
    elif getattr(config, "label_thresholds", None) is not None:
        values = torch.tensor(config.label_thresholds, dtype=torch.float32)
    else:
        values = torch.full((len(names),), 0.5)
    if thresholds_file is None:
        return values
    given = json.loads(Path(thresholds_file).read_text(encoding="utf-8"))
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"{thresholds_file} names labels the model does not have: {unknown} (the model's: {names}).")
    for name, value in given.items():
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{thresholds_file}: threshold of {name!r} must lie in [0, 1], got {value}.")
        values[names.index(name)] = float(value)
    return values


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, and the images inside each folder (sorted, recursively)."""
    paths = []
    for value in inputs:
        path = Path(value)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(path)
    return paths


def open_for_prediction(path: Path) -> Image.Image:
    """A decoded image, or ValueError naming the file and the reason."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        return open_image(str(path))
    except Image.DecompressionBombError as error:  # PIL refuses images of over ~179 million pixels
        raise ValueError(f"{path}: too large to open safely ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:  # what PIL raises on unreadable or truncated files
        raise ValueError(f"{path}: cannot read the image ({error})") from error


def file_sources(paths) -> list[tuple[str, Callable[[], Image.Image]]]:
    """(name, opener) of each image file: the opener raises ValueError naming an unreadable file."""
    return [(str(path), partial(open_for_prediction, Path(path))) for path in paths]


def split_sources(dataset, image_column: str, split_name: str) -> list[tuple[str, Callable[[], Image.Image]]]:
    """(name, opener) of each row of a dataset split, named `split[index]`; images are decoded as they are read."""
    from datasets import Image as ImageFeature

    if image_column not in dataset.features:
        raise ValueError(f"No column {image_column!r} in the {split_name} split (columns: {list(dataset.features)}); pass --image_column_name.")
    raw = dataset.cast_column(image_column, ImageFeature(decode=False))

    def opener(index: int) -> Image.Image:
        try:
            return open_image(raw[index][image_column])
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{split_name}[{index}]: cannot read the image ({error})") from error

    return [(f"{split_name}[{index}]", partial(opener, index)) for index in range(len(raw))]


@torch.no_grad()
def predict_images(model, processor, sources, thresholds: torch.Tensor, batch_size: int = 16, progress: bool = False):
    """For each readable image of `sources` ((name, opener) pairs), the labels whose probability reaches their
    threshold, with scores, best first.

    Returns (results, failures): failures are messages naming each unreadable image and why; the others are still
    predicted."""
    from tqdm.auto import tqdm

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    device = next(model.parameters()).device
    results, failures = [], []
    with tqdm(total=len(sources), unit="image", desc="Predicting", disable=not progress) as bar:
        for start in range(0, len(sources), batch_size):
            chunk, images = [], []
            for name, opener in sources[start : start + batch_size]:
                try:
                    images.append(opener())
                    chunk.append(name)
                except ValueError as error:
                    failures.append(str(error))
            if images:
                pixels = processor(images, return_tensors="pt")["pixel_values"].to(device, model.dtype)
                probabilities = torch.sigmoid(model(pixel_values=pixels).logits.float()).cpu()
                for name, row in zip(chunk, probabilities):
                    order = torch.argsort(row, descending=True).tolist()
                    kept = [{"label": names[i], "score": round(float(row[i]), 6)} for i in order if row[i] >= thresholds[i]]
                    results.append({"image": name, "labels": kept})
            bar.update(len(sources[start : start + batch_size]))
    return results, failures


def predict_files(model, processor, paths, thresholds: torch.Tensor, batch_size: int = 16, progress: bool = False):
    """`predict_images` of image files."""
    return predict_images(model, processor, file_sources(paths), thresholds, batch_size, progress)


def format_predictions(results: list[dict], output_format: str) -> str:
    if output_format == "json":
        return json.dumps(results, indent=2)
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["image", "label", "score"])
        for result in results:
            for item in result["labels"]:
                writer.writerow([result["image"], item["label"], item["score"]])
        return buffer.getvalue()
    raise ValueError(f"--format must be json or csv, got {output_format!r}.")


def run_prediction(args, inputs: list[str], stdout, stderr, data_args=None) -> int:
    """Predict every image of `inputs` (files and folders), or with `data_args.dataset_name` every image of the split
    `data_args` names (`--eval_split_name`, alias `--split`; read through `data.splits.load_split`); write the answers to
    `stdout` and each unreadable image to `stderr`. Returns the exit status: 1 when any image could not be predicted."""
    if args.format not in ("json", "csv"):
        raise ValueError(f"--format must be json or csv, got {args.format!r}.")
    from_dataset = data_args is not None and bool(data_args.dataset_name or data_args.coco_annotations or data_args.coco_eval_annotations)
    if from_dataset and inputs:
        raise ValueError(f"Give image files and folders or --dataset_name, not both (got {inputs} and {data_args.dataset_name}).")
    if from_dataset:
        from ..data.splits import load_split

        sources = split_sources(load_split(data_args), data_args.image_column_name, data_args.eval_split_name)
    else:
        if not inputs:
            raise ValueError("Give at least one image file or folder after the options, or --dataset_name.")
        sources = file_sources(expand_inputs(inputs))
    if not sources:
        raise ValueError(f"No images in {inputs or data_args.dataset_name}.")
    model, processor = load_classifier(args.model, args.device)
    thresholds = label_thresholds(model.config, args.threshold, args.thresholds)
    results, failures = predict_images(model, processor, sources, thresholds, args.batch_size, progress=True)
    stdout.write(format_predictions(results, args.format) + "\n")
    for failure in failures:
        stderr.write(f"error: {failure}\n")
    if failures:
        stderr.write(f"{len(failures)} of {len(sources)} images could not be predicted.\n")
    return 1 if failures else 0
