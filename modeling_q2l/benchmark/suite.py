"""The benchmark suite behind `scripts/benchmark.py`: inference latency and throughput (batch 1 and N), a training
step's throughput and peak memory, the backbone / head split, the label-scaling sweep (with and without group
decoding) and a side-by-side run against the authors' model. Every number is a median of `repeats` timed runs after
`warmup` untimed ones; comparisons alternate the two models run by run, so both see the same machine state.
"""

import resource
import statistics
import time
from pathlib import Path

import torch

from ..data.labels import FASHION_MNIST_LABELS
from ..model import Query2LabelConfig, Query2LabelForMultiLabelClassification
from ..zoo.recipes import FASHION_MNIST_MOSAIC, get_recipe, recipe_config
from ..zoo.variants import VARIANTS, variant_config
from .machine import float32_matmul_peak_gflops, gflops_per_call, machine_description

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def demo_config() -> Query2LabelConfig:
    """The model the main job saves: the `fashion-mnist-mosaic` recipe's, at the resolution it is saved and run at."""
    config = recipe_config(FASHION_MNIST_MOSAIC, list(FASHION_MNIST_LABELS))
    config.image_size = get_recipe(FASHION_MNIST_MOSAIC).values["inference_image_size"]
    return config


def _with_settings(config: Query2LabelConfig, settings: dict) -> Query2LabelConfig:
    values = config.to_dict()
    if "num_labels" in settings:  # the label names and thresholds follow the new label count
        for key in ("id2label", "label2id", "label_thresholds"):
            values.pop(key, None)
    return Query2LabelConfig(**{**values, **settings})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def first_call_seconds(function, device: torch.device) -> float:
    """Seconds of one call: the first one of a shape includes building the folded or compiled backbone."""
    return timed(function, repeats=1, warmup=0, device=device)[0]


def alternating(functions: dict, repeats: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each named function, run in turn (a, b, a, b, ...) so that both see the same machine state."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            synchronize(device)
            start = time.perf_counter()
            function()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def build_config(args, **overrides) -> Query2LabelConfig:
    settings = {
        "label_groups": args.label_groups,
        "fast_cpu_inference": args.fast_cpu_inference,
        "compile_cpu_inference": args.compile and args.device == "cpu",
    }
    if args.image_size:
        settings["image_size"] = args.image_size
    if args.num_labels:
        settings["num_labels"] = args.num_labels
    if args.backbone:
        settings["backbone"] = args.backbone
    settings.update(overrides)
    if args.variant == "demo":
        return _with_settings(demo_config(), settings)
    if Path(args.variant, "config.json").is_file():
        return _with_settings(Query2LabelConfig.from_pretrained(args.variant), settings)
    return variant_config(args.variant, **settings)


def autocast_context(args, device: torch.device):
    if args.autocast is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=DTYPES[args.autocast])


def prepared(model):
    """A model in eval mode, ours prepared for inference as the pipeline prepares it (`optimize_for_inference`)."""
    return model.optimize_for_inference() if hasattr(model, "optimize_for_inference") else model.eval()


def build_model(config: Query2LabelConfig, args, seed: int = 0):
    torch.manual_seed(seed)
    return prepared(Query2LabelForMultiLabelClassification(config).to(args.device, DTYPES[args.dtype]))


def inference_timings(model, args, image_size: int) -> dict:
    """Latency (s per batch) and throughput (images/s) of each batch size; backbone and head times at the largest."""
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    # on CPU `--compile` is the model's own switch (config.compile_cpu_inference); elsewhere torch.compile
    forward = torch.compile(model) if args.compile and device.type != "cpu" else model
    results = {}
    for batch in args.batch_sizes:
        pixels = torch.randn(batch, 3, image_size, image_size, device=device, dtype=dtype)
        with torch.inference_mode(), autocast_context(args, device):
            first_call = first_call_seconds(lambda: forward(pixel_values=pixels), device)
            seconds = statistics.median(timed(lambda: forward(pixel_values=pixels), args.repeats, args.warmup, device))
        results[f"batch_{batch}"] = {"latency_s": seconds, "images_per_s": batch / seconds, "first_call_s": first_call}
    batch = max(args.batch_sizes)
    pixels = torch.randn(batch, 3, image_size, image_size, device=device, dtype=dtype)
    backbone_module = model.get_backbone()
    with torch.inference_mode(), autocast_context(args, device):
        features = backbone_module(pixels)
        backbone = statistics.median(timed(lambda: backbone_module(pixels), args.repeats, args.warmup, device))
        head = statistics.median(timed(lambda: head_forward(model, features), args.repeats, args.warmup, device))
    results["split"] = {"batch": batch, "backbone_s": backbone, "head_s": head, "head_share": head / (backbone + head)}
    return results


