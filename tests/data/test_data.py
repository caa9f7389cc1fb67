import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image

from modeling_q2l import Query2LabelImageProcessor
from modeling_q2l.data.labels import BadSampleError, detect_label_format
from modeling_q2l.data.loading import load_coco_instances, open_image, to_rgb
from modeling_q2l.data.splits import prepare_split
from modeling_q2l.data.transforms import MultiLabelImageDataset, training_augmentation

NAMES = ["cat", "dog", "car"]


def png(mode="RGB", size=(12, 10), color=None) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if color is not None else (0 if mode in ("L", "P", "I;16") else (10, 20, 30)[: len(mode)])).save(buffer, format="PNG")
    return buffer.getvalue()


def image_dataset(labels, feature, images=None):
    images = images or [{"bytes": png(), "path": None} for _ in labels]
    return Dataset.from_dict({"image": images, "labels": labels}, features=Features({"image": ImageFeature(), "labels": feature}))


def encode(dataset, column="labels", **kwargs):
    encoder = detect_label_format(dataset, column, **kwargs)
    return encoder, prepare_split(dataset, encoder, "image", column)


def test_class_id_lists():
    dataset = image_dataset([[0, 2], [1]], List(ClassLabel(names=NAMES)))
    encoder, split = encode(dataset)
    assert encoder.label_format == "ids" and encoder.names == NAMES
    np.testing.assert_array_equal(split.labels, [[1, 0, 1], [0, 1, 0]])


def test_name_lists_and_single_class_labels():
    encoder, split = encode(image_dataset([["dog", "cat"], ["car"]], List(Value("string"))))
    assert encoder.names == ["car", "cat", "dog"]  # sorted
    np.testing.assert_array_equal(split.labels, [[0, 1, 1], [1, 0, 0]])
    _, split = encode(image_dataset([2, 0], ClassLabel(names=NAMES)))
    np.testing.assert_array_equal(split.labels, [[0, 0, 1], [1, 0, 0]])


def test_multi_hot_vectors_with_unknowns():
    encoder, split = encode(image_dataset([[1, 0, -1], [0, 1, 1]], List(Value("int32"))), label_names=NAMES)
    assert encoder.label_format == "multi_hot"
    np.testing.assert_array_equal(split.labels, [[1, 0, -1], [0, 1, 1]])
    encoder, _ = encode(image_dataset([[1.0, 0.0], [0.0, 1.0]], List(Value("float32"))))
    assert encoder.names == ["LABEL_0", "LABEL_1"]


def test_integer_ids_need_names():
    with pytest.raises(ValueError, match="--class_names"):
        detect_label_format(image_dataset([[0, 4], [2]], List(Value("int64"))), "labels")
    encoder, split = encode(image_dataset([[0, 4], [2]], List(Value("int64"))), label_names=list("abcde"))
    assert split.labels.shape == (2, 5)


@pytest.mark.parametrize("key", ["category", "categories", "label"])
def test_detection_style_objects(key):
    features = Features({"image": ImageFeature(), "objects": {"bbox": List(List(Value("float32"), length=4)), key: List(ClassLabel(names=NAMES))}})
    dataset = Dataset.from_dict(
        {"image": [{"bytes": png(), "path": None}] * 2, "objects": [{"bbox": [[0, 0, 2, 2]] * 2, key: [2, 2]}, {"bbox": [[0, 0, 1, 1]], key: [0]}]},
        features=features,
    )
    encoder, split = encode(dataset, column="objects")
    assert encoder.label_format == "objects"
    np.testing.assert_array_equal(split.labels, [[0, 0, 1], [1, 0, 0]])


