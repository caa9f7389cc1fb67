#!/usr/bin/env python
"""Print, for each image, the labels that reach their thresholds, with their scores.

    python scripts/predict.py --model out photo1.jpg photos/ [--threshold 0.5] [--thresholds per_label.json]
        [--format json|csv] [--batch_size 16] [--device cuda]

Folders are searched for images. Thresholds: the model's fitted per-label thresholds unless --threshold gives one
for every label; --thresholds overrides single labels. An unreadable file is named on stderr with the reason, the
others are still predicted, and the exit status is then 1.
"""

import sys

from transformers import HfArgumentParser

from modeling_q2l.evaluation.predict import PredictArguments, run_prediction


def main(argv=None) -> int:
    args, inputs = HfArgumentParser(PredictArguments).parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if not inputs:
        raise SystemExit("Give at least one image file or folder after the options.")
    unknown_options = [value for value in inputs if value.startswith("--")]
    if unknown_options:
        raise SystemExit(f"Unknown options: {unknown_options}.")
    try:
        return run_prediction(args, inputs, sys.stdout, sys.stderr)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
