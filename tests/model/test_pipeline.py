"""The multi-label pipeline that ships with the weights, on models with more labels than the stock default of 5."""

from pathlib import Path

import pytest
import torch
from helpers import tiny_config, validation_images
from PIL import Image
from transformers import ImageClassificationPipeline, pipeline

from modeling_q2l import (
    Query2LabelConfig,
    Query2LabelForMultiLabelClassification,
    Query2LabelImageClassificationPipeline,
    Query2LabelImageProcessor,
)


def sigmoid_scores(model, processor, image) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(model(**processor(image, return_tensors="pt")).logits[0])


@pytest.fixture(scope="module", params=[12, 20])
def saved(request, tmp_path_factory):
    """A saved folder whose per-label thresholds let the even labels of the first image through, not the odd ones."""
    num_labels = request.param
    names = [f"label {i}" for i in range(num_labels)]
    config = tiny_config(num_labels=num_labels, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(config).optimize_for_inference()  # as the pipeline runs it
    processor = Query2LabelImageProcessor(size={"height": 64, "width": 64})
    image = validation_images(1)[0]
    scores = sigmoid_scores(model, processor, image)
    model.config.label_thresholds = [
        float(score - 1e-4 if index % 2 == 0 else min(score + 1e-4, 1.0)) for index, score in enumerate(scores)
    ]
    folder = tmp_path_factory.mktemp(f"q2l-{num_labels}")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    image.save(folder / "image.png")
    return folder, model, processor, image, scores


def test_trust_remote_code_builds_the_shipped_pipeline(saved):
    folder = saved[0]
    classifier = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    assert type(classifier).__name__ == "Query2LabelImageClassificationPipeline"
    assert type(classifier).__module__.startswith("transformers_modules.")


def test_top_k_none_gives_every_label_best_first(saved):
    folder, model, _, image, scores = saved
    answer = pipeline("image-classification", model=str(folder), trust_remote_code=True)(image, top_k=None)
    assert len(answer) == model.config.num_labels > 5
    assert [a["score"] for a in answer] == sorted((a["score"] for a in answer), reverse=True)
    for item in answer:  # independent sigmoid probabilities
        index = model.config.label2id[item["label"]]
        assert item["score"] == pytest.approx(scores[index].item(), abs=1e-6)


def test_by_default_the_labels_that_reach_their_thresholds(saved):
    folder, model, _, image, scores = saved
    answer = pipeline("image-classification", model=str(folder), trust_remote_code=True)(image)
    expected = sorted(range(model.config.num_labels), key=lambda i: -scores[i].item())
    expected = [model.config.id2label[i] for i in expected if i % 2 == 0]
    assert [a["label"] for a in answer] == expected


def test_top_k_and_threshold(saved):
    folder, model, _, image, scores = saved
    classifier = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    best = torch.argsort(scores, descending=True)
    assert [a["label"] for a in classifier(image, top_k=3)] == [model.config.id2label[i] for i in best[:3].tolist()]
    cut = scores.median().item()
    above = classifier(image, threshold=cut)
    assert {a["label"] for a in above} == {model.config.id2label[i] for i in range(len(scores)) if scores[i] >= cut}
    assert classifier(image, threshold=1.0) == []  # nothing reaches the threshold: an empty answer
    assert len(classifier(image, top_k=2, threshold=0.0)) == 2
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        classifier(image, top_k=0)
    with pytest.raises(ValueError, match="threshold must lie in"):
        classifier(image, threshold=2)
    with pytest.raises(ValueError, match="sigmoid"):
        classifier(image, function_to_apply="softmax")


def test_batches_paths_and_images(saved):
    folder, model, *_ = saved
    classifier = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    images = validation_images(3)
    batch = classifier(images, top_k=None, batch_size=2)
    assert len(batch) == 3 and all(len(answer) == model.config.num_labels for answer in batch)
    for image, answer in zip(images, batch):
        alone = classifier(image, top_k=None)
        assert [a["label"] for a in answer] == [a["label"] for a in alone]
        assert [a["score"] for a in answer] == pytest.approx([a["score"] for a in alone], abs=1e-5)
    assert classifier(str(folder / "image.png"), top_k=4) == classifier(Image.open(folder / "image.png"), top_k=4)


def test_without_remote_code_the_package_pipeline_and_the_stock_one(saved):
    folder, model, processor, image, _ = saved
    ours = pipeline("image-classification", model=model, image_processor=processor, pipeline_class=Query2LabelImageClassificationPipeline)
    assert len(ours(image, top_k=None)) == model.config.num_labels
    stock = pipeline("image-classification", model=model, image_processor=processor)
    assert isinstance(stock, ImageClassificationPipeline)
    assert len(stock(image, top_k=None)) == 5  # the stock pipeline's default: why ours ships with the weights
    assert len(stock(image, top_k=model.config.num_labels)) == model.config.num_labels


def test_thresholds_must_fit_the_labels():
    with pytest.raises(ValueError, match="one threshold per label"):
        tiny_config(num_labels=6, label_thresholds=[0.5] * 5)
    with pytest.raises(ValueError, match="must lie in"):
        tiny_config(num_labels=2, label_thresholds=[0.5, 1.5])
    assert Query2LabelConfig(backbone="test_resnet", num_labels=3, hidden_size=96).label_thresholds is None


def test_a_sixteen_bit_image_is_not_clipped_to_white(saved):
    folder, model, processor, *_ = saved
    import numpy as np

    gray = Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16))
    classifier = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    expected = sigmoid_scores(model, processor, gray)
    answer = classifier(gray, top_k=None)
    for item in answer:
        assert item["score"] == pytest.approx(expected[model.config.label2id[item["label"]]].item(), abs=1e-6)
    white = sigmoid_scores(model, processor, Image.new("RGB", (64, 64), (255, 255, 255)))
    assert not torch.allclose(expected, white)
    assert Path(folder / "pipeline_query2label.py").is_file()
    gray.save(path := folder.parent / "sixteen.png")  # a path too: transformers' load_image would clip it to white
    for given in (str(path), path):
        for item in classifier(given, top_k=None):
            assert item["score"] == pytest.approx(expected[model.config.label2id[item["label"]]].item(), abs=1e-6)


def test_a_path_is_turned_upright_by_its_exif_orientation(saved, tmp_path):
    """Opening paths itself, the pipeline still applies the EXIF orientation, as transformers' load_image does."""
    folder, model, processor, image, _ = saved
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned by 90 degrees
    image.transpose(Image.Transpose.ROTATE_90).save(path := tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = Image.open(path).transpose(Image.Transpose.ROTATE_270)  # what orientation 6 means
    sideways = sigmoid_scores(model, processor, Image.open(path))
    expected = sigmoid_scores(model, processor, upright)
    assert not torch.allclose(expected, sideways, atol=1e-4)  # the orientation matters to this model
    classifier = pipeline("image-classification", model=model, image_processor=processor, pipeline_class=Query2LabelImageClassificationPipeline)
    for item in classifier(str(path), top_k=None):
        assert item["score"] == pytest.approx(expected[model.config.label2id[item["label"]]].item(), abs=1e-6)