def test_coco_instances_json(tmp_path):
    for name in ["a.png", "b.png"]:
        (tmp_path / name).write_bytes(png())
    coco = {
        "images": [{"id": 7, "file_name": "a.png"}, {"id": 9, "file_name": "b.png"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [0, 0, 4, 4]},
            {"id": 2, "image_id": 9, "category_id": 3, "bbox": [1, 1, 2, 2]},
            {"id": 3, "image_id": 9, "category_id": 18, "bbox": [1, 1, 5, 5]},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    dataset = load_coco_instances(tmp_path / "instances.json", tmp_path)
    encoder, split = encode(dataset, column="objects")
    assert encoder.names == ["car", "dog"]
    np.testing.assert_array_equal(split.labels, [[0, 1], [1, 1]])
    coco["annotations"].append({"id": 4, "image_id": 7, "category_id": 99, "bbox": [0, 0, 1, 1]})
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="category_id 99"):
        load_coco_instances(tmp_path / "instances.json", tmp_path)


@pytest.mark.parametrize(
    "labels,message",
    [([[0], [5]], "out of range"), ([[0], []], "empty label list")],
)
def test_bad_labels_name_the_sample(labels, message):
    dataset = image_dataset(labels, List(Value("int64")))  # datasets' ClassLabel would refuse id 5 itself
    encoder = detect_label_format(dataset, "labels", label_names=NAMES)
    with pytest.raises(BadSampleError, match=f"sample 1.*{message}.*--skip_bad_samples"):
        prepare_split(dataset, encoder, "image", "labels")
    split = prepare_split(dataset, encoder, "image", "labels", skip_bad_samples=True)
    assert len(split.dataset) == 1 and sum(split.skipped.values()) == 1


def test_unknown_names_and_allowed_empty_lists():
    train = image_dataset([["cat"], ["dog"]], List(Value("string")))
    encoder = detect_label_format(train, "labels")
    evaluation = image_dataset([["cat"], ["zebra"]], List(Value("string")))
    with pytest.raises(BadSampleError, match="zebra"):
        prepare_split(evaluation, encoder, "image", "labels")
    encoder.allow_empty = True
    split = prepare_split(image_dataset([["cat"], []], List(Value("string"))), encoder, "image", "labels")
    np.testing.assert_array_equal(split.labels[1], [0, 0])


def test_unreadable_and_truncated_images(tmp_path):
    good = png(size=(64, 64))
    truncated = good[: len(good) // 2]
    images = [{"bytes": good, "path": None}, {"bytes": b"not an image", "path": "broken.jpg"}, {"bytes": truncated, "path": "cut.png"}]
    dataset = image_dataset([[0], [1], [2]], List(ClassLabel(names=NAMES)), images)
    encoder = detect_label_format(dataset, "labels")
    with pytest.raises(BadSampleError, match="sample 1 \\(broken.jpg\\)"):
        prepare_split(dataset, encoder, "image", "labels")
    split = prepare_split(dataset, encoder, "image", "labels", skip_bad_samples=True)
    assert split.skipped == {"unreadable image": 2}
    np.testing.assert_array_equal(split.labels, [[1, 0, 0]])


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I"])
def test_every_image_mode_trains(mode):
    if mode == "I;16":
        image = Image.fromarray(np.full((10, 12), 40000, dtype=np.uint16))
    elif mode == "I":
        image = Image.fromarray(np.arange(120, dtype=np.int32).reshape(10, 12) * 1000)
    else:
        image = Image.new(mode, (12, 10))
    assert to_rgb(image).mode == "RGB"
    if mode == "I;16":
        assert 150 < np.asarray(to_rgb(image)).mean() < 160  # 40000 / 65535 of the range, not clipped to white


def processor(size=24):
    return Query2LabelImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def test_training_and_evaluation_transforms():
    dataset = image_dataset([[0, 1]], List(ClassLabel(names=NAMES)), [{"bytes": png("RGBA", (30, 20)), "path": None}])
    encoder, split = encode(dataset)
    train = MultiLabelImageDataset(
        split, "image", processor(), training_augmentation(24), cutout_probability=1.0, augmentation_seed=0
    )
    evaluation = MultiLabelImageDataset(split, "image", processor())
    assert torch.equal(evaluation[0]["pixel_values"], evaluation[0]["pixel_values"])  # no augmentation
    sample = train[0]
    assert sample["pixel_values"].shape == (3, 24, 24)
    assert torch.equal(sample["labels"], torch.tensor([1.0, 1.0, 0.0]))
    assert torch.equal(sample["pixel_values"], train[0]["pixel_values"])  # seeded per (seed, epoch, index)
    train.epoch = 1
    assert not torch.equal(sample["pixel_values"], train[0]["pixel_values"])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_one_preprocessing_path(mode):
    """Evaluation, prediction and the pipeline all feed the model what the image processor makes."""
    from transformers import pipeline

    from modeling_q2l.evaluation.predict import open_for_prediction

    pixels = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode) if mode != "I;16" else Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    dataset = image_dataset([[0]], List(ClassLabel(names=NAMES)), [{"bytes": buffer.getvalue(), "path": None}])
    _, split = encode(dataset)
    expected = processor()(images=open_image({"bytes": buffer.getvalue()}), return_tensors="pt")["pixel_values"][0]
    assert torch.equal(MultiLabelImageDataset(split, "image", processor())[0]["pixel_values"], expected)

    path = Path(tempfile.mkdtemp()) / "image.png"
    path.write_bytes(buffer.getvalue())
    assert torch.equal(processor()(images=open_for_prediction(path), return_tensors="pt")["pixel_values"][0], expected)

    if mode == "I;16":
        return  # the stock pipeline's load_image converts to RGB before the processor: 16-bit clips to white (#8)
    classifier = pipeline("image-classification", model=_tiny_model(), image_processor=processor())
    captured = {}
    original = classifier.model.forward

    def forward(pixel_values, **kwargs):
        captured["pixel_values"] = pixel_values
        return original(pixel_values, **kwargs)

    classifier.model.forward = forward
    classifier(str(path), top_k=1)
    assert torch.equal(captured["pixel_values"][0], expected)


def _tiny_model():
    from helpers import tiny_config

    from modeling_q2l import Query2LabelForMultiLabelClassification

    config = tiny_config(num_labels=3, image_size=24, id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)})
    return Query2LabelForMultiLabelClassification(config).eval()


