#!/usr/bin/env python
"""Whether a lower precision keeps a model's answers: the same model in float32 and in bfloat16, float16 or int8 on
the evaluation split and every `--extra_eval_split_names` split, with mAP, CF1 / OF1 at the model's per-label
thresholds and the share of label decisions that stay what float32 decided.

    python scripts/benchmark_precision.py --model outputs/q2l-fashion-mnist-mosaic --dataset_name data/fashion-mnist-mosaic \\
        --dtypes bfloat16 int8 --extra_eval_split_names out_of_layout
"""

from modeling_q2l.cli.commands import benchmark_precision, run_script

if __name__ == "__main__":
    run_script(benchmark_precision)
