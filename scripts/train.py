#!/usr/bin/env python
"""Train Query2Label, evaluate it and save a Hub-ready folder.

    accelerate launch scripts/train.py                      # the embedded Fashion-MNIST mosaics, CPU-friendly
    accelerate launch scripts/train.py --dataset_name ORG/NAME --backbone resnet101 --image_size 448 --output_dir out

Arguments: `python scripts/train.py --help` (model, data and TrainingArguments, plus Q2L and ASL options).
"""

from pathlib import Path

from modeling_q2l.cli.commands import run_script, train
from modeling_q2l.data.layouts import HELD_OUT_LAYOUTS, layout_split_name

# the repository's embedded dataset: the package itself never assumes a data folder
EMBEDDED_DATASET = str(Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic")
# every held-out test split of the embedded set: out_of_layout and the layout_* splits (`modeling_q2l.data.layouts`)
DEFAULTS = {
    "dataset_name": EMBEDDED_DATASET,
    "extra_eval_split_names": ["out_of_layout", *(layout_split_name(name) for name in HELD_OUT_LAYOUTS)],
    "localization_split_name": "out_of_layout",
    "layout_randomization": 0.8,  # the mosaics' objects in other layouts, so that held-out layouts keep the accuracy
}


def main(argv=None) -> dict:
    return train(argv, defaults=DEFAULTS)


if __name__ == "__main__":
    run_script(main)
