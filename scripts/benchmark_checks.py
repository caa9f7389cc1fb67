#!/usr/bin/env python
"""Throughput of the sample checks that run before training (label encoding and one decode of every image), through
`datasets.map`: one process, `--num_proc` processes, and a second run served from the cache.

    python scripts/benchmark_checks.py [--copies 5] [--num_proc 2]

The embedded training mosaics (4,000 JPEGs of 128 px), repeated `--copies` times into one parquet file.
"""

from pathlib import Path

from modeling_q2l.cli.commands import benchmark_checks, run_script

# the repository's embedded dataset: the package itself never assumes a data folder
EMBEDDED_DATASET = str(Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic")


def main(argv=None):
    return benchmark_checks(argv, dataset=EMBEDDED_DATASET)


if __name__ == "__main__":
    run_script(main)
