#!/usr/bin/env python
"""Write `model_cards/<variant>.md` for every paper variant (the demo card comes from the default training run).

    python scripts/generate_model_cards.py [--output_dir model_cards] [--repo_namespace ORG]
"""

from modeling_q2l.cli.commands import generate_model_cards as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
