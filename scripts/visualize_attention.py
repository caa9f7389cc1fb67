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

from transformers import HfArgumentParser

from modeling_q2l.evaluation.attention_figures import VisualizeArguments, run_visualization


def main(argv=None) -> int:
    args, inputs = HfArgumentParser(VisualizeArguments).parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if not inputs:
        raise SystemExit("Give at least one image file or folder after the options.")
    unknown_options = [value for value in inputs if value.startswith("--")]
    if unknown_options:
        raise SystemExit(f"Unknown options: {unknown_options}.")
    try:
        written, status = run_visualization(args, inputs, sys.stderr)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print("\n".join(written))
    return status


if __name__ == "__main__":
    sys.exit(main())
