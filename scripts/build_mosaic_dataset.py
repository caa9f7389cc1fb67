#!/usr/bin/env python
"""Build a multi-label mosaic dataset from a single-label image dataset.

Default: mosaics like the embedded Fashion-MNIST set, from Fashion-MNIST's TRAIN split only (its test split stays
held out), written in the Hub's layout (parquet files plus a dataset card) into the folder --output_dir names:

    python scripts/build_mosaic_dataset.py --output_dir outputs/fashion-mnist-mosaic

The repository's embedded copy is rebuilt only when asked for by name:
`--output_dir data/fashion-mnist-mosaic --overwrite_output_dir true`.

Any single-label dataset on the Hub or on disk works too:

    python scripts/build_mosaic_dataset.py --dataset_name mnist --label_column_name label --output_dir mnist-mosaic
"""

from modeling_q2l.cli.commands import build_mosaics, run_script

# The entry point's default source: the Debian `dataset-fashion-mnist` files. No default output folder.
DEFAULTS = {"fashion_mnist_dir": "/usr/share/datasets/fashion-mnist"}


def main(argv=None) -> dict:
    return build_mosaics(argv, defaults=DEFAULTS)


if __name__ == "__main__":
    run_script(main)
