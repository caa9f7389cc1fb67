"""Throughput of the sample checks that run before training (`scripts/benchmark_checks.py`): one process, several,
and a second run served from `datasets`' cache."""

import tempfile
import time
from pathlib import Path

from ..data.labels import detect_label_format
from ..data.loading import load_raw_datasets
from ..data.splits import prepare_split


def timed_check(parquet: Path, num_proc: int | None, cache_dir: str) -> tuple[float, int]:
    dataset = load_raw_datasets(str(parquet), cache_dir=cache_dir)["train"]
    encoder = detect_label_format(dataset, "labels")
    start = time.perf_counter()
    split = prepare_split(dataset, encoder, "image", "labels", num_proc=num_proc)
    return time.perf_counter() - start, len(split.labels)


def run_checks_benchmark(args, dataset: str) -> list[tuple[str, int, float]]:
    """`args`: `ChecksBenchmarkArguments`; `dataset`: the mosaic folder whose training split is repeated. Prints the
    table and returns its rows (name, images, seconds)."""
    from datasets import concatenate_datasets

    with tempfile.TemporaryDirectory() as work:
        train = load_raw_datasets(dataset, cache_dir=f"{work}/source")["train"]
        parquet = Path(work) / "train.parquet"
        concatenate_datasets([train] * args.copies).to_parquet(str(parquet))
        rows = []
        for name, num_proc, cache in [
            ("1 process, first run", None, f"{work}/cache-a"),
            (f"{args.num_proc} processes, first run", args.num_proc, f"{work}/cache-b"),
            (f"{args.num_proc} processes, second run (cached)", args.num_proc, f"{work}/cache-b"),
        ]:
            seconds, count = timed_check(parquet, num_proc, cache)
            rows.append((name, count, seconds))
    print("\n| run | images | seconds | images/s |\n| --- | --- | --- | --- |")
    for name, count, seconds in rows:
        print(f"| {name} | {count:,} | {seconds:.2f} | {count / seconds:,.0f} |")
    return rows
