"""Every command-line argument of the package's commands, in one place (HfArgumentParser dataclasses).

`DataArguments` is the one dataset-argument set: training, evaluation and prediction read their splits through it;
it is the data layer's own typed spec (`data.splits.DatasetSpec`). Training adds `ModelArguments` and
`Query2LabelTrainingArguments` (transformers' `TrainingArguments` with the general recipe's defaults), the training
layer's specs (`training.options`), in the style of transformers' `run_image_classification.py`; each other command
has one dataclass of its own. `modeling_q2l.cli.commands` parses them and calls the package.
"""

import json
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..data.splits import DatasetSpec
from ..export.layer_groups import DEFAULT_KEEP_FLOAT
from ..mosaics.layouts import HELD_OUT_LAYOUTS
from ..training.options import ModelOptions, TrainingOptions
from ..zoo.recipes import choose_recipe
from ..zoo.variants import VARIANTS


def inference_dtype_field():
    return field(
        default="float32",
        metadata={
            "help": "float32; bfloat16 (3 to 4 times as fast at Q2L-R101-448 on a CPU with AMX, slower without; half the memory); float16; or int8 (the folder's int8 model that scripts/quantize.py wrote last: model.int8.onnx run by ONNX Runtime, or model.int8.pt2 compiled by PyTorch at the first batch of each size).",
            "choices": ["float32", "bfloat16", "float16", "int8"],
        },
    )


# ---- training (the options are the training and data layers' own typed specs; these names are the command line's)


@dataclass
class ModelArguments(ModelOptions):
    """`scripts/train.py`: the model, its loss and EMA (`training.options.ModelOptions`)."""


@dataclass
class DataArguments(DatasetSpec):
    """The dataset and its splits, for training, evaluation and prediction (`data.splits.DatasetSpec`)."""


@dataclass
class Query2LabelTrainingArguments(TrainingOptions):
    """transformers' `TrainingArguments` with the general recipe's defaults and this package's augmentations
    (`training.options.TrainingOptions`)."""


# ---- evaluation and prediction (with `DataArguments` for the dataset)

@dataclass
class EvaluationArguments:
    """`scripts/evaluate_model.py`: which model, and what to report besides the metrics (the data: `DataArguments`)."""

    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: CUDA when present)."})
    dtype: str = inference_dtype_field()
    image_size: int | None = field(
        default=None,
        metadata={"help": "Evaluate at this square resolution instead of the saved image processor's, e.g. to choose a model's --inference_image_size (the folder is not changed)."},
    )
    threshold: float = field(
        default=0.5, metadata={"help": "One threshold for the CP/CR/OP/OR metrics (also reported at the model's per-label thresholds)."}
    )
    fit_thresholds: bool = field(
        default=False,
        metadata={"help": "Refit the per-label thresholds on this split (F1-maximising) and save them into the model folder's config."},
    )
    localization: bool = field(
        default=False,
        metadata={"help": "Also measure where the label queries look (pointing game, attention mass in boxes); needs boxes."},
    )
    attention_layer: int = field(default=-1, metadata={"help": "Decoder layer of the maps for --localization (-1: last)."})
    through_encoder: bool = field(
        default=False, metadata={"help": "Carry the maps back through the encoder's self-attention (rollout)."}
    )
    attention_head: int | None = field(
        default=None, metadata={"help": "Measure one attention head's maps instead of the mean over heads."}
    )
    plots: str | None = field(
        default=None, metadata={"help": "Write evaluation plots (PR curves, AP per label, mAP by size, F1 vs threshold) here."}
    )
    output: str | None = field(default=None, metadata={"help": "Write the report as JSON here."})
    markdown: str | None = field(default=None, metadata={"help": "Write the Markdown tables here."})


@dataclass
class PredictArguments:
    """`scripts/predict.py`: image files and folders after the options, or a dataset split (`DataArguments`)."""

    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    threshold: float | None = field(
        default=None, metadata={"help": "One probability threshold for every label (default: the model's per-label thresholds, else 0.5)."}
    )
    thresholds: str | None = field(default=None, metadata={"help": "JSON file {label: threshold} overriding single labels."})
    format: str = field(default="json", metadata={"help": "json or csv."})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: CUDA when present)."})
    dtype: str = inference_dtype_field()
    num_workers: int | None = field(
        default=None, metadata={"help": "Processes that decode and resize images while the model runs (default: 1 per 2 cores, at most 4; 0: none)."}
    )


