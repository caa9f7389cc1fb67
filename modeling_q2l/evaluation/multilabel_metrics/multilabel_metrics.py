"""Multi-label classification metrics as a Hugging Face `evaluate` module.

    import evaluate
    from modeling_q2l.evaluation.metrics import MULTILABEL_METRICS_MODULE

    metric = evaluate.load(MULTILABEL_METRICS_MODULE)  # the folder of this file
    metric.compute(predictions=scores, references=labels)  # (num_images, num_labels) each

The numbers are those of `modeling_q2l.evaluation.metrics.multilabel_metrics` (the module only wraps it).
"""

import datasets
import evaluate
import numpy as np

from modeling_q2l.evaluation.metrics import multilabel_metrics

_DESCRIPTION = """
Metrics of multi-label image classification as the Query2Label paper reports them: mAP (non-interpolated, as
scikit-learn's average_precision_score), mAP_voc (all-point interpolated, the official Query2Label evaluation),
per-label averaged precision, recall and F1 (CP, CR, CF1), overall ones (OP, OR, OF1), and the same six among each
image's top 3 labels (ML-GCN convention), plus AP per label. Labels of -1 are unknown and ignored everywhere.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: `(num_images, num_labels)` scores, e.g. sigmoid probabilities.
    references: `(num_images, num_labels)` multi-hot labels: 1 present, 0 absent, -1 unknown.
    threshold: probability at or above which a label is predicted (CP ... OF1): one number or one per label.
    top_k: k of the top-k metrics (default 3).
Returns:
    mAP, mAP_voc, CP, CR, CF1, OP, OR, OF1, CP_top3 ... OF1_top3 (fractions in [0, 1]), AP (one value per label,
    None for labels without a positive) and num_evaluated_labels.
"""

_CITATION = """
@article{liu2021query2label,
  title   = {Query2Label: A Simple Transformer Way to Multi-Label Classification},
  author  = {Liu, Shilong and Zhang, Lei and Yang, Xiao and Su, Hang and Zhu, Jun},
  journal = {arXiv preprint arXiv:2107.10834},
  year    = {2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int8")),
                }
            ),
        )

    def _compute(self, predictions, references, threshold=0.5, top_k: int = 3):
        return multilabel_metrics(np.asarray(predictions), np.asarray(references), threshold=threshold, top_k=top_k)