def test_augmented_images_are_resized_once_and_normalised_as_the_processor_does():
    from modeling_q2l.data.transforms import normalized_pixel_values, pixel_values

    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    expected = pixel_values(processor(24), image)
    assert torch.allclose(normalized_pixel_values(processor(24), image), expected, atol=1e-6)
    imagenet = Query2LabelImageProcessor(size={"height": 24, "width": 24})  # another mean and std
    assert torch.allclose(normalized_pixel_values(imagenet, image), pixel_values(imagenet, image), atol=1e-6)
    other_size = torch.randint(0, 256, (3, 30, 20), dtype=torch.uint8)  # the processor's resize is needed here
    assert torch.equal(normalized_pixel_values(processor(24), other_size), pixel_values(processor(24), other_size))


def test_layout_randomisation_joins_the_training_augmentation():
    from modeling_q2l.mosaics.layout_augmentation import LayoutRandomization

    from torchvision.transforms import v2

    steps = training_augmentation(32, layout_randomization=LayoutRandomization(0.5)).transforms
    kinds = [type(step) for step in steps]
    assert kinds.index(LayoutRandomization) < kinds.index(v2.RandAugment)  # new looks first, then RandAugment
    assert not any(isinstance(step, LayoutRandomization) for step in training_augmentation(32).transforms)


def test_cutout_really_erases():
    white = [{"bytes": png("RGB", (32, 32), (255, 255, 255)), "path": None}]
    _, split = encode(image_dataset([[0]], List(ClassLabel(names=NAMES)), white))
    dataset = MultiLabelImageDataset(
        split, "image", processor(32), training_augmentation(32, randaugment=False), cutout_probability=1.0
    )
    erased = dataset[0]["pixel_values"]
    assert (erased == 0).any() and (erased == 1).any()  # a mean-coloured hole in a white image


def test_imagefolder_with_metadata(tmp_path):
    from modeling_q2l.data.loading import load_raw_datasets

    (tmp_path / "train").mkdir()
    rows = []
    for index, labels in enumerate([["cat"], ["dog", "car"], ["car"]]):
        Image.new("RGB", (16, 16), (index * 50, 0, 0)).save(tmp_path / "train" / f"{index}.png")
        rows.append(json.dumps({"file_name": f"{index}.png", "labels": labels}))
    (tmp_path / "train" / "metadata.jsonl").write_text("\n".join(rows))
    dataset = load_raw_datasets(str(tmp_path))["train"]
    encoder, split = encode(dataset)
    assert encoder.label_format == "names" and encoder.names == ["car", "cat", "dog"]
    assert split.labels.sum() == 4