@dataclass
class VisualizeArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id (a Query2Label head)."})
    output_dir: str = field(metadata={"help": "Folder for the figures (one PNG per image)."})
    labels: list[str] = field(default_factory=list, metadata={"help": "Labels to draw besides the predicted ones."})
    layer: int = field(default=-1, metadata={"help": "Decoder layer whose cross-attention is drawn (-1: the last)."})
    per_head: bool = field(default=False, metadata={"help": "Add one row of panels per attention head."})
    through_encoder: bool = field(
        default=False, metadata={"help": "Carry the maps back through the encoder's self-attention (rollout)."}
    )
    threshold: float | None = field(
        default=None, metadata={"help": "One threshold for every label (default: the model's per-label thresholds)."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: CUDA when present)."})
    dtype: str = inference_dtype_field()


# ---- the Hub, export, the zoo, data building, benchmarks and the demo

@dataclass
class PublishArguments:
    model: str = field(metadata={"help": "The model folder to publish (from train.py or the converter)."})
    repo_id: str = field(metadata={"help": "Hub repository, e.g. ORG/q2l-resnet101-448-coco."})
    variant: str | None = field(default=None, metadata={"help": "Paper variant whose card template to use."})
    eval_results: str | None = field(default=None, metadata={"help": "Report of scripts/evaluate_model.py (JSON)."})
    measured_on: str | None = field(
        default=None, metadata={"help": "Words for the data the results were measured on (default: from the report)."}
    )
    private: bool = field(default=False, metadata={"help": "Create a private repository."})
    revision: str | None = field(default=None, metadata={"help": "Branch to upload to (created if missing)."})
    commit_message: str = field(default="Upload Query2Label model", metadata={"help": "Commit message."})
    dry_run: str | None = field(default=None, metadata={"help": "Write the repository folder here; upload nothing."})
    baseline_results: str | None = field(
        default=None,
        metadata={"help": "Another run's eval_results.json (e.g. the global-average-pooling baseline) to compare with in the card."},
    )
    baseline_name: str = field(
        default="global-average-pooling baseline", metadata={"help": "What --baseline_results is, in the card's words."}
    )
    onnx: bool = field(
        default=False, metadata={"help": "Also export the model to ONNX (model.onnx, checked against PyTorch) into the folder."}
    )
    space: str | None = field(
        default=None,
        metadata={"help": "Also build a Gradio Space running the model (its repo id, ORG/NAME); with --dry_run DIR it is written to DIR-space."},
    )


@dataclass
class ExportArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    output: str | None = field(default=None, metadata={"help": "ONNX file to write (default: model.onnx in the folder)."})
    opset: int = field(default=18, metadata={"help": "ONNX opset."})
    tolerance: float = field(default=1e-4, metadata={"help": "Largest allowed |logit difference| to PyTorch."})


@dataclass
class QuantizeArguments:
    """`scripts/quantize.py`: which model, how many calibration images, which layers stay float32 (the data:
    `DataArguments`, whose training split calibrates and whose evaluation split measures)."""

    model: str = field(metadata={"help": "Saved model folder (with --backend onnxruntime its model.onnx is made when missing)."})
    backend: str = field(
        default="onnxruntime",
        metadata={
            "help": "onnxruntime: model.int8.onnx, loads at once; pytorch: model.int8.pt2 (needs torchao), compiled by the process that runs it at the first batch of each size (about a minute on two cores), then faster on CPUs with VNNI or AMX, and the path measured on AVX2-only CPUs (BENCHMARKS.md).",
            "choices": ["onnxruntime", "pytorch"],
        },
    )
    num_calibration: int = field(default=300, metadata={"help": "Training images the activation ranges are calibrated on."})
    keep_float: list[str] = field(
        default_factory=lambda: list(DEFAULT_KEEP_FLOAT),
        metadata={"help": "Layer groups kept in float32: first_convolution, depthwise_convolutions, backbone, input_projection, attention_products, transformer, or none."},
    )
    calibration_method: str = field(default="minmax", metadata={"help": "How activation ranges are calibrated with --backend onnxruntime: minmax, percentile or entropy."})
    reduce_range: bool = field(default=True, metadata={"help": "--backend pytorch: 7-bit activations, which CPUs without VNNI (AVX2 only) need to keep the answers; a model that will only run on CPUs with VNNI or AMX keeps them slightly better with --reduce_range false."})
    output: str | None = field(default=None, metadata={"help": "Where to write the int8 model (default: the backend's model.int8.onnx or model.int8.pt2 in the folder)."})
    evaluate: bool = field(default=True, metadata={"help": "Compare float32 and int8 on the evaluation split (and --extra_eval_split_names)."})


@dataclass
class ConversionArguments:
    checkpoint: str = field(metadata={"help": "Official checkpoint (torch pickle holding `state_dict`)."})
    config: str = field(metadata={"help": "JSON of the official training arguments (config_new.json)."})
    output_dir: str = field(metadata={"help": "Folder to write the converted model into."})
    labels: str | None = field(
        default=None,
        metadata={"help": "Label names: coco (default), voc, or a file (JSON list or one name per line)."},
    )
    variant: str | None = field(
        default=None, metadata={"help": "Paper variant the checkpoint must match, e.g. Q2L-R101-448 (optional)."}
    )
    allow_unsafe_pickle: bool = field(
        default=False,
        metadata={"help": "Unpickle the checkpoint fully when weights_only loading fails. Only for trusted files."},
    )


@dataclass
class CardArguments:
    output_dir: str = field(default="model_cards", metadata={"help": "Where to write the cards."})
    repo_namespace: str = field(default="ORG", metadata={"help": "Hub namespace used in the usage snippets."})


@dataclass
class MosaicBuildArguments:
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the dataset (required; a folder that is not empty is refused without --overwrite_output_dir)."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the dataset in a non-empty --output_dir (its parquet files and card)."}
    )
    num_train: int = field(default=4000, metadata={"help": "Number of training mosaics."})
    num_validation: int = field(default=1000, metadata={"help": "Number of validation mosaics."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    fashion_mnist_dir: str | None = field(
        default=None, metadata={"help": "Folder of the Fashion-MNIST idx files (the source without --dataset_name)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A single-label dataset (Hub id or local folder) instead of Fashion-MNIST."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "The split the mosaics are drawn from."})
    image_column_name: str = field(default="image", metadata={"help": "Image column of the source dataset."})
    label_column_name: str = field(default="label", metadata={"help": "Label column (a ClassLabel) of the source."})
    canvas_size: int = field(default=128, metadata={"help": "Side of the mosaics in pixels."})
    min_object_size: int = field(default=16, metadata={"help": "Smallest object side in pixels."})
    max_object_size: int = field(default=80, metadata={"help": "Largest object side in pixels."})
    max_objects: int = field(default=4, metadata={"help": "Most objects per mosaic."})
    varied_background_probability: float = field(
        default=0.4,
        metadata={"help": "Share of train/validation mosaics with a varied background (any colour, gradient or texture) and objects of any tint."},
    )
    outfit_probability: float = field(
        default=0.5, metadata={"help": "Share of mosaics whose classes come from one outfit (Fashion-MNIST only)."}
    )
    out_of_layout_split: str | None = field(
        default="test",
        metadata={"help": "Source split of the out-of-layout test mosaics (Fashion-MNIST: its test split); none to skip."},
    )
    num_out_of_layout: int = field(
        default=1000,
        metadata={"help": "Out-of-layout mosaics: every background varied, any object tint, independent classes."},
    )
    held_out_layouts: list[str] = field(
        default_factory=lambda: list(HELD_OUT_LAYOUTS),
        metadata={"help": f"Held-out layout test splits (layout_NAME) to build: any of {', '.join(HELD_OUT_LAYOUTS)}."},
    )
    num_per_layout: int = field(default=500, metadata={"help": "Mosaics per held-out layout split (0: none)."})
    jpeg_quality: int = field(default=85, metadata={"help": "JPEG quality."})
    image_format: str = field(default="JPEG", metadata={"help": "JPEG (compact) or PNG (lossless)."})


@dataclass
class SuiteArguments:
    variant: str = field(
        default="Q2L-R101-448",
        metadata={"help": f"A paper variant ({', '.join(VARIANTS)}), `demo`, or a folder holding a Query2Label config.json."},
    )
    backbone: str | None = field(default=None, metadata={"help": "Another timm backbone (default: the variant's)."})
    image_size: int | None = field(default=None, metadata={"help": "Input resolution (default: the variant's)."})
    num_labels: int | None = field(default=None, metadata={"help": "Labels (default: the variant's, 80)."})
    label_groups: int | None = field(default=None, metadata={"help": "Group decoding with this many queries."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4], metadata={"help": "Inference batch sizes."})
    train_batch_size: int = field(default=2, metadata={"help": "Batch of the training step (0 skips it)."})
    dtype: str = field(default="float32", metadata={"help": "Weights and inputs: float32, float16 or bfloat16."})
    int8: bool = field(
        default=False,
        metadata={"help": "With --compare_official or --compare_gains_off: also time ours quantized to int8 (by --int8_backend)."},
    )
    int8_backend: str = field(
        default="onnxruntime",
        metadata={"help": "How --int8 quantizes, as scripts/quantize.py --backend: onnxruntime or pytorch.", "choices": ["onnxruntime", "pytorch"]},
    )
    int8_calibration: int = field(default=4, metadata={"help": "Random images that calibrate --int8 (its speed does not depend on them)."})
    reference_dtype: str | None = field(
        default=None,
        metadata={"help": "The side-by-side reference's dtype (default: --dtype), e.g. float32 to time ours in bfloat16 against the authors' model in float32."},
    )
    autocast: str | None = field(
        default=None, metadata={"help": "Mixed precision over float32 weights: float16 or bfloat16 (torch.autocast)."}
    )
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, ..."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's)."})
    repeats: int = field(default=5, metadata={"help": "Timed runs per measurement (the median is reported)."})
    warmup: int = field(default=2, metadata={"help": "Untimed runs before each measurement."})
    compile: bool = field(
        default=False,
        metadata={"help": "On CPU: the model's compiled backbone (config.compile_cpu_inference); elsewhere torch.compile."},
    )
    fast_cpu_inference: bool = field(
        default=True, metadata={"help": "The model's fast CPU kernels (config.fast_cpu_inference); false for PyTorch's defaults."}
    )
    compare_official: str | None = field(
        default=None, metadata={"help": "Local copy of the authors' repository: run their model side by side."}
    )
    compare_gains_off: bool = field(
        default=False,
        metadata={"help": "Run ours with fast_cpu_inference off side by side (where the authors' code cannot run)."},
    )
    label_sweep: list[int] = field(
        default_factory=list, metadata={"help": "Label counts of the head-time sweep, e.g. 80 1000 9605."}
    )
    sweep_groups: int | None = field(default=None, metadata={"help": "Also sweep with group decoding (G queries)."})
    onnx: str | None = field(
        default=None, metadata={"help": "An ONNX export of this configuration (scripts/export_onnx.py): time onnxruntime too."}
    )
    time_onnx_export: bool = field(
        default=False, metadata={"help": "Export this configuration to ONNX (random weights) and time the export."}
    )
    output: str | None = field(default=None, metadata={"help": "Write the results as JSON here."})


