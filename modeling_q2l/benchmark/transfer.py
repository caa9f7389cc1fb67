"""Label transfer measured on the mosaic proxy (`scripts/benchmark_transfer.py` says how the runs are laid out):
a source model on half of the Fashion-MNIST classes, then one small fine-tuning budget spent three ways."""

import json
import time
from collections.abc import Callable
from pathlib import Path

from ..data.labels import FASHION_MNIST_LABELS
from ..evaluation.report import EvaluationReport

SOURCE_CLASSES = 5


def half_label_dataset(output: Path, embedded_dataset: str) -> Path:
    """The embedded training and validation mosaics with the labels of classes 0-4 only."""
    from datasets import ClassLabel, DatasetDict, List, load_dataset

    names = list(FASHION_MNIST_LABELS[:SOURCE_CLASSES])
    splits = load_dataset(str(embedded_dataset))
    keep = DatasetDict()
    for split, dataset in splits.items():
        dataset = dataset.remove_columns("objects").map(lambda row: {"labels": [i for i in row["labels"] if i < SOURCE_CLASSES]})
        keep[split] = dataset.cast_column("labels", List(ClassLabel(names=names)))
    for split, dataset in keep.items():
        (output / "data").mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(output / "data" / f"{split}-00000-of-00001.parquet"))
    return output


def per_subset_map(report: EvaluationReport) -> dict:
    ap = {row.label: row.AP for row in report.per_label}
    matched = [ap[name] for name in FASHION_MNIST_LABELS[:SOURCE_CLASSES]]
    new = [ap[name] for name in FASHION_MNIST_LABELS[SOURCE_CLASSES:]]
    return {
        "mAP": report.mAP,
        "mAP_matched": sum(matched) / len(matched),
        "mAP_new": sum(new) / len(new),
        "train_runtime_s": report.run.train_runtime_s,
        "trainable_parameters": report.run.trainable_parameters,
    }


def run_transfer_benchmark(args, embedded_dataset: str, train: Callable[[list[str]], EvaluationReport]) -> dict:
    """`args`: `TransferBenchmarkArguments`; `train(argv)` runs the main job and returns its report (the cli's
    `train` command). Prints the table and returns the results."""
    output = Path(args.output_dir)
    source_data = half_label_dataset(output / "half-labels", embedded_dataset)
    common = ["--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none"]
    started = time.time()
    source_report = train([
        "--dataset_name", str(source_data), "--output_dir", str(output / "source"), "--allow_empty_labels", "true",
        "--num_train_epochs", str(args.source_epochs), *common,
    ])  # fmt: skip
    finetune = [
        "--dataset_name", str(embedded_dataset), "--max_train_samples", str(args.finetune_samples),
        "--num_train_epochs", str(args.finetune_epochs), *common,
    ]  # fmt: skip
    runs = {
        "from the half-label model (labels transferred)": ["--model_name_or_path", str(output / "source")],
        "from the ImageNet backbone (new head)": [],
        "from the half-label model, head only (--freeze_backbone)": ["--model_name_or_path", str(output / "source"), "--freeze_backbone", "true"],
    }
    results = {"source (5 labels, 4,000 mosaics)": {"mAP": source_report.mAP, "train_runtime_s": source_report.run.train_runtime_s}}
    for index, (name, extra) in enumerate(runs.items()):
        report = train([*finetune, "--output_dir", str(output / f"finetune-{index}"), *extra])
        results[name] = per_subset_map(report)
    results["total_runtime_s"] = round(time.time() - started, 1)
    (output / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| run | mAP (10 labels) | mAP, 5 matched labels | mAP, 5 new labels | training time (s) | trainable parameters |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in results.items():
        if isinstance(row, dict) and "mAP_new" in row:
            print(
                f"| {name} | {100 * row['mAP']:.2f} | {100 * row['mAP_matched']:.2f} | {100 * row['mAP_new']:.2f} | "
                f"{row['train_runtime_s']} | {row['trainable_parameters']:,} |"
            )
    print(f"\nsource model: mAP {100 * source_report.mAP:.2f} on its 5 labels; {results['total_runtime_s']} s in all")
    return results
