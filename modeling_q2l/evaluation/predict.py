"""Prediction on image files and folders with a saved model (the logic behind `scripts/predict.py`)."""

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..data.loading import open_image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    threshold: float | None = field(
        default=None, metadata={"help": "One probability threshold for every label (default: the model's per-label thresholds, else 0.5)."}
    )
    thresholds: str | None = field(default=None, metadata={"help": "JSON file {label: threshold} overriding single labels."})
    format: str = field(default="json", metadata={"help": "json or csv."})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: CUDA when present)."})


def parse_arguments_and_inputs(dataclass_type, argv=None):
    """Options into `dataclass_type` (HfArgumentParser) and the image files and folders given after them; a missing
    input or an unknown option stops the script with a message saying so."""
    from transformers import HfArgumentParser

    args, inputs = HfArgumentParser(dataclass_type).parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if not inputs:
        raise SystemExit("Give at least one image file or folder after the options.")
    unknown_options = [value for value in inputs if value.startswith("--")]
    if unknown_options:
        raise SystemExit(f"Unknown options: {unknown_options}.")
    return args, inputs


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
    except (OSError, SyntaxError, ValueError) as error:  # what PIL raises on unreadable or truncated files
        raise ValueError(f"{path}: cannot read the image ({error})") from error


@torch.no_grad()
def predict_files(model, processor, paths, thresholds: torch.Tensor, batch_size: int = 16, progress: bool = False):
    """For each readable image, the labels whose probability reaches their threshold, with scores, best first.

    Returns (results, failures): failures are messages naming each unreadable file and why; the other files are
    still predicted."""
    from tqdm.auto import tqdm

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    device = next(model.parameters()).device
    results, failures = [], []
    with tqdm(total=len(paths), unit="image", desc="Predicting", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            chunk, images = [], []
            for path in paths[start : start + batch_size]:
                try:
                    images.append(open_for_prediction(Path(path)))
                    chunk.append(path)
                except ValueError as error:
                    failures.append(str(error))
            if images:
                pixels = processor(images, return_tensors="pt")["pixel_values"].to(device, model.dtype)
                probabilities = torch.sigmoid(model(pixel_values=pixels).logits.float()).cpu()
                for path, row in zip(chunk, probabilities):
                    order = torch.argsort(row, descending=True).tolist()
                    kept = [{"label": names[i], "score": round(float(row[i]), 6)} for i in order if row[i] >= thresholds[i]]
                    results.append({"image": str(path), "labels": kept})
            bar.update(len(paths[start : start + batch_size]))
    return results, failures


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


def run_prediction(args: PredictArguments, inputs: list[str], stdout, stderr) -> int:
    """Predict every image of `inputs`; write the answers to `stdout` and each unreadable file to `stderr`.
    Returns the exit status: 1 when any file could not be predicted."""
    if args.format not in ("json", "csv"):
        raise ValueError(f"--format must be json or csv, got {args.format!r}.")
    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"No image files in {inputs}.")
    model, processor = load_classifier(args.model, args.device)
    thresholds = label_thresholds(model.config, args.threshold, args.thresholds)
    results, failures = predict_files(model, processor, paths, thresholds, args.batch_size, progress=True)
    stdout.write(format_predictions(results, args.format) + "\n")
    for failure in failures:
        stderr.write(f"error: {failure}\n")
    if failures:
        stderr.write(f"{len(failures)} of {len(paths)} images could not be predicted.\n")
    return 1 if failures else 0
