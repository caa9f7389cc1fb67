#!/usr/bin/env python
"""Train Query2Label, evaluate it and save a Hub-ready folder.

    accelerate launch scripts/train.py                      # the embedded Fashion-MNIST mosaics, CPU-friendly
    accelerate launch scripts/train.py --dataset_name ORG/NAME --backbone resnet101 --image_size 448 --output_dir out

Arguments: `python scripts/train.py --help` (model, data and TrainingArguments, plus Q2L and ASL options).
"""

from modeling_q2l.run_training import main

if __name__ == "__main__":
    main()
