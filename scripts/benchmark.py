#!/usr/bin/env python
"""Speed and memory of a Query2Label variant, optionally side by side with the authors' model.

    python scripts/benchmark.py --variant Q2L-R101-448 --batch_sizes 1 4 [--compare_official PATH/TO/query2labels]
        [--label_sweep 80 1000 9605 --sweep_groups 100] [--dtype float32|float16|bfloat16] [--autocast bfloat16]
        [--device cuda] [--threads 2] [--train_batch_size 2] [--compile] [--repeats 5] [--output results.json]
    python scripts/benchmark.py --variant demo --batch_sizes 1 32   # the main job's configuration

Prints Markdown tables of medians (inference latency and throughput, backbone / head split, a training step's
throughput and peak memory, the label sweep, the ratio to the authors' model with the largest logit difference) and
writes them as JSON with --output. The authors' repository is never vendored: clone it and pass its path.
"""

from modeling_q2l.cli.commands import benchmark as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
