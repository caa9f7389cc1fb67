#!/usr/bin/env python
"""Train Query2Label, evaluate it and save a Hub-ready folder.

    accelerate launch scripts/train.py                      # the embedded Fashion-MNIST mosaics, CPU-friendly
    accelerate launch scripts/train.py --dataset_name ORG/NAME --backbone resnet101 --image_size 448 --output_dir out

Arguments: `python scripts/train.py --help` (model, data and TrainingArguments, plus Q2L and ASL options).
"""

from pathlib import Path

from modeling_q2l.cli.arguments import EMBEDDED_MAIN_JOB_DEFAULTS
from modeling_q2l.cli.commands import run_script, train

# the repository's embedded dataset: the package itself never assumes a data folder
EMBEDDED_DATASET = str(Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic")
DEFAULTS = {"dataset_name": EMBEDDED_DATASET, **EMBEDDED_MAIN_JOB_DEFAULTS}


def main(argv=None) -> dict:
    return train(argv, defaults=DEFAULTS)


if __name__ == "__main__":
    run_script(main)
