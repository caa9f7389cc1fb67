#!/usr/bin/env python
"""Train Query2Label, evaluate it and save a Hub-ready folder.

    accelerate launch scripts/train.py                      # the embedded Fashion-MNIST mosaics, CPU-friendly
    accelerate launch scripts/train.py --dataset_name ORG/NAME --backbone resnet101 --image_size 448 --output_dir out

Arguments: `python scripts/train.py --help` (model, data and TrainingArguments, plus Q2L and ASL options).
"""

import sys
from pathlib import Path

# Python puts this folder first on the path, where evaluate.py (our script) would shadow the `evaluate` library
# that the Trainer's metrics use.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from modeling_q2l.training.main import main  # noqa: E402

# The entry point's defaults: the embedded dataset of this repository (the package never assumes a data folder).
EMBEDDED_DATASET = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic"
DEFAULTS = {"dataset_name": str(EMBEDDED_DATASET), "extra_eval_split_names": ["out_of_layout"]}

if __name__ == "__main__":
    main(defaults=DEFAULTS)
