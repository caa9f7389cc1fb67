"""Every command of the package, as a function of its command line: `scripts/*.py` and `app.py` are thin calls to
these (through `run_script`, which turns a bad-input error into one line and exit status 1).

Each takes `argv` (default: `sys.argv[1:]`) and, where the repository has defaults to give (the embedded dataset's
path), `defaults`. The package itself never assumes a data folder.
"""

import json
import sys

from ..extras import MissingExtraError
from . import arguments


def run_script(command, *args, **kwargs) -> None:
    """Run a command as a script: a `ValueError` (bad input) or a missing optional package ends in `error: ...` on
    stderr and exit status 1, with no traceback; an integer result is the exit status."""
    try:
        status = command(*args, **kwargs)
    except (ValueError, MissingExtraError) as error:
        raise SystemExit(f"error: {error}") from None
    sys.exit(status if isinstance(status, int) else 0)


def train(argv=None, defaults: dict | None = None, default_dataset_recipe: str | None = None):
    """Train, evaluate, save a Hub-ready folder (the main job). Returns the report. `default_dataset_recipe`: the
    recipe a run on `defaults["dataset_name"]` starts from (`arguments.parse_training_arguments`). Returns the
    `evaluation.report.EvaluationReport`."""
    from ..training.main import run

    _, report = run(*arguments.parse_training_arguments(argv, defaults, default_dataset_recipe))
    return report


def evaluate(argv=None):
    """Evaluate a saved model on a dataset split. Returns the `EvaluationReport`."""
    from ..evaluation.evaluate import run_evaluation

    args, data_args = arguments.parse((arguments.EvaluationArguments, arguments.DataArguments), argv)
    return run_evaluation(args, data_args)


def predict(argv=None) -> int:
    """Print the labels each image (files, folders, or a dataset split) reaches. Returns the exit status."""
    from ..evaluation.predict import run_prediction

    args, data_args, inputs = arguments.parse_with_inputs((arguments.PredictArguments, arguments.DataArguments), argv, inputs_required=False)
    return run_prediction(args, inputs, sys.stdout, sys.stderr, data_args)


def visualize(argv=None) -> int:
    """One attention figure per image. Returns the exit status."""
    from ..evaluation.attention_figures import run_visualization

    args, inputs = arguments.parse_with_inputs((arguments.VisualizeArguments,), argv)
    written, status = run_visualization(args, inputs, sys.stderr)
    print("\n".join(written))
    return status


def publish(argv=None) -> str:
    """Assemble, check and upload (or with --dry_run write) a model repository."""
    from ..hub.publish import publish as publish_repository

    (args,) = arguments.parse((arguments.PublishArguments,), argv)
    result = publish_repository(args)
    print(f"Wrote {result}" if args.dry_run else f"Published {result}")
    return result


def export_onnx(argv=None):
    """Export a saved model to ONNX and check it against PyTorch."""
    from ..export.onnx import export_saved_model

    (args,) = arguments.parse((arguments.ExportArguments,), argv)
    path, worst = export_saved_model(args.model, args.output, args.opset, args.tolerance)
    print(f"Wrote {path}: onnxruntime logits within {worst:.1e} of PyTorch's.")
    return path


def quantize(argv=None) -> dict:
    """int8 ONNX model of a saved folder, calibrated on training images and measured against float32."""
    from ..export.quantize import quantize_saved_model

    args, data_args = arguments.parse((arguments.QuantizeArguments, arguments.DataArguments), argv)
    result = quantize_saved_model(args, data_args)
    print(f"Wrote {result['int8_model']} (calibrated on {result['calibration_images']} training images).")
    return result