def head_forward(model, features: torch.Tensor) -> torch.Tensor:
    """The Q2L head alone (input projection, encoder, decoder, classifier) on a backbone feature map."""
    return model.classifier(model.model.decode(features).last_hidden_state)


def training_step(model, args, image_size: int) -> dict:
    """Throughput of forward, backward and AdamW step, and the peak memory: on CUDA the allocator's peak during the
    steps, on CPU the process's peak resident memory so far (measure training first for a meaningful number)."""
    device = torch.device(args.device)
    batch = args.train_batch_size
    pixels = torch.randn(batch, 3, image_size, image_size, device=device, dtype=DTYPES[args.dtype])
    labels = (torch.rand(batch, model.config.num_labels, device=device) < 0.1).to(pixels.dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=args.autocast == "float16")

    def step():
        with autocast_context(args, device):
            loss = model(pixel_values=pixels, labels=labels).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = statistics.median(timed(step, args.repeats, args.warmup, device))
    prepared(model)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"
    return {"batch": batch, "step_s": seconds, "images_per_s": batch / seconds, "peak_memory_mib": peak, "peak_memory_kind": kind}


def onnxruntime_timings(path: str, args, image_size: int) -> dict:
    """Latency and throughput of onnxruntime (CPU) on the ONNX file at each batch size."""
    import numpy as np

    from ..export.onnx import onnx_session

    session = onnx_session(path, args.threads or torch.get_num_threads())
    results = {}
    for batch in args.batch_sizes:
        pixels = np.random.default_rng(0).standard_normal((batch, 3, image_size, image_size), dtype=np.float32)
        times = timed(lambda: session.run(["logits"], {"pixel_values": pixels}), args.repeats, args.warmup, torch.device("cpu"))
        seconds = statistics.median(times)
        results[f"batch_{batch}"] = {"latency_s": seconds, "images_per_s": batch / seconds}
    return results


def onnx_export_timing(model, image_size: int) -> dict:
    """Seconds to export `model` to ONNX (dynamic batch and resolution) and to check it against PyTorch."""
    import tempfile

    from ..export.onnx import check_onnx_parity, export_onnx, parity_shapes

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = export_onnx(model, Path(folder) / "model.onnx", image_size)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        difference = check_onnx_parity(model, path, parity_shapes(image_size))
        return {"export_s": export_s, "parity_check_s": time.perf_counter() - start, "max_abs_logit_difference": difference}


def label_sweep(args, image_size: int) -> dict:
    """Head time (backbone features given) at each label count, one query per label and with `sweep_groups`."""
    device = torch.device(args.device)
    batch = max(args.batch_sizes)
    results = {}
    for groups in [None] + ([args.sweep_groups] if args.sweep_groups else []):
        rows = []
        for num_labels in args.label_sweep:
            config = build_config(args, num_labels=num_labels, label_groups=groups if groups and groups <= num_labels else None)
            model = build_model(config, args)
            with torch.inference_mode(), autocast_context(args, device):
                features = model.get_backbone()(
                    torch.randn(batch, 3, image_size, image_size, device=device, dtype=DTYPES[args.dtype])
                )
                seconds = statistics.median(timed(lambda: head_forward(model, features), args.repeats, args.warmup, device))
            rows.append({"num_labels": num_labels, "label_groups": config.label_groups, "head_s": seconds})
        for row in rows:
            row["ratio_to_first"] = row["head_s"] / rows[0]["head_s"]
        results["groups" if groups else "one_query_per_label"] = rows
    return results


