"""Attention maps, their localisation metrics, attention figures and evaluation plots."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    EMBEDDED_DATASET,
    FASHION_NAMES,
    REPO,
    tiny_config,
    validation_images,
)
from PIL import Image

from modeling_q2l import (
    Query2LabelForMultiLabelClassification,
    Query2LabelImageProcessor,
)
from modeling_q2l.evaluation.attention_figures import explain_image, label_indices
from modeling_q2l.evaluation.attention_maps import (
    LocalizationCounts,
    add_image,
    box_mask,
    label_attention_maps,
    localization_summary,
    rollout_through_encoder,
    upsample_maps,
)
from modeling_q2l.evaluation.plots import (
    f1_against_threshold,
    precision_recall_curve,
    write_evaluation_plots,
)


def fashion_model(**overrides) -> Query2LabelForMultiLabelClassification:
    config = tiny_config(
        num_labels=10,
        id2label=dict(enumerate(FASHION_NAMES)),
        label2id={name: i for i, name in enumerate(FASHION_NAMES)},
        image_size=128,
        **overrides,
    )
    torch.manual_seed(0)
    return Query2LabelForMultiLabelClassification(config).eval()


@pytest.fixture(scope="module")
def saved_fashion_model(tmp_path_factory):
    """A random tiny model over the embedded dataset's 10 labels, saved with its processor."""
    folder = tmp_path_factory.mktemp("q2l-fashion")
    model = fashion_model()
    model.save_pretrained(folder)
    Query2LabelImageProcessor(size={"height": 128, "width": 128}).save_pretrained(folder)
    return folder


def test_maps_are_the_models_cross_attention_per_layer_and_head():
    model = fashion_model(num_decoder_layers=2)
    pixels = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        cross = model(pixel_values=pixels, output_attentions=True).cross_attentions
    per_head = label_attention_maps(model, pixels, layer=0, per_head=True)
    assert per_head.maps.shape == (3, 4, 10, 4, 4)  # (batch, heads, labels, h, w)
    torch.testing.assert_close(per_head.maps, cross[0])
    last = label_attention_maps(model, pixels)  # default: the last layer, mean over heads
    torch.testing.assert_close(last.maps, cross[1].mean(dim=1))
    torch.testing.assert_close(last.maps.sum(dim=(-2, -1)), torch.ones(3, 10))
    torch.testing.assert_close(label_attention_maps(model, pixels, layer=0, head=2).maps, cross[0][:, 2])
    with pytest.raises(ValueError, match="the decoder has 2 layers"):
        label_attention_maps(model, pixels, layer=2)
    with pytest.raises(ValueError, match="4 attention heads"):
        label_attention_maps(model, pixels, head=4)


def test_rollout_through_the_encoder():
    maps = torch.softmax(torch.randn(2, 10, 16), dim=-1)
    identity = torch.eye(16).expand(2, 4, 16, 16)
    torch.testing.assert_close(rollout_through_encoder(maps, [identity]), maps)  # no mixing: unchanged
    # An encoder that sends every token to token 5 moves half of each map's mass there.
    to_five = torch.zeros(2, 4, 16, 16)
    to_five[..., 5] = 1
    rolled = rollout_through_encoder(maps, [to_five])
    torch.testing.assert_close(rolled[..., 5], 0.5 + 0.5 * maps[..., 5])
    torch.testing.assert_close(rolled.sum(-1), torch.ones(2, 10))


def test_box_masks_and_the_pointing_game():
    # a 128 x 128 image on a 64 x 64 grid: the box [32, 0, 32, 64] covers grid columns 16..31, rows 0..31
    mask = box_mask([[32, 0, 32, 64]], (128, 128), (64, 64))
    assert mask.sum() == 16 * 32 and mask[:32, 16:32].all()
    counts = LocalizationCounts.zeros(3)
    maps = torch.full((3, 64, 64), 1 / 64**2)  # label 0: uniform
    maps[1] = 0
    maps[1, 10, 20] = 1.0  # label 1: all mass on one point inside its box
    maps[2] = 0
    maps[2, 50, 50] = 1.0  # label 2: all mass outside its box
    boxes = {0: [[32, 0, 32, 64]], 1: [[32, 0, 32, 64]], 2: [[0, 0, 16, 16], [32, 0, 32, 64]]}
    add_image(counts, maps, boxes, (128, 128))
    summary = localization_summary(counts, ["a", "b", "c"])
    rows = {row["label"]: row for row in summary["per_label"]}
    assert rows["a"]["mass_in_boxes"] == pytest.approx(rows["a"]["chance"]) == pytest.approx(16 * 32 / 64**2)
    assert rows["b"]["pointing_game"] == 1 and rows["b"]["mass_in_boxes"] == pytest.approx(1)
    assert rows["c"]["pointing_game"] == 0 and rows["c"]["mass_in_boxes"] == 0
    assert rows["c"]["chance"] == pytest.approx((16 * 32 + 8 * 8) / 64**2)  # the union of both boxes
    assert summary["pairs"] == 3
    with pytest.raises(ValueError, match="needs data with boxes"):
        localization_summary(LocalizationCounts.zeros(2), ["a", "b"])