@dataclass
class PrecisionBenchmarkArguments:
    """`scripts/benchmark_precision.py`: a model in float32 against the same model in lower precisions, on the
    evaluation split and `--extra_eval_split_names` (`DataArguments`)."""

    model: str = field(metadata={"help": "Saved model folder (int8 needs its model.int8.onnx: scripts/quantize.py)."})
    dtypes: list[str] = field(default_factory=lambda: ["bfloat16"], metadata={"help": "Compared with float32: bfloat16, float16, int8."})
    batch_size: int = field(default=32, metadata={"help": "Images per forward pass."})
    output: str | None = field(default=None, metadata={"help": "Write the results as JSON here."})


@dataclass
class ChecksBenchmarkArguments:
    copies: int = field(default=5, metadata={"help": "How many times the 4,000 training mosaics are repeated."})
    num_proc: int = field(default=2, metadata={"help": "Processes of the parallel run."})


@dataclass
class TransferBenchmarkArguments:
    output_dir: str = field(default="outputs/transfer", metadata={"help": "Where the runs and results go."})
    source_epochs: float = field(default=3.5, metadata={"help": "Epochs of the source model on 4,000 mosaics."})
    finetune_samples: int = field(default=400, metadata={"help": "Training mosaics of the fine-tuning runs."})
    finetune_epochs: float = field(default=5.0, metadata={"help": "Epochs of each fine-tuning run."})


