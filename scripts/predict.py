#!/usr/bin/env python
"""Print, for each image, the labels that reach their thresholds, with their scores.

    python scripts/predict.py --model out photo1.jpg photos/ [--threshold 0.5] [--thresholds per_label.json]
        [--format json|csv] [--batch_size 16] [--device cuda]

Folders are searched for images. Thresholds: the model's fitted per-label thresholds unless --threshold gives one
for every label; --thresholds overrides single labels. An unreadable file is named on stderr with the reason, the
others are still predicted, and the exit status is then 1.
"""

from modeling_q2l.cli.commands import predict as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
