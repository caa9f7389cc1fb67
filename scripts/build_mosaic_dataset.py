#!/usr/bin/env python
"""Build a multi-label mosaic dataset from a single-label image dataset.

Default: the embedded Fashion-MNIST mosaic set, from Fashion-MNIST's TRAIN split only (its test split stays
held out), written in the Hub's layout (parquet files plus a dataset card):

    python scripts/build_mosaic_dataset.py --output_dir data/fashion-mnist-mosaic

Any single-label dataset on the Hub or on disk works too:

    python scripts/build_mosaic_dataset.py --dataset_name mnist --label_column_name label --output_dir mnist-mosaic
"""


from transformers import HfArgumentParser

from modeling_q2l.mosaic_dataset import MosaicBuildArguments, build_mosaic_dataset


def main(argv=None):
    (args,) = HfArgumentParser(MosaicBuildArguments).parse_args_into_dataclasses(args=argv)
    paths = build_mosaic_dataset(args)
    for split, path in paths.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