def side_by_side_models(args) -> tuple[str, dict]:
    """The reference and our models on the same weights: the authors' model (`--compare_official`) or, for
    backbones their code cannot run here, ours with `fast_cpu_inference` off (`--compare_gains_off`); then ours
    (eager, with the gains) and, with `--compile`, ours compiled."""
    from .official import build_official_model, calibrate_batch_norms, ours_on_their_weights

    dtype = DTYPES[args.dtype]
    if args.compare_official:
        if args.variant not in VARIANTS:
            raise ValueError(f"--compare_official needs a paper variant, got {args.variant!r}.")
        official_args = VARIANTS[args.variant].official_args()
        if args.image_size:
            official_args["img_size"] = args.image_size
        reference = build_official_model(args.compare_official, official_args)

        def ours(**settings):
            return ours_on_their_weights(reference, official_args, **settings)

        kind = "official"
    else:
        config = build_config(args, fast_cpu_inference=False, compile_cpu_inference=False)
        reference = build_model(config, args)
        size = config.image_size
        calibrate_batch_norms(reference, torch.randn(2, 3, size, size, dtype=dtype))

        def ours(**settings):
            model = Query2LabelForMultiLabelClassification(Query2LabelConfig(**{**config.to_dict(), **settings}))
            model.load_state_dict(reference.state_dict())
            return model.eval()

        kind = "gains_off"
    models = {"reference": reference, "ours": ours(fast_cpu_inference=True, compile_cpu_inference=False)}
    if args.compile:
        models["ours_compiled"] = ours(fast_cpu_inference=True, compile_cpu_inference=True)
    if args.int8:
        models["ours_int8"] = int8_contender(ours(fast_cpu_inference=False, compile_cpu_inference=False), args.int8_calibration, args.int8_backend)
    dtypes = {"reference": DTYPES[args.reference_dtype or args.dtype], "ours_int8": torch.float32}  # int8 inside, float32 at its ends
    return kind, {name: prepared(model.to(args.device, dtypes.get(name, dtype))) for name, model in models.items()}


def int8_contender(model, calibration_images: int, backend: str = "onnxruntime"):
    """Our model quantized to int8 as `scripts/quantize.py --backend BACKEND` does with its default `--keep_float`
    (`export.quantize`: ONNX Runtime on the ONNX export, or PyTorch's PT2E flow compiled by Inductor), as a contender
    for timing. Its calibration images are random noise: the speed does not depend on them, the answers do
    (`scripts/benchmark_precision.py` measures those on a trained model)."""
    import tempfile

    import numpy as np

    from ..evaluation.exported_models import INT8_ONNX_FILE, INT8_PT2_FILE, CompiledInt8Classifier, OnnxClassifier
    from ..export.layer_groups import DEFAULT_KEEP_FLOAT
    from ..export.quantize import quantize_onnx

    scratch = Path(tempfile.mkdtemp(prefix="q2l-int8-"))
    size = model.config.image_size
    noise = np.random.default_rng(0)
    calibration = [noise.standard_normal((1, 3, size, size), dtype=np.float32) for _ in range(calibration_images)]
    if backend == "pytorch":
        from ..export.pt2e import quantize_pt2e, save_pt2e

        program = quantize_pt2e(model.float().eval(), calibration, DEFAULT_KEEP_FLOAT)
        return CompiledInt8Classifier(save_pt2e(program, scratch / INT8_PT2_FILE), model.config)
    from ..export.onnx import export_onnx

    exported = export_onnx(model.float().eval(), scratch / "model.onnx", size)
    return OnnxClassifier(quantize_onnx(exported, scratch / INT8_ONNX_FILE, calibration, DEFAULT_KEEP_FLOAT), model.config)


