#!/usr/bin/env python
"""Evaluate a saved model on a dataset split: every multi-label metric, AP per label and, when the dataset has
boxes, mAP by object size. Writes JSON (--output) and Markdown (--markdown); prints the Markdown.

    python scripts/evaluate_model.py --model out --dataset_name data/fashion-mnist-mosaic --split validation --output eval.json
"""

from modeling_q2l.cli.commands import evaluate as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
