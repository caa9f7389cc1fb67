#!/usr/bin/env python
"""Label transfer measured on the mosaic proxy: a model trained on half of the Fashion-MNIST classes, fine-tuned on all
ten with a small budget, against the same budget from the ImageNet backbone alone and with the head only.

    python scripts/benchmark_transfer.py [--output_dir outputs/transfer] [--finetune_samples 400]

1. source: the default recipe on the embedded training mosaics with labels of classes 0-4 only (objects of classes
   5-9 stay in the images, unlabelled), `--source_epochs` epochs;
2. the same small fine-tuning budget three ways, on the first `--finetune_samples` mosaics with all ten labels:
   from the source model (shared labels keep their query and classifier row), from the ImageNet backbone with a new
   head, and from the source model with the backbone frozen.
Every run is evaluated on the 1,000 validation mosaics; mAP is reported on the 5 matched and the 5 new labels apart.
"""

from pathlib import Path

from modeling_q2l.cli.commands import benchmark_transfer, run_script

# the repository's embedded dataset: the package itself never assumes a data folder
EMBEDDED_DATASET = str(Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-mosaic")


def main(argv=None):
    return benchmark_transfer(argv, dataset=EMBEDDED_DATASET)


if __name__ == "__main__":
    run_script(main)
