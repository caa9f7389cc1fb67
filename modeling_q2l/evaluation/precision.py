"""Whether a lower precision keeps a model's answers: the same model in float32 and in bfloat16, float16 or int8
(`load_classifier`'s dtypes) on the same splits, with mAP, CF1 / OF1 at the model's per-label thresholds and the
share of (image, label) decisions at those thresholds that stay what float32 decided."""

import numpy as np

from ..data.splits import DatasetSpec, SplitPreparer, load_split
from ..data.transforms import MultiLabelImageDataset
from .evaluate import predict_scores
from .predict import load_classifier
from .report import evaluation_report, labels_in_model_order

REFERENCE = "float32"


def compare_precisions(model_path: str, data_args: DatasetSpec, split_names: list[str], dtypes: list[str], batch_size: int = 32) -> dict:
    """{split: {dtype: {"mAP", "CF1", "OF1", "decisions_unchanged", "largest_score_change"}}} with float32 first;
    every model runs on the CPU, each split through the same preprocessing."""
    models = {dtype: load_classifier(model_path, "cpu", dtype) for dtype in [REFERENCE, *[d for d in dtypes if d != REFERENCE]]}
    reference_model, processor = models[REFERENCE]
    label_names = [reference_model.config.id2label[index] for index in range(reference_model.config.num_labels)]
    thresholds = np.asarray(reference_model.config.label_thresholds or [0.5] * len(label_names))
    results = {}
    preparer = None
    for name in split_names:
        raw = load_split(data_args, name)
        preparer = preparer or SplitPreparer.for_dataset(data_args, raw)
        split = preparer.prepare(raw, split_name=name)
        labels = labels_in_model_order(split, preparer.encoder, label_names)
        dataset = MultiLabelImageDataset(split, preparer.image_column, processor)
        scores = {dtype: predict_scores(model, dataset, batch_size, progress=False) for dtype, (model, _) in models.items()}
        decided = scores[REFERENCE] >= thresholds
        results[name] = {}
        for dtype, values in scores.items():
            report = evaluation_report(values, labels, label_names, label_thresholds=thresholds)
            results[name][dtype] = {
                "mAP": report.mAP,
                "CF1": report.at_label_thresholds.CF1,
                "OF1": report.at_label_thresholds.OF1,
                "decisions_unchanged": float(((values >= thresholds) == decided).mean()),
                "largest_score_change": float(np.abs(values - scores[REFERENCE]).max()),
            }
    return results


def precision_table(results: dict) -> str:
    """The comparison as Markdown: one row per split and dtype, differences to float32 in points."""
    lines = ["| split | dtype | mAP | vs float32 | CF1 / OF1 at the thresholds | vs float32 | decisions unchanged |", "|" + " --- |" * 7]
    for split, rows in results.items():
        base = rows[REFERENCE]
        for dtype, row in rows.items():
            lines.append(
                f"| {split} | {dtype} | {100 * row['mAP']:.2f} | {100 * (row['mAP'] - base['mAP']):+.2f} | "
                f"{100 * row['CF1']:.2f} / {100 * row['OF1']:.2f} | {100 * (row['CF1'] - base['CF1']):+.2f} / "
                f"{100 * (row['OF1'] - base['OF1']):+.2f} | {100 * row['decisions_unchanged']:.2f}% |"
            )
    return "\n".join(lines)