def test_upsampled_maps_keep_their_mass_where_it_was():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0] = 1
    maps[0, 1, 3, 2] = 1
    big = upsample_maps(maps, (128, 128))
    torch.testing.assert_close(big.sum(dim=(-2, -1)), torch.ones(1, 2))
    assert big[0, 0, :32, :32].sum() > 0.5 and big[0, 1, 96:, 64:96].sum() > 0.5


@pytest.mark.slow
def test_evaluate_reports_localization_with_its_chance_level(saved_fashion_model, tmp_path):
    report_path = tmp_path / "report.json"
    command = [
        sys.executable, str(REPO / "scripts" / "evaluate_model.py"), "--model", str(saved_fashion_model),
        "--dataset_name", str(EMBEDDED_DATASET), "--split", "out_of_layout", "--max_eval_samples", "40",
        "--localization", "--output", str(report_path), "--plots", str(tmp_path / "plots"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pointing game" in result.stdout and "chance" in result.stdout
    localization = json.loads(report_path.read_text())["localization"]
    assert localization["pairs"] >= 40  # every present label of every image (1 to 4 objects each)
    assert sum(row["pairs"] for row in localization["per_label"]) == localization["pairs"]
    assert 0 < localization["chance"] < 0.5 and 0 <= localization["mass_in_boxes"] <= 1
    for name in ("precision_recall", "ap_per_label", "f1_threshold", "map_by_size"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as figure:
            assert figure.width > 400 and figure.height > 300


def test_localization_needs_boxes(saved_fashion_model, tmp_path):
    from modeling_q2l.cli.arguments import DataArguments, EvaluationArguments
    from modeling_q2l.evaluation.evaluate import run_evaluation

    parquet = next((EMBEDDED_DATASET / "data").glob("validation-*.parquet"))
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(parquet).drop(["objects"]).slice(0, 8), tmp_path / "no_boxes.parquet")
    args = EvaluationArguments(model=str(saved_fashion_model), localization=True)
    data_args = DataArguments(dataset_name=str(tmp_path / "no_boxes.parquet"), eval_split_name="train", class_names=",".join(FASHION_NAMES))
    with pytest.raises(ValueError, match="needs boxes"):
        run_evaluation(args, data_args)


def test_precision_recall_and_f1_curves_match_scikit_learn():
    from sklearn.metrics import f1_score
    from sklearn.metrics import precision_recall_curve as sk_curve

    rng = np.random.default_rng(0)
    labels = (rng.random((300, 7)) < 0.3).astype(int)
    scores = np.clip(labels * 0.3 + rng.random((300, 7)) * 0.7, 0, 1).round(2)  # ties included
    precision, recall = precision_recall_curve(scores[:, 2], labels[:, 2] == 1)
    sk_precision, sk_recall, _ = sk_curve(labels[:, 2], scores[:, 2])
    ours = sorted(zip(recall[1:], precision[1:]))
    theirs = sorted(zip(sk_recall[:-1], sk_precision[:-1]))
    np.testing.assert_allclose(ours, theirs)
    per_label, overall = f1_against_threshold(scores, labels)
    index = 40  # threshold 0.40
    predicted = scores >= 0.40
    np.testing.assert_allclose(per_label[index], f1_score(labels, predicted, average=None, zero_division=0))
    assert overall[index] == pytest.approx(f1_score(labels.ravel(), predicted.ravel()))


def test_plots_skip_size_without_boxes_and_check_thresholds(tmp_path):
    from modeling_q2l.evaluation.report import evaluation_report

    rng = np.random.default_rng(1)
    labels = (rng.random((50, 12)) < 0.3).astype(int)
    scores = rng.random((50, 12))
    names = [f"label {i}" for i in range(12)]
    report = evaluation_report(scores, labels, names)
    paths = write_evaluation_plots(tmp_path, scores, labels, names, report, [0.4] * 12)
    assert sorted(paths) == ["ap_per_label", "f1_threshold", "precision_recall"]
    with pytest.raises(ValueError, match="3 label thresholds for 12 labels"):
        write_evaluation_plots(tmp_path, scores, labels, names, report, [0.5] * 3)


def test_explain_image_shows_the_labels_above_threshold_and_those_asked_for(saved_fashion_model):
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(saved_fashion_model, trust_remote_code=True).eval()
    processor = Query2LabelImageProcessor.from_pretrained(saved_fashion_model)
    image = validation_images(1, "RGB")[0]
    explained = explain_image(model, processor, image, threshold=0.5)
    expected = [i for i in np.argsort(-explained.scores) if explained.scores[i] >= 0.5]
    assert explained.shown == expected and len(expected) > 5
    assert explained.maps.shape == (10, image.height, image.width)
    lowest = int(np.argmin(explained.scores))
    asked = explain_image(model, processor, image, labels=[FASHION_NAMES[lowest]], threshold=0.99, per_head=True)
    assert asked.shown == [lowest] and asked.head_maps.shape == (4, 10, image.height, image.width)
    with pytest.raises(ValueError, match="Unknown labels \\['Hat'\\]"):
        label_indices(FASHION_NAMES, ["Hat"])


@pytest.mark.slow
def test_visualize_attention_script(saved_fashion_model, tmp_path):
    images = validation_images(2, "RGB")
    for index, image in enumerate(images):
        image.save(tmp_path / f"mosaic{index}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    command = [
        sys.executable, str(REPO / "scripts" / "visualize_attention.py"), "--model", str(saved_fashion_model),
        str(tmp_path / "mosaic0.png"), str(tmp_path / "mosaic1.png"), str(tmp_path / "broken.png"),
        "--output_dir", str(tmp_path / "figures"), "--per_head", "--threshold", "0.5",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1  # one unreadable file
    assert "broken.png: cannot read the image" in result.stderr
    written = result.stdout.split()
    assert [Path(path).name for path in written] == ["0000_mosaic0_attention.png", "0001_mosaic1_attention.png"]
    with Image.open(written[0]) as figure:
        assert figure.height > 5 * 250  # the mean over heads, then a row per head (4)


@pytest.mark.slow
def test_the_training_run_saves_its_figures_and_its_card_shows_them(tmp_path):
    from helpers import tiny_training_argv
    from huggingface_hub import ModelCard

    from modeling_q2l.cli.commands import train as main

    report = main(tiny_training_argv(tmp_path / "run"))
    expected = {"precision_recall", "ap_per_label", "f1_threshold", "map_by_size", "attention_0", "attention_1"}
    assert set(report.figures) == expected
    card = ModelCard.load(tmp_path / "run" / "README.md").text
    for name, path in report.figures.items():
        assert (tmp_path / "run" / path).is_file() and f"]({path})" in card


def test_the_demo_cards_figures_are_in_the_repository():
    import re

    card = (REPO / "model_cards" / "Q2L-fashion-mnist-mosaic-demo.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", card)
    assert len(links) >= 6
    for link in links:
        assert (REPO / "model_cards" / link).is_file(), link


def test_the_readmes_figure_and_screenshot_are_in_the_repository():
    import re

    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (REPO / "README.md").read_text())
    assert "docs/images/attention_stride16.png" in links and "docs/images/demo_app.png" in links
    for link in links:
        with Image.open(REPO / link) as image:
            assert image.width >= 600


def coloured_squares(count: int, generator: torch.Generator):
    """Images of 1 or 2 squares of 16 px in 6 colours (one label per colour) on black, with their boxes."""
    colours = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.float32)
    images, labels, boxes = -torch.ones(count, 3, 64, 64), torch.zeros(count, 6), []
    for index in range(count):
        present = torch.randperm(6, generator=generator)[: int(torch.randint(1, 3, (1,), generator=generator))]
        image_boxes = {}
        for label in present.tolist():
            x, y = torch.randint(0, 48, (2,), generator=generator).tolist()
            images[index, :, y : y + 16, x : x + 16] = 2 * colours[label][:, None, None] - 1
            labels[index, label] = 1
            image_boxes[label] = [[x, y, 16, 16]]
        boxes.append(image_boxes)
    return images, labels, boxes


@pytest.mark.slow
def test_a_tiny_trained_model_points_at_its_objects_far_above_chance():
    """Trained for 150 steps on coloured squares, with stride-8 features (an 8 x 8 grid): the maps of unseen images
    point inside the right square far more often than a random point would."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    config = tiny_config(num_labels=6, encoder_layers=0, backbone_kwargs={"out_indices": [2]}, dropout=0.0, attention_dropout=0.0)
    model = Query2LabelForMultiLabelClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    images, labels, _ = coloured_squares(2048, generator)
    for _ in range(150):
        batch = torch.randint(0, len(images), (32,), generator=generator)
        model(pixel_values=images[batch], labels=labels[batch]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    test_images, test_labels, test_boxes = coloured_squares(200, generator)
    attention = label_attention_maps(model, test_images)
    assert ((attention.scores > 0.5).float() == test_labels).float().mean() > 0.95  # it learnt the task
    counts = LocalizationCounts.zeros(6)
    for image_maps, boxes in zip(upsample_maps(attention.maps, (64, 64)), test_boxes):
        add_image(counts, image_maps, boxes, (64, 64))
    summary = localization_summary(counts, [f"colour {i}" for i in range(6)])
    assert summary["chance"] == pytest.approx(16 * 16 / 64**2)
    assert summary["pointing_game"] > 5 * summary["chance"] and summary["mass_in_boxes"] > 2 * summary["chance"]


@pytest.mark.slow
def test_without_matplotlib_the_run_saves_its_model_and_says_why_there_are_no_figures(tmp_path, caplog, monkeypatch):
    import sys

    from helpers import tiny_training_argv

    from modeling_q2l.cli.commands import train as main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: every import of it fails
    report = main(tiny_training_argv(tmp_path / "run"))
    assert report.figures == {} and (tmp_path / "run" / "model.safetensors").is_file()
    assert "needs matplotlib, which is not installed" in caplog.text and "[demo]" in caplog.text
