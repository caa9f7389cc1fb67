#!/usr/bin/env python
"""Side by side with the authors' CvT: their `cls_cvt.py` (from a local copy of their repository, not vendored)
against our converted backbone, on the same random weights, with QuickGELU (`backbone_hidden_act="quick_gelu"`, what
the CvT presets and the converter set) and with transformers' exact GELU.

    pip install einops scipy   # what the authors' file imports
    python scripts/compare_official_cvt.py --official_repo PATH/TO/query2labels [--full_size true]
"""

from modeling_q2l.cli.commands import compare_official_cvt as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
