#!/usr/bin/env python
"""Convert an official Query2Label release into a Hugging Face model folder.

    python scripts/convert_official_checkpoint.py --checkpoint Q2L-R101-448.pkl --config config_new.json \
        --output_dir q2l-r101-448 [--labels coco|voc|names.txt] [--allow_unsafe_pickle]
"""

from modeling_q2l.cli.commands import convert_official as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
