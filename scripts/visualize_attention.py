#!/usr/bin/env python
"""Draw where each label's query looks: one figure per image with the predicted labels' cross-attention maps.

    python scripts/visualize_attention.py --model out photo.jpg photos/ --output_dir figures
        [--labels Bag Sandal] [--layer -1] [--per_head] [--through_encoder] [--threshold 0.5] [--device cuda]

Each figure shows the image, then for each label at or above its threshold (and each label named by --labels) the
chosen decoder layer's cross-attention, averaged over heads, upsampled to the image and drawn over it, titled with the
label and its score; --per_head adds a row per head; --through_encoder carries the maps back through the
encoder's self-attention (attention rollout), which points better where the encoder mixes positions. Unreadable files are named on stderr (exit status 1).
"""

from modeling_q2l.cli.commands import visualize as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