def side_by_side(args) -> dict:
    """The reference model against ours (and ours compiled) on the same weights and inputs, alternating run by run:
    seconds per batch of each, speed-ups (reference / ours: above 1 means ours is faster), the largest logit
    difference to the reference, and the first call of each of ours (building the folded or compiled backbone)."""
    kind, models = side_by_side_models(args)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    size = models["ours"].config.image_size

    dtypes = {name: next(model.parameters()).dtype for name, model in models.items()}

    def logits(name, pixels):
        pixels = pixels.to(dtypes[name])  # each model in its own dtype (--reference_dtype: the authors' in float32)
        output = models[name](pixels) if name == "reference" and kind == "official" else models[name](pixel_values=pixels)
        return (output if isinstance(output, torch.Tensor) else output.logits).float()

    results = {"reference": kind, "int8_backend": args.int8_backend if args.int8 else None, "dtypes": {name: str(value).removeprefix("torch.") for name, value in dtypes.items()}}
    if device.type == "cpu" and dtype == torch.float32:
        with torch.enable_grad():  # the FLOP counter's module tracker needs autograd
            results["gflops_per_image"] = gflops_per_call(lambda: logits("reference", torch.randn(1, 3, size, size)))
        results["matmul_peak_gflops_per_s"] = float32_matmul_peak_gflops()
    for batch in args.batch_sizes:
        pixels = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
        row = {"batch": batch}
        with torch.inference_mode(), autocast_context(args, device):
            expected = logits("reference", pixels)
            row["reference_max_abs_logit"] = expected.abs().max().item()  # the scale the differences are read on
            for name in models:
                if name != "reference":
                    row[f"{name}_first_call_s"] = first_call_seconds(lambda: logits(name, pixels), device)
                    row[f"{name}_max_abs_logit_difference"] = (logits(name, pixels) - expected).abs().max().item()
            functions = {name: (lambda name=name: logits(name, pixels)) for name in models}
            times = alternating(functions, args.repeats, args.warmup, device)
        for name in models:
            row[f"{name}_s"] = statistics.median(times[name])
            if "gflops_per_image" in results:  # how close each model runs to the machine's matrix-product peak
                row[f"{name}_gflops_per_s"] = results["gflops_per_image"] * batch / row[f"{name}_s"]
            if name != "reference":
                row[f"{name}_speedup"] = row["reference_s"] / row[f"{name}_s"]
        results[f"batch_{batch}"] = row
    return results


