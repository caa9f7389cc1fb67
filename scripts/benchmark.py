#!/usr/bin/env python
"""Speed and memory benchmarks; prints a Markdown table of medians (and ratios measured in the same run).

    python scripts/benchmark.py [--repeats 7] [--output benchmark.json]

- training and inference throughput of the demo configuration (tf_efficientnet_lite0, 128 px, batch 32): the Q2L
  head against the global-average-pooling baseline;
- the Q2L-R101-448 transformer head alone (2048 wide, 14 x 14 features, batch 8): SDPA against eager attention;
- `multilabel_metrics` on COCO-val-sized input (40,504 x 80);
- peak resident memory of the process.
"""

import json
import resource
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import HfArgumentParser

from modeling_q2l import (
    Query2LabelBaselineForMultiLabelClassification,
    Query2LabelConfig,
    Query2LabelForMultiLabelClassification,
    variant_config,
)
from modeling_q2l.evaluation.metrics import multilabel_metrics


@dataclass
class BenchmarkArguments:
    repeats: int = field(default=7, metadata={"help": "Timed repetitions per measurement (the median is reported)."})
    output: str | None = field(default=None, metadata={"help": "Also write the numbers as JSON here."})


def median_seconds(function, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def demo_config(head: str) -> Query2LabelConfig:
    return Query2LabelConfig(
        backbone="tf_efficientnet_lite0", num_labels=10, image_size=128, hidden_size=256, use_input_projection=True,
        intermediate_size=1024, classifier_head=head,
    )  # fmt: skip


def throughput(model, batch: int, repeats: int, train: bool) -> float:
    pixels = torch.randn(batch, 3, 128, 128)
    labels = (torch.rand(batch, model.config.num_labels) < 0.3).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        if train:
            model.train()
            loss = model(pixels, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        else:
            model.eval()
            with torch.no_grad():
                model(pixels)

    return batch / median_seconds(step, repeats)


def head_time(attention: str, repeats: int) -> float:
    config = variant_config("Q2L-R101-448")
    config._attn_implementation = attention
    model = Query2LabelForMultiLabelClassification(config).model.eval()
    features = torch.randn(8, 14 * 14, 2048)
    position = model.position_embedding(14, 14, features.device, features.dtype)
    queries = model.label_embeddings.weight.unsqueeze(0).expand(8, -1, -1)

    def run():
        with torch.no_grad():
            memory, _, _ = model.encoder(features, position)
            model.decoder(torch.zeros_like(queries), memory, queries, position)

    return median_seconds(run, repeats)


def main(argv=None):
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    torch.manual_seed(0)
    results = {"torch_threads": torch.get_num_threads()}
    for head, cls in [("query2label", Query2LabelForMultiLabelClassification), ("global_average_pooling", Query2LabelBaselineForMultiLabelClassification)]:
        model = cls(demo_config(head))
        results[f"train_images_per_s_{head}"] = throughput(model, 32, args.repeats, train=True)
        results[f"inference_images_per_s_{head}"] = throughput(model, 32, args.repeats, train=False)
    results["head_r101_448_sdpa_s"] = head_time("sdpa", args.repeats)
    results["head_r101_448_eager_s"] = head_time("eager", args.repeats)
    rng = np.random.default_rng(0)
    scores, labels = rng.random((40504, 80)), (rng.random((40504, 80)) < 0.04).astype(np.int8)
    results["metrics_coco_val_s"] = median_seconds(lambda: multilabel_metrics(scores, labels), args.repeats, warmup=1)
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = [
        ("demo training throughput, Q2L head (images/s)", results["train_images_per_s_query2label"]),
        ("demo training throughput, GAP baseline (images/s)", results["train_images_per_s_global_average_pooling"]),
        ("ratio Q2L / baseline, training", results["train_images_per_s_query2label"] / results["train_images_per_s_global_average_pooling"]),
        ("demo inference throughput, Q2L head (images/s)", results["inference_images_per_s_query2label"]),
        ("demo inference throughput, GAP baseline (images/s)", results["inference_images_per_s_global_average_pooling"]),
        ("R101-448 head forward, SDPA (s, batch 8)", results["head_r101_448_sdpa_s"]),
        ("R101-448 head forward, eager (s, batch 8)", results["head_r101_448_eager_s"]),
        ("ratio eager / SDPA", results["head_r101_448_eager_s"] / results["head_r101_448_sdpa_s"]),
        ("multilabel_metrics on 40,504 x 80 (s)", results["metrics_coco_val_s"]),
        ("peak resident memory of the benchmark process (MiB)", results["peak_rss_mib"]),
    ]
    print(f"torch threads: {results['torch_threads']}, median of {args.repeats} runs\n")
    print("| measurement | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value:.3g} |")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