@dataclass
class CompareArguments:
    official_repo: str = field(metadata={"help": "A local copy of the authors' query2labels repository."})
    full_size: bool = field(default=True, metadata={"help": "Also compare CvT-w24 at 384 px (277 M parameters)."})



@dataclass
class PredictionBenchmarkArguments:
    model: str | None = field(default=None, metadata={"help": "Saved model folder (default: the main job's architecture with random weights)."})
    images: int = field(default=10000, metadata={"help": "Image files to predict."})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    workers: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Numbers of decoding workers to time."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's)."})


@dataclass
class DemoArguments:
    """`app.py`: the Gradio demo (in a Space, the model comes from the `Q2L_MODEL` variable)."""

    model: str | None = field(
        default_factory=lambda: os.environ.get("Q2L_MODEL"), metadata={"help": "Saved model folder or Hub id (default: $Q2L_MODEL)."}
    )
    host: str = field(default_factory=lambda: os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), metadata={"help": "Address to serve on."})
    port: int = field(default_factory=lambda: int(os.environ.get("GRADIO_SERVER_PORT", 7860)), metadata={"help": "Port to serve on."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: CUDA when present)."})
    dtype: str = inference_dtype_field()


# ---- parsing


def parse_training_arguments(argv=None, defaults: dict | None = None, default_dataset_recipe: str | None = None):
    """(model, data, training) arguments from the command line (or one JSON file), starting from a recipe
    (`zoo.recipes`): `--recipe`, else the `--variant`'s, else `default_dataset_recipe` when the run trains on the
    entry point's default dataset (`defaults["dataset_name"]`, e.g. the embedded mosaics, which the package itself never
    assumes), else `general`. Options given override the recipe's values; `model_args.recipe` names the recipe used."""
    parser = HfArgumentParser((ModelArguments, DataArguments, Query2LabelTrainingArguments))
    defaults = dict(defaults or {})
    argv = sys.argv[1:] if argv is None else list(argv)
    from_file = None
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(os.path.abspath(argv[0]), encoding="utf-8") as handle:
            from_file = json.load(handle)
        given = from_file
    else:  # the three options that choose the recipe, before the recipe's values become the defaults
        given = {key: value for key, value in vars(parser.parse_known_args(argv)[0]).items() if value is not None}
    on_default_dataset = given.get("dataset_name", defaults.get("dataset_name")) == defaults.get("dataset_name")
    recipe = choose_recipe(given.get("recipe"), given.get("variant"), default_dataset_recipe if on_default_dataset else None)
    start = {**defaults, **recipe.values, "recipe": recipe.name}
    if from_file is not None:
        return parser.parse_dict({**start, **from_file})
    parser.set_defaults(**start)
    return parser.parse_args_into_dataclasses(args=argv)


def parse_with_inputs(dataclass_types, argv=None, inputs_required: bool = True):
    """Options into `dataclass_types` (HfArgumentParser) and the image files and folders given after them; an unknown
    option, or no input where one is required, stops with a message saying so."""
    usage = "%(prog)s [options] IMAGE_OR_FOLDER [IMAGE_OR_FOLDER ...]" + ("" if inputs_required else "  (or, with no image, --dataset_name: a dataset's split)")
    parser = HfArgumentParser(dataclass_types, usage=usage)
    args_and_inputs = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    *args, inputs = args_and_inputs
    unknown_options = [value for value in inputs if value.startswith("--")]
    if unknown_options:
        raise SystemExit(f"Unknown options: {unknown_options}.")
    if inputs_required and not inputs:
        raise SystemExit("Give at least one image file or folder after the options.")
    return (*args, inputs)


def parse(dataclass_types, argv=None, defaults: dict | None = None):
    """Any other command's arguments: a tuple of `dataclass_types` instances."""
    parser = HfArgumentParser(dataclass_types)
    parser.set_defaults(**(defaults or {}))
    return parser.parse_args_into_dataclasses(args=argv)