def run_suite(args) -> dict:
    if args.dtype not in DTYPES or (args.autocast is not None and args.autocast not in ("float16", "bfloat16")):
        raise ValueError(f"--dtype must be one of {sorted(DTYPES)} and --autocast float16 or bfloat16.")
    if args.autocast is not None and args.dtype != "float32":
        raise ValueError("--autocast runs over float32 weights: leave --dtype at float32.")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = build_config(args)
    image_size = config.image_size
    results = {
        "variant": args.variant,
        "image_size": image_size,
        "num_labels": config.num_labels,
        "label_groups": config.label_groups,
        "dtype": args.dtype,
        "autocast": args.autocast,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
        "machine": machine_description(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "fast_cpu_inference": args.fast_cpu_inference,
        "compile": args.compile,
    }
    model = build_model(config, args)
    if args.train_batch_size:
        results["training"] = training_step(model, args, image_size)
    results["inference"] = inference_timings(model, args, image_size)
    if args.time_onnx_export:
        results["onnx_export"] = onnx_export_timing(model, image_size)
    del model
    if args.onnx:
        results["onnxruntime"] = onnxruntime_timings(args.onnx, args, image_size)
    if args.label_sweep:
        results["label_sweep"] = label_sweep(args, image_size)
    if args.compare_official or args.compare_gains_off:
        results["side_by_side"] = side_by_side(args)
    return results


def results_markdown(results: dict) -> str:
    """The suite's results as Markdown tables, under the machine they were measured on."""
    lines = [
        results.get("machine", ""),
        "",
        f"{results['variant']}, {results['image_size']} px, {results['num_labels']} labels"
        + (f" in {results['label_groups']} groups" if results["label_groups"] else "")
        + f", {results['dtype']}" + (f" with {results['autocast']} autocast" if results["autocast"] else "")
        + ("" if results.get("fast_cpu_inference", True) else ", fast CPU inference off")
        + (", compiled backbone" if results.get("compile") else "")
        + f", {results['device_name']}, {results['torch_threads']} threads, torch {results['torch']}, medians of {results['repeats']} runs",
        "",
        "| measurement | value |",
        "| --- | --- |",
    ]
    for name, row in results["inference"].items():
        if name.startswith("batch_"):
            lines.append(f"| inference, batch {name[6:]}: latency (s) / throughput (images/s) / first call (s) | {row['latency_s']:.4g} / {row['images_per_s']:.4g} / {row['first_call_s']:.3g} |")
    for name, row in results.get("onnxruntime", {}).items():
        lines.append(f"| onnxruntime (CPU), batch {name[6:]}: latency (s) / throughput (images/s) | {row['latency_s']:.4g} / {row['images_per_s']:.4g} |")
    if "onnx_export" in results:
        export = results["onnx_export"]
        lines.append(f"| ONNX export (s) / parity check (s) / max abs logit difference | {export['export_s']:.3g} / {export['parity_check_s']:.3g} / {export['max_abs_logit_difference']:.2g} |")
    split = results["inference"]["split"]
    lines.append(f"| batch {split['batch']}: backbone (s) / head (s) / head share | {split['backbone_s']:.4g} / {split['head_s']:.4g} / {split['head_share']:.1%} |")
    if "training" in results:
        train = results["training"]
        lines.append(f"| training step, batch {train['batch']}: s / images/s / peak memory (MiB, {train['peak_memory_kind']}) | {train['step_s']:.4g} / {train['images_per_s']:.4g} / {train['peak_memory_mib']:.0f} |")
    comparison = results.get("side_by_side", {})
    reference = {"official": "authors' model", "gains_off": "ours with fast_cpu_inference off"}.get(comparison.get("reference"))
    dtypes = comparison.get("dtypes", {})
    if reference and len(set(dtypes.values())) > 1:  # e.g. ours in bfloat16 against the authors' float32
        reference = f"{reference} ({dtypes['reference']}, ours {dtypes['ours']})"
    if "gflops_per_image" in comparison:
        lines.append(
            f"| model GFLOP per image / this machine's float32 matrix-product peak (GFLOP/s) | "
            f"{comparison['gflops_per_image']:.1f} / {comparison['matmul_peak_gflops_per_s']:.0f} |"
        )
    for name, row in comparison.items():
        if not name.startswith("batch_"):
            continue
        if "reference_gflops_per_s" in row:
            achieved = " / ".join(f"{row[key]:.0f}" for key in ("reference_gflops_per_s", "ours_gflops_per_s", "ours_compiled_gflops_per_s") if key in row)
            lines.append(f"| batch {name[6:]}: GFLOP/s reached by the reference / ours{' / ours compiled' if 'ours_compiled_s' in row else ''} | {achieved} |")
        for ours in ("ours", "ours_compiled", "ours_int8"):
            if f"{ours}_s" in row:
                label = {"ours": "ours", "ours_compiled": "ours compiled", "ours_int8": f"ours int8 ({comparison.get('int8_backend', 'onnxruntime')})"}[ours]
                lines.append(
                    f"| {reference} vs {label}, batch {name[6:]}: reference s / {label} s / speed-up / max abs logit "
                    f"difference / first call s | {row['reference_s']:.4g} / {row[ours + '_s']:.4g} / "
                    f"{row[ours + '_speedup']:.3f}x / {row[ours + '_max_abs_logit_difference']:.2g} / "
                    f"{row[ours + '_first_call_s']:.3g} |"
                )
    for kind, rows in results.get("label_sweep", {}).items():
        for row in rows:
            groups = f", {row['label_groups']} groups" if row["label_groups"] else ", one query per label"
            lines.append(f"| head time at {row['num_labels']} labels{groups}: s / ratio to {rows[0]['num_labels']} | {row['head_s']:.4g} / {row['ratio_to_first']:.2f}x |")
    return "\n".join(lines)
