"""Prediction at scale (`scripts/benchmark_predict.py`): `iter_predictions` over a folder of image files, against
the bare model on tensors decoded and resized beforehand, at the same batch size; with the peak memory of each."""

import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..data.loading import load_raw_datasets, open_image
from ..evaluation.predict import expand_inputs, file_sources, iter_predictions, load_classifier
from ..model import Query2LabelForMultiLabelClassification
from ..zoo.backbone_weights import image_processor_for_backbone
from .machine import machine_description
from .suite import demo_config


def model_and_processor(model_path: str | None = None, threads: int | None = None):
    """A saved model on the CPU, or the main job's model (`suite.demo_config`) with random weights."""
    if threads:
        torch.set_num_threads(threads)
    if model_path:
        return load_classifier(model_path, "cpu")
    config = demo_config()
    return Query2LabelForMultiLabelClassification(config).eval(), image_processor_for_backbone(config)


def validation_images(dataset: str, count: int = 200) -> list:
    validation = load_raw_datasets(dataset)["validation"]
    return [open_image(validation[index]["image"]).convert("RGB") for index in range(min(count, len(validation)))]


def write_image_folder(folder: Path, images, count: int) -> list[Path]:
    """`count` JPEG files cycling through `images` (PIL)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index:06d}.jpg"
        images[index % len(images)].save(path, quality=90)
        paths.append(path)
    return paths


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_model_throughput(model, processor, images, batch_size: int, batches: int) -> float:
    """Images per second of the model alone on pre-decoded, pre-resized tensors."""
    pixels = processor(images[:batch_size], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        model(pixel_values=pixels)  # warm-up
        start = time.perf_counter()
        for _ in range(batches):
            model(pixel_values=pixels)
    return batches * batch_size / (time.perf_counter() - start)


def prediction_throughput(model, processor, folder: Path, batch_size: int, num_workers: int) -> tuple[float, int]:
    """(images per second, images answered) of the whole path: list the folder, decode, resize, predict."""
    thresholds = torch.full((model.config.num_labels,), 0.5)
    start = time.perf_counter()
    answered = sum(1 for result in iter_predictions(model, processor, file_sources(expand_inputs([str(folder)])), thresholds, batch_size, num_workers) if "labels" in result)
    return answered / (time.perf_counter() - start), answered


def prediction_table(rows: dict, batch_size: int) -> str:
    lines = [f"{machine_description()}; torch threads {torch.get_num_threads()}; batch {batch_size}", ""]
    lines += ["| run | images/s | ratio to the bare model | peak RSS (MB) |", "| --- | --- | --- | --- |"]
    for name, row in rows.items():
        peak = f"{row['peak_rss_mb']:.0f}" if "peak_rss_mb" in row else ""
        lines.append(f"| {name} | {row['images_per_s']:.1f} | {row['ratio_to_bare_model']:.2f} | {peak} |")
    return "\n".join(lines)


def run_prediction_benchmark(model, processor, images, count: int, batch_size: int, workers: list[int], work_dir: str | None = None) -> dict:
    """The table's rows: the bare model, then prediction from files with each number of workers."""
    folder = Path(tempfile.mkdtemp(dir=work_dir)) / "images"
    try:
        write_image_folder(folder, images, count)
        rows = {"bare model (pre-decoded tensors)": {"images_per_s": bare_model_throughput(model, processor, images, batch_size, max(1, count // batch_size // 4))}}
        for num_workers in workers:
            speed, answered = prediction_throughput(model, processor, folder, batch_size, num_workers)
            rows[f"predict from {count:,} files, {num_workers} decoding workers"] = {"images_per_s": speed, "answered": answered, "peak_rss_mb": peak_rss_mb()}
        bare = rows["bare model (pre-decoded tensors)"]["images_per_s"]
        for row in rows.values():
            row["ratio_to_bare_model"] = row["images_per_s"] / bare
        return rows
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
