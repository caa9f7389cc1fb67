#!/usr/bin/env python
"""Train Query2Label, evaluate it and save a Hub-ready folder.

    accelerate launch scripts/train.py                      # the embedded Fashion-MNIST mosaics, CPU-friendly
    accelerate launch scripts/train.py --dataset_name ORG/NAME --backbone resnet101 --image_size 448 --output_dir out

Arguments: `python scripts/train.py --help` (model, data and TrainingArguments, plus Q2L and ASL options).
"""

from pathlib import Path

from modeling_q2l.training.main import main

# The entry point's defaults: the embedded dataset of this repository (the package never assumes a data folder).
EMBEDDED_DATASET = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic"
DEFAULTS = {"dataset_name": str(EMBEDDED_DATASET)}

if __name__ == "__main__":
    main(defaults=DEFAULTS)
