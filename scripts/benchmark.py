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

import json

from transformers import HfArgumentParser

from modeling_q2l.benchmark.suite import SuiteArguments, results_markdown, run_suite


def main(argv=None) -> dict:
    (args,) = HfArgumentParser(SuiteArguments).parse_args_into_dataclasses(args=argv)
    try:
        results = run_suite(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(results_markdown(results))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
