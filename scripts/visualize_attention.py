#!/usr/bin/env python
"""Draw where each label's query looks: one figure per image with the predicted labels' cross-attention maps.

    python scripts/visualize_attention.py --model out photo.jpg photos/ --output_dir figures
        [--labels Bag Sandal] [--layer -1] [--per_head] [--through_encoder] [--threshold 0.5] [--device cuda]

Each figure shows the image, then for each label at or above its threshold (and each label named by --labels) the
chosen decoder layer's cross-attention, averaged over heads, upsampled to the image and drawn over it, titled with the
label and its score; --per_head adds a row per head; --through_encoder carries the maps back through the
encoder's self-attention (attention rollout), which points better where the encoder mixes positions. Unreadable files are named on stderr (exit status 1).
"""

import sys

from modeling_q2l.evaluation.attention_figures import VisualizeArguments, run_visualization
from modeling_q2l.evaluation.predict import parse_arguments_and_inputs


def main(argv=None) -> int:
    args, inputs = parse_arguments_and_inputs(VisualizeArguments, argv)
    try:
        written, status = run_visualization(args, inputs, sys.stderr)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print("\n".join(written))
    return status


if __name__ == "__main__":
    sys.exit(main())
