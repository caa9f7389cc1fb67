"""Prediction on image files and folders with a saved model (the logic behind `scripts/predict.py`)."""

import csv
import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from ..data.loading import default_loader_workers, open_image
from ..saved_models import saved_model_errors

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


INFERENCE_DTYPES = ("float32", "bfloat16", "float16", "int8")


def load_classifier(model_path: str, device: str | None = None, dtype: str = "float32"):
    """Model (on `device`, in `dtype`, prepared for inference: `optimize_for_inference()`) and image processor of a
    saved folder or Hub id. bfloat16 halves the memory and, on CPUs with AMX, is 3 to 4 times as fast as float32 at
    Q2L-R101-448 (BENCHMARKS.md); without AMX it is likely slower, and a log line says so. int8 runs the folder's
    int8 model (`scripts/quantize.py`) on the CPU: `model.int8.onnx` with ONNX Runtime or `model.int8.pt2` compiled by
    PyTorch at the first batch of each size."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(INFERENCE_DTYPES)}, got {dtype!r}.")
    if dtype == "int8":
        from .exported_models import load_int8_classifier

        with saved_model_errors(model_path):
            return load_int8_classifier(model_path)
    with saved_model_errors(model_path):
        model = AutoModelForImageClassification.from_pretrained(model_path, trust_remote_code=True, dtype=getattr(torch, dtype)).eval()
        processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=True)
    model = model.to(device or default_device())
    return (model.optimize_for_inference() if hasattr(model, "optimize_for_inference") else model), processor


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


def _decoded(name: str, value) -> Image.Image:
    """`open_image(value)`, or ValueError naming the image (`name`) and the reason."""
    try:
        return open_image(value)
    except Image.DecompressionBombError as error:  # PIL refuses images of over ~179 million pixels
        raise ValueError(f"{name}: too large to open safely ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:  # what PIL raises on unreadable or truncated files
        raise ValueError(f"{name}: cannot read the image ({error})") from error


def open_for_prediction(path: Path) -> Image.Image:
    """A decoded image, or ValueError naming the file and the reason."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return _decoded(str(path), str(path))


def file_sources(paths) -> list[tuple[str, Callable[[], Image.Image]]]:
    """(name, opener) of each image file: the opener raises ValueError naming an unreadable file."""
    return [(str(path), partial(open_for_prediction, Path(path))) for path in paths]


def _open_split_row(raw, image_column: str, split_name: str, index: int) -> Image.Image:
    return _decoded(f"{split_name}[{index}]", raw[index][image_column])


def split_sources(dataset, image_column: str, split_name: str) -> list[tuple[str, Callable[[], Image.Image]]]:
    """(name, opener) of each row of a dataset split, named `split[index]`; images are decoded as they are read."""
    from datasets import Image as ImageFeature

    if image_column not in dataset.features:
        raise ValueError(f"No column {image_column!r} in the {split_name} split (columns: {list(dataset.features)}); pass --image_column_name.")
    raw = dataset.cast_column(image_column, ImageFeature(decode=False))
    return [(f"{split_name}[{index}]", partial(_open_split_row, raw, image_column, split_name, index)) for index in range(len(raw))]


class _DecodedImages(torch.utils.data.Dataset):
    """Each source decoded (in a DataLoader worker when there are workers): (name, image or None, error or None)."""

    def __init__(self, sources):
        self.sources = sources

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int):
        name, opener = self.sources[index]
        try:
            return name, opener(), None
        except ValueError as error:
            return name, None, str(error)


class _ResizedBatch:
    """The collate function: one processor call for the batch's readable images (in the worker, too)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, items):
        images = [image for _, image, _ in items if image is not None]
        pixels = self.processor(images, return_tensors="pt")["pixel_values"] if images else None
        return [(name, image is not None, error) for name, image, error in items], pixels


def _one_thread_per_worker(_):
    torch.set_num_threads(1)  # the model's threads keep the cores; a worker only decodes and resizes



@torch.no_grad()
def iter_predictions(model, processor, sources, thresholds: torch.Tensor, batch_size: int = 16, num_workers: int = 0, progress: bool = False):
    """Yield, for each source in order, {"image": name, "labels": [...]} with the labels whose probability reaches
    their threshold (best first), or {"image": name, "error": why} for an unreadable one. Images are decoded batch by
    batch (by `num_workers` processes ahead of the model), so memory does not grow with the number of images."""
    from tqdm.auto import tqdm

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(
        _DecodedImages(sources),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_ResizedBatch(processor),
        worker_init_fn=_one_thread_per_worker if num_workers else None,
        prefetch_factor=2 if num_workers else None,
    )
    with tqdm(total=len(sources), unit="image", desc="Predicting", disable=not progress) as bar:
        for batch, pixels in loader:
            probabilities = iter(())
            if pixels is not None:
                logits = model(pixel_values=pixels.to(device, model.dtype)).logits
                probabilities = iter(torch.sigmoid(logits.float()).cpu())
            for name, readable, error in batch:
                if not readable:
                    yield {"image": name, "error": error}
                    continue
                row = next(probabilities)
                order = torch.argsort(row, descending=True).tolist()
                yield {"image": name, "labels": [{"label": names[i], "score": round(float(row[i]), 6)} for i in order if row[i] >= thresholds[i]]}
            bar.update(len(batch))


class StreamedOutput:
    """Predictions written as they come, as a JSON array or CSV rows: nothing is held until the end."""

    def __init__(self, stream, output_format: str):
        if output_format not in ("json", "csv"):
            raise ValueError(f"--format must be json or csv, got {output_format!r}.")
        self.stream, self.format, self.count = stream, output_format, 0
        if output_format == "csv":
            self.writer = csv.writer(stream, lineterminator="\n")
            self.writer.writerow(["image", "label", "score"])

    def write(self, result: dict) -> None:
        if self.format == "json":
            text = json.dumps(result, indent=2)
            self.stream.write(("[\n" if self.count == 0 else ",\n") + "  " + text.replace("\n", "\n  "))
        else:
            for item in result["labels"]:
                self.writer.writerow([result["image"], item["label"], item["score"]])
        self.count += 1

    def close(self) -> None:
        if self.format == "json":
            self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        self.stream.flush()


def run_prediction(args, inputs: list[str], stdout, stderr, data_args=None) -> int:
    """Predict every image of `inputs` (files and folders), or with `data_args.dataset_name` every image of the split
    `data_args` names (`--eval_split_name`, alias `--split`; read through `data.splits.load_split`); write each answer
    to `stdout` as it comes and each unreadable image to `stderr`. Returns the exit status: 1 when any image could not
    be predicted."""
    output = StreamedOutput(stdout, args.format)
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
    model, processor = load_classifier(args.model, args.device, args.dtype)
    thresholds = label_thresholds(model.config, args.threshold, args.thresholds)
    workers = default_loader_workers() if getattr(args, "num_workers", None) is None else args.num_workers
    failures = 0
    for result in iter_predictions(model, processor, sources, thresholds, args.batch_size, workers, progress=True):
        if "error" in result:
            stderr.write(f"error: {result['error']}\n")
            failures += 1
        else:
            output.write(result)
    output.close()
    if failures:
        stderr.write(f"{failures} of {len(sources)} images could not be predicted.\n")
    return 1 if failures else 0
