#!/usr/bin/env python
"""Assemble, validate and upload a Query2Label model repository to the Hub.

    python scripts/publish.py --model q2l-r101-448 --repo_id ORG/q2l-resnet101-448-coco --variant Q2L-R101-448 \
        --eval_results eval.json [--private] [--revision BRANCH] [--commit_message MSG] [--dry_run OUT]
"""

from modeling_q2l.cli.commands import publish as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
