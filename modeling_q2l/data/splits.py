"""The one place that turns a dataset's description (`DatasetSpec`, which the command line's `DataArguments` is) into
splits: used by training, evaluation and prediction alike.

- `load_training_splits(data_args)`: (train, evaluation) raw splits; without an evaluation split, part of train is
  held out. `load_streaming_splits` does the same for `--streaming`.
- `load_split(data_args, name)`: one named split (evaluation, prediction, the extra splits of the final report).
- `SplitPreparer.for_dataset(data_args, dataset)`: the label column and format, detected once, and `prepare(dataset,
  name)` that checks every sample of a split with them (`prepare_split`).

Bad samples (unreadable or truncated images, ids out of range, unknown names, empty label lists) stop the run
with an error naming the sample, unless `skip_bad_samples` is set: then they are dropped, counted and reported.
Reading the stored data itself is `data.loading`.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .labels import BadSampleError, LabelEncoder, detect_label_format, parse_label_names, resolve_label_column
from .loading import load_coco_instances, load_raw_datasets, open_image

logger = logging.getLogger(__name__)

STREAMING_EVAL_SAMPLES = 1000  # evaluation rows held in memory with --streaming and no --max_eval_samples


def _first(dataset, count: int | None):
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))


DEFAULT_EVAL_SPLIT = "validation"  # without it, training holds part of train out


@dataclass
class DatasetSpec:
    """Which dataset and splits, how to read its images and labels, how to check its samples: what every function of
    this module takes. The command line's `DataArguments` (training, evaluation and prediction) is this class."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub id, local folder (Hub layout, imagefolder) or parquet file (scripts/train.py: the embedded set)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_split_name: str = field(default="train", metadata={"help": "Training split."})
    eval_split_name: str = field(
        default=DEFAULT_EVAL_SPLIT, metadata={"help": "Evaluation split (evaluate_model.py and predict.py: the split they read; training without a `validation` split holds --train_val_split of train out).", "aliases": ["--split"]}
    )
    extra_eval_split_names: list[str] | None = field(
        default=None,
        metadata={"help": "More splits to evaluate the final model on, reported apart (recipe fashion-mnist-mosaic: out_of_layout and the layout_* splits); a name the dataset lacks stops the run before training."},
    )
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train held out when the dataset has no evaluation split."}
    )
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column_name: str | None = field(
        default=None, metadata={"help": "Column holding the labels (default: labels, label, objects or tags)."}
    )
    label_format: str = field(default="auto", metadata={"help": "auto, ids, names, multi_hot or objects."})
    class_names: str | None = field(
        default=None, metadata={"help": "Label names: coco, voc, a names file, or a comma-separated list."}
    )
    coco_annotations: str | None = field(default=None, metadata={"help": "COCO instances JSON for training."})
    coco_image_dir: str | None = field(default=None, metadata={"help": "Image folder of --coco_annotations."})
    coco_eval_annotations: str | None = field(default=None, metadata={"help": "COCO instances JSON for evaluation."})
    coco_eval_image_dir: str | None = field(default=None, metadata={"help": "Image folder of the evaluation JSON."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation (and extra) splits."})
    skip_bad_samples: bool = field(
        default=False, metadata={"help": "Drop (and count) unreadable images and invalid labels instead of failing."}
    )
    allow_empty_labels: bool = field(
        default=False, metadata={"help": "Keep samples without any label as all-negative examples."}
    )
    verify_images: bool = field(default=True, metadata={"help": "Decode every image once before training."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the training split as it downloads, without writing it to disk (needs --max_steps)."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes that check the samples and encode the labels (cached between runs)."}
    )
    localization_split_name: str | None = field(
        default=None,
        metadata={"help": "Training: also measure where the final model's label queries look on this split (one of --extra_eval_split_names, with boxes; recipe fashion-mnist-mosaic: out_of_layout)."},
    )
    area_thresholds: list[int] | None = field(
        default=None,
        metadata={"help": "Box areas splitting small/medium/large objects (default: the dataset card's, else COCO's 1024 9216)."},
    )


def _raw_splits(data_args: DatasetSpec):
    if not data_args.dataset_name:
        raise ValueError("Pass --dataset_name (a Hub id, a local folder or a parquet file) or --coco_annotations.")
    return load_raw_datasets(data_args.dataset_name, data_args.dataset_config_name)


def _named_split(raw, data_args: DatasetSpec, name: str):
    if name not in raw:
        raise ValueError(f"No split {name!r} in {data_args.dataset_name} (splits: {list(raw)}).")
    return raw[name]


def dataset_description(data_args: DatasetSpec) -> str | None:
    """What the data arguments name: the dataset, or the COCO file(s)."""
    return data_args.dataset_name or data_args.coco_eval_annotations or data_args.coco_annotations


def load_training_splits(data_args: DatasetSpec):
    """(train, evaluation) `datasets.Dataset`s, each cut to `--max_train_samples` / `--max_eval_samples`."""
    if data_args.coco_annotations:
        train = load_coco_instances(data_args.coco_annotations, data_args.coco_image_dir or ".")
        evaluation = (
            load_coco_instances(data_args.coco_eval_annotations, data_args.coco_eval_image_dir or ".")
            if data_args.coco_eval_annotations
            else None
        )
    else:
        raw = _raw_splits(data_args)
        train = _named_split(raw, data_args, data_args.train_split_name)
        evaluation = raw.get(data_args.eval_split_name)
        if evaluation is None and data_args.eval_split_name != DEFAULT_EVAL_SPLIT:  # named, not the default
            _named_split(raw, data_args, data_args.eval_split_name)
    if evaluation is None:
        logger.info("No %r split: holding out %.0f%% of train.", data_args.eval_split_name, 100 * data_args.train_val_split)
        parts = train.train_test_split(test_size=data_args.train_val_split, seed=0)
        train, evaluation = parts["train"], parts["test"]
    return _first(train, data_args.max_train_samples), _first(evaluation, data_args.max_eval_samples)


def load_streaming_splits(data_args: DatasetSpec, max_steps: int | None):
    """(train stream, evaluation `Dataset` held in memory) for `--streaming`: the training split is read as it
    downloads and never written to disk; the evaluation split's first `--max_eval_samples` (default 1,000) examples are
    kept in memory, or, without one, the first ones of the training stream are held out."""
    from datasets import Dataset, load_dataset

    if max_steps is None or max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a streamed dataset has no length to count epochs by.")
    if data_args.coco_annotations or not data_args.dataset_name:
        raise ValueError("--streaming reads --dataset_name (a Hub id or local data files), not --coco_annotations.")
    try:
        raw = load_dataset(data_args.dataset_name, data_args.dataset_config_name, streaming=True)
    except Exception as error:
        raise ValueError(f"Cannot stream dataset {data_args.dataset_name!r} ({type(error).__name__}: {error}).") from error
    train = _named_split(raw, data_args, data_args.train_split_name)
    count = data_args.max_eval_samples or STREAMING_EVAL_SAMPLES
    if data_args.eval_split_name in raw:
        source = raw[data_args.eval_split_name]
    else:
        logger.info("No %r split: holding out the first %d streamed training examples.", data_args.eval_split_name, count)
        source, train = train, train.skip(count)
    evaluation = Dataset.from_list(list(source.take(count)), features=source.features)
    if data_args.max_train_samples is not None:
        train = train.take(data_args.max_train_samples)
    return train, evaluation


def load_split(data_args: DatasetSpec, name: str | None = None):
    """One split, `name` or `--eval_split_name`, cut to `--max_eval_samples`. With COCO files: the evaluation file
    (`--coco_eval_annotations`, else `--coco_annotations`)."""
    if data_args.coco_eval_annotations or data_args.coco_annotations:
        if data_args.coco_eval_annotations:
            dataset = load_coco_instances(data_args.coco_eval_annotations, data_args.coco_eval_image_dir or ".")
        else:
            dataset = load_coco_instances(data_args.coco_annotations, data_args.coco_image_dir or ".")
    else:
        dataset = _named_split(_raw_splits(data_args), data_args, name or data_args.eval_split_name)
    return _first(dataset, data_args.max_eval_samples)


def load_extra_splits(data_args: DatasetSpec) -> dict:
    """The splits of `--extra_eval_split_names` ({name: Dataset}); a name the dataset lacks stops with the splits it
    has. COCO files and streams have no extra splits."""
    names = data_args.extra_eval_split_names or []
    if not names:
        return {}
    if getattr(data_args, "streaming", False) or data_args.coco_annotations:
        raise ValueError("--extra_eval_split_names needs a dataset read from disk (a Hub id or folder without --streaming, not COCO files).")
    raw = _raw_splits(data_args)
    return {name: _first(_named_split(raw, data_args, name), data_args.max_eval_samples) for name in names}


@dataclass
class PreparedSplit:
    """A split ready for training: the dataset (bad samples removed), its multi-hot labels and what was skipped."""

    dataset: object
    labels: np.ndarray  # (num_samples, num_labels)
    skipped: dict  # reason -> count


def check_sample(encoder: LabelEncoder, raw_labels, raw_image, verify_images: bool = True):
    """(multi-hot vector, None, None) for a usable sample, else (None, the error message, the reason to count)."""
    try:
        vector = encoder(raw_labels)
    except BadSampleError as error:
        return None, str(error), error.reason
    except (TypeError, ValueError, KeyError) as error:  # e.g. a label that is not an id
        return None, f"{type(error).__name__}: {error}", "invalid labels"
    if verify_images:
        try:
            open_image(raw_image)
        except (OSError, ValueError, SyntaxError) as error:  # what PIL raises on unreadable or truncated files
            return None, f"unreadable image ({error})", "unreadable image"
    return vector, None, None


class _BatchChecker:
    """`datasets.map` function (batched): each sample's multi-hot vector, or why it cannot be used. A class, not a
    closure, so that `num_proc` workers can pickle it and `datasets` can fingerprint it for its cache."""

    def __init__(self, encoder: LabelEncoder, image_column: str, label_column: str, verify_images: bool):
        self.encoder, self.image_column, self.label_column = encoder, image_column, label_column
        self.verify_images = verify_images

    def __call__(self, batch: dict) -> dict:
        width = len(self.encoder.names)
        vectors, problems, reasons = [], [], []
        for raw_labels, raw_image in zip(batch[self.label_column], batch[self.image_column]):
            vector, problem, reason = check_sample(self.encoder, raw_labels, raw_image, self.verify_images)
            vectors.append(vector.tolist() if vector is not None else [0.0] * width)
            problems.append(problem)
            reasons.append(reason)
        return {"_q2l_labels": vectors, "_q2l_problem": problems, "_q2l_reason": reasons}


def prepare_split(
    dataset,
    encoder: LabelEncoder,
    image_column: str,
    label_column: str,
    skip_bad_samples: bool = False,
    verify_images: bool = True,
    split_name: str = "train",
    num_proc: int | None = None,
) -> PreparedSplit:
    """Encode every sample's labels and (optionally) check that its image decodes.

    Runs through `datasets.map`: `num_proc` processes, a progress bar, and for datasets read from files a cache, so a
    second run over the same data skips the work. A bad sample raises `BadSampleError` naming it, or with
    `skip_bad_samples` is dropped and counted.
    """
    from datasets import Image as ImageFeature
    from datasets import List, Value

    if image_column not in dataset.features:
        raise ValueError(
            f"No column {image_column!r} in the {split_name} split (columns: {list(dataset.features)}); pass "
            "--image_column_name."
        )
    raw = dataset.cast_column(image_column, ImageFeature(decode=False))
    features = raw.features.copy()
    features.update(
        {"_q2l_labels": List(Value("float32")), "_q2l_problem": Value("string"), "_q2l_reason": Value("string")}
    )
    checked = raw.map(
        _BatchChecker(encoder, image_column, label_column, verify_images),
        batched=True,
        batch_size=256,
        num_proc=num_proc if num_proc and num_proc > 1 and len(raw) >= 2 * num_proc else None,
        features=features,
        desc=f"Checking the {split_name} split" + (" (labels and images)" if verify_images else " (labels)"),
    )
    problems = checked["_q2l_problem"]
    bad = [index for index, problem in enumerate(problems) if problem is not None]
    if bad and not skip_bad_samples:
        index = bad[0]
        path = raw[index][image_column].get("path") if isinstance(raw[index][image_column], dict) else None
        raise BadSampleError(
            f"{split_name} sample {index}" + (f" ({path})" if path else "") + f": {problems[index]}. Fix the data, or "
            "pass --skip_bad_samples to drop such samples (they are counted and reported)."
            + (f" {len(bad) - 1} more samples are bad." if len(bad) > 1 else "")
        )
    skipped = Counter(checked["_q2l_reason"][index] for index in bad)
    if skipped:
        logger.warning("%s: skipped %d bad samples: %s", split_name, sum(skipped.values()), dict(skipped))
    if len(bad) == len(dataset):
        raise ValueError(f"The {split_name} split has no usable sample.")
    keep = np.setdiff1d(np.arange(len(dataset)), np.asarray(bad, dtype=np.int64))
    labels = np.asarray(checked.select_columns("_q2l_labels").with_format("numpy")["_q2l_labels"], dtype=np.float32)
    labels = labels.reshape(len(dataset), len(encoder.names))[keep]
    if bad:
        dataset = dataset.select(keep)
    return PreparedSplit(dataset, labels, dict(skipped))


@dataclass
class SplitPreparer:
    """The label column and encoding of a dataset, detected once, and the sample checks the data arguments ask for."""

    encoder: LabelEncoder
    image_column: str
    label_column: str
    skip_bad_samples: bool = False
    verify_images: bool = True
    num_proc: int | None = None

    @classmethod
    def for_dataset(cls, data_args: DatasetSpec, dataset) -> "SplitPreparer":
        """Detect the label column and format on `dataset` (for a stream: its held-in-memory evaluation rows)."""
        label_column = resolve_label_column(dataset, data_args.label_column_name)
        encoder = detect_label_format(
            dataset, label_column, parse_label_names(data_args.class_names), data_args.label_format, data_args.allow_empty_labels
        )
        return cls(
            encoder=encoder,
            image_column=data_args.image_column_name,
            label_column=label_column,
            skip_bad_samples=data_args.skip_bad_samples,
            verify_images=data_args.verify_images,
            num_proc=data_args.preprocessing_num_workers,
        )

    def prepare(self, dataset, split_name: str) -> PreparedSplit:
        return prepare_split(
            dataset,
            self.encoder,
            self.image_column,
            self.label_column,
            skip_bad_samples=self.skip_bad_samples,
            verify_images=self.verify_images,
            split_name=split_name,
            num_proc=self.num_proc,
        )
