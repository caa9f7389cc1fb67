"""Prediction on image files with a saved model (the logic behind `scripts/predict.py`)."""

import csv
import io
import json
from pathlib import Path

import torch
from PIL import Image

from ..data.loading import to_rgb


def load_classifier(model_path: str):
    """Model (eval mode) and image processor of a saved folder or Hub id."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_path, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=True)
    return model, processor


def read_thresholds(path: str | None, label_names: list[str], default: float) -> torch.Tensor:
    """Per-label thresholds from a JSON object {label: threshold}; labels it omits use `default`."""
    thresholds = torch.full((len(label_names),), float(default))
    if path is None:
        return thresholds
    given = json.loads(Path(path).read_text(encoding="utf-8"))
    unknown = sorted(set(given) - set(label_names))
    if unknown:
        raise ValueError(f"{path} names labels the model does not have: {unknown} (the model's: {label_names}).")
    for name, value in given.items():
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{path}: threshold of {name!r} must lie in [0, 1], got {value}.")
        thresholds[label_names.index(name)] = float(value)
    return thresholds


def open_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Cannot read image {path}: {error}.") from error


@torch.no_grad()
def predict_files(model, processor, paths, thresholds: torch.Tensor, batch_size: int = 16) -> list[dict]:
    """For each image: the labels whose probability reaches their threshold, with scores, best first."""
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        images = [open_rgb(path) for path in chunk]
        probabilities = torch.sigmoid(model(**processor(images, return_tensors="pt")).logits.float())
        for path, row in zip(chunk, probabilities):
            order = torch.argsort(row, descending=True)
            kept = [{"label": names[i], "score": round(float(row[i]), 6)} for i in order.tolist() if row[i] >= thresholds[i]]
            results.append({"image": str(path), "labels": kept})
    return results


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
