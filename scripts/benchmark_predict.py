#!/usr/bin/env python
"""Prediction at scale: `predict.py`'s path over a folder of image files (default 10,000 JPEGs made from the embedded
validation mosaics) against the bare model on pre-decoded tensors, at the same batch size, with 0, 1 and 2 decoding
workers; prints the machine, images/s, the ratio and the peak memory.

    python scripts/benchmark_predict.py [--model FOLDER] [--images 10000] [--batch_size 16] [--workers 0 1 2]
"""

from pathlib import Path

from modeling_q2l.cli.commands import benchmark_prediction, run_script

# the repository's embedded dataset: the package itself never assumes a data folder
EMBEDDED_DATASET = str(Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic")


def main(argv=None):
    return benchmark_prediction(argv, dataset=EMBEDDED_DATASET)


if __name__ == "__main__":
    run_script(main)
