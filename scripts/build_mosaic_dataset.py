#!/usr/bin/env python
"""Build a multi-label mosaic dataset from a single-label image dataset.

Default: the embedded Fashion-MNIST mosaic set, from Fashion-MNIST's TRAIN split only (its test split stays
held out), written in the Hub's layout (parquet files plus a dataset card):

    python scripts/build_mosaic_dataset.py --output_dir data/fashion-mnist-mosaic

Any single-label dataset on the Hub or on disk works too:

    python scripts/build_mosaic_dataset.py --dataset_name mnist --label_column_name label --output_dir mnist-mosaic
"""

from pathlib import Path

from modeling_q2l.cli.commands import build_mosaics, run_script

# The entry point's defaults: the repository's embedded dataset, from the Debian `dataset-fashion-mnist` files.
DEFAULTS = {
    "output_dir": str(Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic"),
    "fashion_mnist_dir": "/usr/share/datasets/fashion-mnist",
}


def main(argv=None) -> dict:
    return build_mosaics(argv, defaults=DEFAULTS)


if __name__ == "__main__":
    run_script(main)
