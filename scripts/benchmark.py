#!/usr/bin/env python
"""Speed and memory of a Query2Label variant, optionally side by side with the authors' model.

    python scripts/benchmark.py --variant Q2L-R101-448 --batch_sizes 1 4 [--compare_official PATH/TO/query2labels]
        [--label_sweep 80 1000 9605 --sweep_groups 100] [--dtype float32|float16|bfloat16] [--autocast bfloat16]
        [--device cuda] [--threads 2] [--train_batch_size 2] [--compile] [--repeats 5] [--output results.json]
    python scripts/benchmark.py --variant Q2L-TResL-448 --compare_gains_off --compile   # ours against our own kernels
    python scripts/benchmark.py --variant demo --batch_sizes 1 32 --time_onnx_export   # the main job's configuration

Prints, under the machine it ran on (CPU, vector extensions, BLAS, instruction-set limits), Markdown tables of
medians (inference latency, throughput and first call, backbone / head split, a training step's throughput and peak
memory, the label sweep, the ratio to the authors' model, eager and compiled, with the largest logit difference and
GFLOP/s against the machine's float32 peak, ONNX export time) and writes them as JSON with --output. The authors' repository is never vendored: clone it and pass its path.
"""

from modeling_q2l.cli.commands import benchmark as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
