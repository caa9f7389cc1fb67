"""Model cards for Query2Label models, built with `huggingface_hub.ModelCard`.

Numbers have two sources and each says which: the paper's (labelled "reported by the paper") and ours, which come
only from `scripts/evaluate_model.py` / `scripts/train.py` reports and name the data they were measured on.
"""

from dataclasses import dataclass, field

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..evaluation.report import (
    EvaluationReport,
    extra_splits_markdown,
    label_thresholds_table,
    metrics_table,
    object_size_table,
    per_label_table,
)

PAPER_URL = "https://arxiv.org/abs/2107.10834"
CITATIONS = """```bibtex
@article{liu2021query2label,
  title   = {Query2Label: A Simple Transformer Way to Multi-Label Classification},
  author  = {Liu, Shilong and Zhang, Lei and Yang, Xiao and Su, Hang and Zhu, Jun},
  journal = {arXiv preprint arXiv:2107.10834},
  year    = {2021}
}

@inproceedings{ridnik2021asymmetric,
  title     = {Asymmetric Loss for Multi-Label Classification},
  author    = {Ridnik, Tal and Ben-Baruch, Emanuel and Zamir, Nadav and Noy, Asaf and Friedman, Itamar and Protter, Matan and Zelnik-Manor, Lihi},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}
```"""
MEASURED_KEYS = ("mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "OF1_top3")  # the card's columns


@dataclass
class CardContent:
    """What a Query2Label card says. `paper_results`: rows of {dataset, metric, value} reported by the paper;
    `measured`: a report of `scripts/evaluate_model.py` (or train.py's `eval_results.json`) and `measured_on` its data."""

    model_name: str
    repo_id: str
    summary: str
    architecture: str
    training: str
    limitations: str
    license: str = "apache-2.0"
    datasets: list[str] = field(default_factory=list)
    base_model: str | None = None
    paper_results: list[dict] = field(default_factory=list)
    measured: EvaluationReport | None = None
    measured_on: str | None = None
    measured_dataset_id: str | None = None
    figures: dict[str, str] = field(default_factory=dict)  # figure name -> path inside the repository


FIGURE_CAPTIONS = {
    "precision_recall": "Precision-recall curves, per label and micro-averaged",
    "ap_per_label": "Average precision per label",
    "map_by_size": "mAP by object size",
    "f1_threshold": "F1 against the threshold; dots mark the fitted per-label thresholds",
}


def _figure_caption(name: str) -> str:
    """The caption of a figure the training run saved (`attention_N`: the attention figure of evaluation image N+1)."""
    if name.startswith("attention_") and name[len("attention_") :].isdigit():
        number = int(name[len("attention_") :]) + 1
        if number == 1:
            return "Where each predicted label's query looks (last decoder layer, mean over heads), evaluation image 1"
        return f"The same for evaluation image {number}"
    return FIGURE_CAPTIONS.get(name, name.replace("_", " "))


def _figures_section(content: CardContent) -> str:
    if not content.figures:
        return ""
    lines = ["## Figures", "", "Made by the training run on the evaluation split (they are files of this repository).", ""]
    for name, path in content.figures.items():
        caption = _figure_caption(name)
        lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    return "\n".join(lines) + "\n"


def _eval_results(content: CardContent) -> list[EvalResult]:
    results = [
        EvalResult(
            task_type="image-classification",
            task_name="Multi-label image classification",
            dataset_type=row["dataset_id"],
            dataset_name=row["dataset"],
            dataset_split=row.get("split"),
            metric_type=row.get("metric_type", "mAP"),
            metric_name=row["metric"],
            metric_value=row["value"],
            source_name="Query2Label paper (reported, not measured here)",
            source_url=PAPER_URL,
        )
        for row in content.paper_results
    ]
    report = content.measured
    if report is not None:
        headline = {"mAP": report.mAP, "mAP_voc": report.mAP_voc, "CF1": report.at_threshold.CF1, "OF1": report.at_threshold.OF1}
        for key, value in headline.items():
            if value is not None:
                results.append(
                    EvalResult(
                        task_type="image-classification",
                        task_name="Multi-label image classification",
                        dataset_type=content.measured_dataset_id or "custom",
                        dataset_name=content.measured_on or "evaluation data",
                        dataset_split=report.eval_split,
                        metric_type=key,
                        metric_name=f"{key} (measured with this package)",
                        metric_value=round(100 * value, 2),
                    )
                )
    return results


def _measured_section(content: CardContent) -> str:
    if not content.measured:
        return (
            "No numbers have been measured with this package for this checkpoint yet: run `scripts/evaluate_model.py` and "
            "publish with `--eval_results` to add them."
        )
    report = content.measured
    text = (
        f"Measured with this package on {content.measured_on} ({report.num_images} images, threshold "
        f"{report.threshold}; values in percent). `mAP` is the non-interpolated mean AP (scikit-learn), `mAP_voc` the "
        "all-point interpolated flavour of the official evaluation.\n\n" + "\n".join(metrics_table(report, MEASURED_KEYS)) + "\n"
    )
    if report.at_label_thresholds is not None:
        text += (
            "\nAt the per-label thresholds saved in the config (`label_thresholds`, fitted on "
            f"{report.label_thresholds_fitted_on or 'this evaluation split'} to maximise each label's F1; the pipeline "
            "uses them by default; measured on the split they were fitted on, so optimistic for new data):\n\n"
            + "\n".join(label_thresholds_table(report, MEASURED_KEYS)) + "\n"
        )
    text += "\n".join(extra_splits_markdown(report)) + ("\n" if report.extra_splits or report.localization else "")
    if report.by_size is not None:
        low, high = report.by_size.area_thresholds
        text += f"\nmAP by object size (box area < {low}, < {high}, larger):\n\n" + "\n".join(object_size_table(report)) + "\n"
    if report.per_label:
        text += "\nAP per label:\n\n" + "\n".join(per_label_table(report, with_positives=False)) + "\n"
    if report.run is not None:
        run = report.run
        text += (
            f"\nRun details: weights: {run.weights}; backbone_weights: {run.backbone_weights}; train_runtime_s: "
            f"{run.train_runtime_s}; total_runtime_s: {run.total_runtime_s}; torch_threads: {run.torch_threads}.\n"
        )
    return text


def _paper_section(content: CardContent) -> str:
    if not content.paper_results:
        return ""
    rows = "\n".join(f"| {row['dataset']} | {row['metric']} | {row['value']} |" for row in content.paper_results)
    return (
        "\n### Reported by the paper\n\nThese numbers are quoted from the Query2Label paper "
        f"([arXiv 2107.10834]({PAPER_URL})); they were not measured with this package.\n\n"
        f"| dataset | metric | value |\n| --- | --- | --- |\n{rows}\n"
    )


def comparison_section(report: EvaluationReport, other: EvaluationReport, other_name: str) -> str:
    """A `## Compared with ...` section: this model's mAP against another run's (e.g. a baseline trained under the same
    budget), on the evaluation split, each extra split and by object size, from the two runs' reports."""
    rows = [("evaluation split: mAP", report.mAP, other.mAP)]
    if report.by_size is not None and other.by_size is not None:
        for name in ("small", "medium", "large"):
            ours, theirs = getattr(report.by_size, f"mAP_{name}"), getattr(other.by_size, f"mAP_{name}")
            if ours is not None and theirs is not None:
                rows.append((f"evaluation split: mAP_{name}", ours, theirs))
    for split, row in report.extra_splits.items():
        theirs = other.extra_splits.get(split)
        if theirs:
            rows.append((f"{split}: mAP", row.mAP, theirs.mAP))
    table = "\n".join(f"| {name} | {100 * ours:.2f} | {100 * theirs:.2f} | {100 * (ours - theirs):+.2f} |" for name, ours, theirs in rows)
    return (
        f"## Compared with the {other_name}\n\nBoth measured with this package on the same data (values in percent).\n\n"
        f"| measurement | this model | {other_name} | difference |\n| --- | --- | --- | --- |\n{table}\n\n"
    )


def add_comparison(card: ModelCard, report: EvaluationReport, other: EvaluationReport, other_name: str) -> ModelCard:
    """The card with a comparison section (see `comparison_section`) before its limitations."""
    text = card.text
    position = text.find("## Limitations")
    if position < 0:
        raise ValueError("The card has no `## Limitations` section to put the comparison before.")
    card.text = text[:position] + comparison_section(report, other, other_name) + text[position:]
    return card


def replace_measured_results(card: ModelCard, report: EvaluationReport, measured_on: str | None) -> ModelCard:
    """The same card with its measured results (metadata and the `## Results` section) taken from `report`.

    Results reported by the paper stay as they are."""
    content = CardContent(
        model_name=card.data.model_name or "model", repo_id="", summary="", architecture="", training="",
        limitations="", measured=report, measured_on=measured_on, measured_dataset_id=report.dataset,
    )  # fmt: skip
    kept = [r for r in card.data.eval_results or [] if "paper" in (r.source_name or "")]
    card.data.eval_results = kept + _eval_results(content) or None
    text = card.text
    start, end = text.find("## Results"), text.find("## Limitations")
    if start < 0 or end < start:
        raise ValueError("The card has no '## Results' section before '## Limitations' to put the results in.")
    paper = text.find("\n### Reported by the paper", start, end)
    tail = text[paper:end] if paper >= 0 else "\n"
    card.text = f"{text[:start]}## Results\n\n{_measured_section(content)}{tail}{text[end:]}"
    return ModelCard(f"---\n{card.data.to_yaml()}\n---\n{card.text}")


def render_card(content: CardContent) -> ModelCard:
    data = ModelCardData(
        model_name=content.model_name,
        library_name="transformers",
        pipeline_tag="image-classification",
        license=content.license,
        tags=["custom_code", "multi-label-image-classification", "query2label", "image-classification", "timm"],
        datasets=content.datasets or None,
        base_model=content.base_model,
        metrics=["mAP"],
        eval_results=_eval_results(content) or None,
    )
    body = f"""
# {content.model_name}

{content.summary}

## Usage

The model's code ships with the weights, so load it with `trust_remote_code=True`; that includes a multi-label
pipeline. Each label gets an independent sigmoid probability.

```python
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline
from PIL import Image

classifier = pipeline("image-classification", model="{content.repo_id}", trust_remote_code=True)
classifier(Image.open("photo.jpg"))                  # the labels that reach their thresholds, best first
classifier(Image.open("photo.jpg"), top_k=None)      # every label with its probability
classifier(Image.open("photo.jpg"), threshold=0.3)   # one threshold for every label

# or step by step
processor = AutoImageProcessor.from_pretrained("{content.repo_id}", trust_remote_code=True)
model = AutoModelForImageClassification.from_pretrained("{content.repo_id}", trust_remote_code=True)
probabilities = model(**processor(Image.open("photo.jpg"), return_tensors="pt")).logits.sigmoid()[0]
# attention maps: model(..., output_attentions=True).cross_attentions, one (batch, heads, labels, h, w) per decoder layer
```

## Architecture

{content.architecture}

## Training

{content.training}

## Results

{_measured_section(content)}{_paper_section(content)}
{_figures_section(content)}## Limitations

{content.limitations}

## Citation

{CITATIONS}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _is_hub_id(name: str | None) -> bool:
    """A Hub repository id (`ORG/NAME` or `NAME`), not a local path."""
    from pathlib import Path

    return bool(name) and not Path(name).exists() and name.count("/") <= 1 and not name.startswith((".", "/", "~"))


@dataclass
class TrainingSummary:
    """What a training run actually did, in the card's words: built by the training job from the options it ran
    with, so the card never describes a default the run did not use."""

    dataset_name: str | None
    eval_split_name: str
    is_embedded_demo: bool  # the repository's Fashion-MNIST mosaics
    backbone: str  # e.g. "`tf_efficientnet_lite0` (timm)"
    schedule: str  # epochs or steps, batch, optimizer, learning-rate schedule
    loss: str
    augmentation: str
    ema: str
    backbone_weights: str  # where the backbone's weights came from
    base_model: str | None  # the Hub id of the pretrained backbone weights, when the run started from them
    saved_weights: str  # regular or EMA
    label_transfer: dict | None = None  # {"source", "matched", "new", "dropped"} of a fine-tuning run
    frozen: str | None = None  # what of the backbone was frozen, in words
    hub_model_id: str | None = None
    training_image_size: int | None = None  # when training ran at another resolution than the model's (config.image_size)
    recipe: str | None = None  # the training recipe the run started from, in words
    recipe_overrides: dict | None = None  # {option: "used (recipe: value)"} for each recipe value the run changed


def _recipe_sentence(summary: TrainingSummary) -> str:
    if not summary.recipe:
        return ""
    changed = "; ".join(f"`{option}` {words}" for option, words in (summary.recipe_overrides or {}).items())
    return f"Recipe: {summary.recipe}" + (f", with these values overridden: {changed}. " if changed else ". ")


def _resolution_sentence(summary: TrainingSummary, image_size: int) -> str:
    """Says so when the model was trained at another resolution than the one its image processor resizes to."""
    trained = summary.training_image_size
    if trained is None or trained == image_size:
        return ""
    return (
        f" It was trained at {trained} x {trained} px; its image processor resizes to {image_size} x {image_size} px, "
        f"where it was evaluated (the trained model sees its objects {'larger' if image_size > trained else 'smaller'} there)."
    )


def _transfer_sentence(summary: TrainingSummary) -> str:
    """What a fine-tuning run did with each label of the model it started from, and what it froze."""
    text = ""
    transfer = summary.label_transfer
    if transfer:
        matched = ", ".join(f"{new} (from {old})" if new != old else new for new, old in transfer["matched"].items())
        text += (
            f" Started from {transfer['source']}: labels matched to it, keeping their query and classifier row: "
            f"{matched or 'none'}; new labels, initialised afresh: {', '.join(transfer['new']) or 'none'}; labels of "
            f"{transfer['source']} dropped: {', '.join(transfer['dropped']) or 'none'}."
        )
    if summary.frozen:
        text += f" {summary.frozen}"
    return text


def _feature_map_words(config) -> str:
    """Which feature map the label queries attend to, from the config's `backbone_kwargs`."""
    chosen = list((config.backbone_kwargs or {}).get("out_indices") or [])
    if config.fuse_feature_levels and len(chosen) > 1:
        width = f", every level projected to {config.feature_fusion_channels} channels first" if getattr(config, "feature_fusion_channels", None) else ""
        return (
            f"stage-{chosen[0]} feature grid with stage {', '.join(map(str, chosen[1:]))} projected, upsampled and added "
            f"onto it (`fuse_feature_levels`{width}): a denser grid than the last stage's that keeps its features"
        )
    if chosen and chosen != [-1]:
        return f"feature map of stage {chosen[-1]} (`backbone_kwargs` `out_indices` {chosen}), a denser grid than its last stage's"
    return "last feature map"


def training_model_card(config, report: EvaluationReport, summary: TrainingSummary) -> ModelCard:
    """The card `scripts/train.py` writes next to the weights it saves."""
    is_embedded = summary.is_embedded_demo
    dataset = "the embedded Fashion-MNIST mosaic set (validation split)" if is_embedded else f"{summary.dataset_name} ({summary.eval_split_name} split)"
    head = (
        f"the Query2Label head (hidden size {config.hidden_size}, {config.encoder_layers} encoder and {config.decoder_layers} "
        f"decoder layers, {config.num_attention_heads} heads, feed-forward {config.intermediate_size}); one learnable "
        f"query per label cross-attends to the backbone's {_feature_map_words(config)}, a per-label linear layer gives "
        "the logits"
        if config.classifier_head == "query2label"
        else "the baseline head: global average pooling and one linear layer"
    )
    labels = ", ".join(config.id2label.values())
    content = CardContent(
        model_name=f"Query2Label {config.backbone or config.backbone_config.model_type} {config.image_size}px" + (" (Fashion-MNIST mosaics demo)" if is_embedded else ""),
        repo_id=summary.hub_model_id or "ORG/MODEL",
        summary=(
            f"A multi-label image classifier over {config.num_labels} labels ({labels}), trained with this package's "
            f"`scripts/train.py`."
            + (" It is a small demonstration model: the images are synthetic mosaics of Fashion-MNIST garments." if is_embedded else "")
        ),
        architecture=f"Backbone {summary.backbone} at {config.image_size} x {config.image_size} px, {head}."
        + _resolution_sentence(summary, config.image_size),
        training=(
            _recipe_sentence(summary) + f"{summary.schedule}, loss {summary.loss}, {summary.augmentation}, {summary.ema}. Backbone weights: "
            f"{summary.backbone_weights}. Saved weights: {summary.saved_weights}." + _transfer_sentence(summary)
        ),
        limitations=(
            "Trained on synthetic 128-pixel mosaics of 28-pixel grayscale garments: it does not transfer to photographs. "
            "Use it to try the pipeline, not as a clothing detector."
            if is_embedded
            else "Scores are calibrated only on the training distribution; choose per-label thresholds on held-out data."
        ),
        license="mit" if is_embedded else "apache-2.0",
        datasets=[summary.dataset_name] if _is_hub_id(summary.dataset_name) else [],
        base_model=summary.base_model,
        measured=report,
        measured_on=dataset,
        measured_dataset_id="fashion-mnist-mosaic" if is_embedded else summary.dataset_name,
        figures=report.figures,
    )
    return render_card(content)


# What the paper evaluated on, as the model index names it: no Hub dataset holds COCO 2014's val2014 split as such.
COCO_2014 = {"dataset": "MS-COCO 2014 (val2014, 40,504 images)", "dataset_id": "coco-2014", "split": "validation"}


def _provenance(variant, facts, family) -> str:
    if not facts.official_weights:
        return (
            "The authors have not published weights for this variant: this card describes its configuration "
            f"(`modeling_q2l.create_model(\"{variant.name}\")`) and quotes the paper's number. Making the weights "
            f"needs a training run on MS-COCO 2014 with the official recipe below at {variant.image_size} px (from the "
            f"pretrained {facts.backbone_name}, or from a published 448 px release), then `scripts/evaluate_model.py` on "
            "val2014 for the numbers."
        )
    return (
        "Converted from the authors' release (github SlongLiu/query2labels) with "
        f"`scripts/convert_official_checkpoint.py --variant {variant.name}`. " + family.conversion_check
    )


def variant_card(name: str, repo_id: str, measured: EvaluationReport | None = None, measured_on: str | None = None, measured_dataset_id: str | None = None) -> ModelCard:
    """The card of a paper variant (`modeling_q2l.list_variants()`), with this package's measured results when given:
    everything it says of the variant comes from its family's record (`zoo/families/*.py`)."""
    from ..zoo.official_backbones import official_family
    from ..zoo.variants import get_variant

    variant = get_variant(name)
    facts, family = variant.facts, official_family(variant.official_backbone)
    head = (
        f"hidden size {variant.hidden_size} (the backbone's channels, no input projection), 1 encoder and 2 decoder "
        "layers, 4 heads, feed-forward 8192, post-norm, no self-attention among label queries"
    )
    content = CardContent(
        model_name=variant.name,
        repo_id=repo_id,
        summary=(
            f"Query2Label with a {facts.backbone_name} backbone ({facts.pretraining} pretraining) at "
            f"{variant.image_size} x {variant.image_size} px, for multi-label classification of the 80 MS-COCO object "
            f"categories. {_provenance(variant, facts, family)}"
        ),
        architecture=(
            f"{facts.backbone_name} computes a feature map (stride {family.feature_stride}); a DETR-style "
            f"transformer ({head}) lets one learnable query per label cross-attend to it, with 2-D sine positional "
            "encodings computed for the actual input size; a per-label linear layer (GroupWiseLinear) turns each "
            "query into a logit. `output_attentions=True` returns where each label looks (`cross_attentions`)."
        ),
        training=(
            "Official recipe on MS-COCO 2014 train: AdamW (weight decay 1e-2), one-cycle schedule with peak learning rate "
            f"1e-4 and 20% warm-up, 80 epochs with early stopping, batch 64-128, {variant.image_size} px square resize, "
            "RandAugment (the authors' cutout option drew no patch), mixed precision, EMA of the weights (decay 0.9997); "
            "Asymmetric Loss with gamma_neg 2, gamma_pos 0, no clip. This package runs the same recipe on any dataset: "
            f"`accelerate launch scripts/train.py --variant {variant.name} --dataset_name DATASET --bf16` (every value "
            "can be overridden by its own option; early stopping is not applied)."
        ),
        limitations=(
            "Trained on MS-COCO: 80 everyday object categories, photographs; other domains and label sets need "
            "fine-tuning. Scores are independent per label; the pipeline keeps the labels that reach their thresholds "
            "(0.5 unless per-label thresholds fitted on held-out data are saved in the config: `scripts/evaluate_model.py "
            "--fit_thresholds`). Inputs are square-resized as in training."
        ),
        license=facts.license,
        base_model=facts.base_model,
        paper_results=[{**COCO_2014, "metric": "mAP (reported by the paper)", "value": facts.paper_coco_map}],
        measured=measured,
        measured_on=measured_on,
        measured_dataset_id=measured_dataset_id,
    )
    return render_card(content)


def variant_repo_name(name: str) -> str:
    """The Hub repository name of a variant's card, e.g. `q2l-r101-448-coco`."""
    return name.lower() + "-coco"


def write_variant_cards(output_dir, repo_namespace: str = "ORG") -> list:
    """`output_dir/<variant>.md` for every paper variant; returns the paths."""
    from pathlib import Path

    from ..zoo.registry import list_variants

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in list_variants():
        variant_card(name, f"{repo_namespace}/{variant_repo_name(name)}").save(output / f"{name}.md")
        paths.append(output / f"{name}.md")
    return paths
