#!/usr/bin/env python
"""Evaluate a saved model on a dataset split: every multi-label metric, AP per label and, when the dataset has
boxes, mAP by object size. Writes JSON (--output) and Markdown (--markdown); prints the Markdown.

    python scripts/evaluate.py --model out --dataset_name data/fashion-mnist-mosaic --split validation --output eval.json
"""

from transformers import HfArgumentParser

from modeling_q2l.evaluation.evaluate import EvaluationArguments, run_evaluation


def main(argv=None):
    (args,) = HfArgumentParser(EvaluationArguments).parse_args_into_dataclasses(args=argv)
    run_evaluation(args)


if __name__ == "__main__":
    main()
