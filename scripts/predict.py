#!/usr/bin/env python
"""Print, for each image, the labels above threshold with their scores.

    python scripts/predict.py --model out photo1.jpg photo2.png [--threshold 0.5] [--thresholds per_label.json]
        [--format json|csv]
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from modeling_q2l.evaluation.predict import (
    format_predictions,
    load_classifier,
    predict_files,
    read_thresholds,
)


@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    threshold: float = field(default=0.5, metadata={"help": "Probability at or above which a label is reported."})
    thresholds: str | None = field(default=None, metadata={"help": "JSON file {label: threshold} overriding it."})
    format: str = field(default="json", metadata={"help": "json or csv."})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})


def main(argv=None):
    args, images = HfArgumentParser(PredictArguments).parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if not images:
        raise SystemExit("Give at least one image path after the options.")
    unknown_options = [value for value in images if value.startswith("--")]
    if unknown_options:
        raise SystemExit(f"Unknown options: {unknown_options}.")
    model, processor = load_classifier(args.model)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    thresholds = read_thresholds(args.thresholds, names, args.threshold)
    results = predict_files(model, processor, images, thresholds, args.batch_size)
    sys.stdout.write(format_predictions(results, args.format) + "\n")


if __name__ == "__main__":
    main()
