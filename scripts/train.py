#!/usr/bin/env python
"""Train Query2Label, evaluate it and save a Hub-ready folder.

    accelerate launch scripts/train.py                       # the embedded Fashion-MNIST mosaics and their recipe
    accelerate launch scripts/train.py --dataset_name my_photos --output_dir outputs/my-model   # your data
    accelerate launch scripts/train.py --variant Q2L-R101-448 --dataset_name ORG/NAME           # a paper variant

Arguments: `python scripts/train.py --help` (recipes, model, data and TrainingArguments, plus Q2L and ASL options).
"""

from pathlib import Path

from modeling_q2l.cli.commands import run_script, train

# the repository's embedded dataset, trained with its own recipe: the package itself never assumes a data folder
EMBEDDED_DATASET = str(Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic")


def main(argv=None) -> dict:
    return train(argv, defaults={"dataset_name": EMBEDDED_DATASET}, default_dataset_recipe="fashion-mnist-mosaic")


if __name__ == "__main__":
    run_script(main)