def convert_official(argv=None):
    """Convert an official Query2Label release into a Hugging Face model folder."""
    from ..data.labels import resolve_labels
    from ..zoo.convert_official import convert_official_checkpoint

    (args,) = arguments.parse((arguments.ConversionArguments,), argv)
    labels = resolve_labels(args.labels) if args.labels else None
    model, _ = convert_official_checkpoint(
        args.checkpoint, args.config, args.output_dir, labels=labels, allow_unsafe_pickle=args.allow_unsafe_pickle, variant=args.variant
    )
    print(
        f"Saved {model.config.backbone} Q2L ({model.num_parameters() / 1e6:.1f} M parameters, "
        f"{model.config.num_labels} labels, {model.config.image_size} px) to {args.output_dir}"
    )
    return model


def generate_model_cards(argv=None) -> list:
    """`model_cards/<variant>.md` for every paper variant."""
    from ..hub.model_card import write_variant_cards

    (args,) = arguments.parse((arguments.CardArguments,), argv)
    paths = write_variant_cards(args.output_dir, args.repo_namespace)
    print("\n".join(str(path) for path in paths))
    return paths


def build_mosaics(argv=None, defaults: dict | None = None) -> dict:
    """A multi-label mosaic dataset from a single-label one."""
    from ..mosaics.builder import build_mosaic_dataset

    (args,) = arguments.parse((arguments.MosaicBuildArguments,), argv, defaults)
    paths = build_mosaic_dataset(args)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return paths


def benchmark(argv=None) -> dict:
    """Speed and memory of a variant, optionally side by side with the authors' model."""
    from ..benchmark.suite import results_markdown, run_suite

    (args,) = arguments.parse((arguments.SuiteArguments,), argv)
    results = run_suite(args)
    print(results_markdown(results))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


def benchmark_precision(argv=None) -> dict:
    """Whether bfloat16, float16 or int8 keep a model's answers: mAP, CF1 / OF1 and decisions against float32."""
    from ..evaluation.precision import compare_precisions, precision_table

    args, data_args = arguments.parse((arguments.PrecisionBenchmarkArguments, arguments.DataArguments), argv)
    splits = [data_args.eval_split_name, *(data_args.extra_eval_split_names or [])]
    results = compare_precisions(args.model, data_args, splits, args.dtypes, args.batch_size)
    print(precision_table(results))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


def benchmark_checks(argv=None, dataset: str | None = None):
    """Throughput of the sample checks on `dataset` (the embedded mosaics) repeated."""
    from ..benchmark.checks import run_checks_benchmark

    (args,) = arguments.parse((arguments.ChecksBenchmarkArguments,), argv)
    return run_checks_benchmark(args, dataset)


def benchmark_transfer(argv=None, dataset: str | None = None) -> dict:
    """Label transfer measured on the mosaic proxy (`dataset`: the embedded mosaics)."""
    from ..benchmark.transfer import run_transfer_benchmark

    (args,) = arguments.parse((arguments.TransferBenchmarkArguments,), argv)
    return run_transfer_benchmark(args, dataset, train)


def benchmark_prediction(argv=None, dataset: str | None = None) -> dict:
    """Prediction from image files against the bare model; `dataset`: the mosaics whose validation images are used."""
    from ..benchmark.prediction import model_and_processor, prediction_table, run_prediction_benchmark, validation_images

    (args,) = arguments.parse((arguments.PredictionBenchmarkArguments,), argv)
    model, processor = model_and_processor(args.model, args.threads)
    rows = run_prediction_benchmark(model, processor, validation_images(dataset), args.images, args.batch_size, args.workers)
    print(prediction_table(rows, args.batch_size))
    return rows


def compare_official_cvt(argv=None) -> None:
    """Our CvT backbone side by side with the authors' `cls_cvt.py`."""
    from ..benchmark.official_cvt import run_cvt_comparison

    (args,) = arguments.parse((arguments.CompareArguments,), argv)
    run_cvt_comparison(args)


def demo(argv=None) -> None:
    """Serve the Gradio demo of a model."""
    (args,) = arguments.parse((arguments.DemoArguments,), argv)
    if not args.model:
        raise ValueError("give --model (a saved model folder or Hub id), or set Q2L_MODEL")
    from ..demo.app import build_demo

    build_demo(args.model, args.device, dtype=args.dtype).launch(server_name=args.host, server_port=args.port)
