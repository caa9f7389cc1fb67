#!/usr/bin/env python
"""Print, for each image, the labels that reach their thresholds, with their scores.

    python scripts/predict.py --model out photo1.jpg photos/ [--threshold 0.5] [--thresholds per_label.json]
        [--format json|csv] [--batch_size 16] [--device cuda]

Folders are searched for images. Thresholds: the model's fitted per-label thresholds unless --threshold gives one
for every label; --thresholds overrides single labels. An unreadable file is named on stderr with the reason, the
others are still predicted, and the exit status is then 1.
"""

import sys

from modeling_q2l.evaluation.predict import PredictArguments, parse_arguments_and_inputs, run_prediction


def main(argv=None) -> int:
    args, inputs = parse_arguments_and_inputs(PredictArguments, argv)
    try:
        return run_prediction(args, inputs, sys.stdout, sys.stderr)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
