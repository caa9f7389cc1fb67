import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Sequence, Value
from PIL import Image

from modeling_q2l.data.labels import LabelEncoder
from modeling_q2l.data.splits import PreparedSplit
from modeling_q2l.mosaics.object_recomposition import ObjectRecomposition
from modeling_q2l.data.transforms import MultiLabelImageDataset

NUM_CLASSES = 10
# one colour per class, far from each other and from the dark background, so a class is found by its colour
CLASS_COLOURS = np.array(
    [[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [230, 40, 230],
     [40, 230, 230], [240, 240, 240], [140, 90, 240], [240, 150, 60], [120, 240, 140]],
    dtype=np.uint8,
)  # fmt: skip
NAMES = [f"class{i}" for i in range(NUM_CLASSES)]


def square_mosaics(num_images=12, side=96, seed=0, background=(15, 15, 25)):
    """Mosaics of solid squares, one colour per class, on a flat dark background, with their boxes."""
    rng = np.random.default_rng(seed)
    rows = {"image": [], "labels": [], "objects": []}
    for _ in range(num_images):
        canvas = np.empty((side, side, 3), dtype=np.uint8)
        canvas[:] = background
        classes = rng.choice(NUM_CLASSES, size=int(rng.integers(1, 4)), replace=False)
        boxes = []
        for number, class_id in enumerate(classes):  # side by side, never overlapping
            size = int(rng.integers(12, 28))
            x, y = 4 + number * 30, int(rng.integers(0, side - size))
            canvas[y : y + size, x : x + size] = CLASS_COLOURS[class_id]
            boxes.append([float(x), float(y), float(size), float(size)])
        rows["image"].append(Image.fromarray(canvas))
        rows["labels"].append([int(c) for c in classes])
        rows["objects"].append({"bbox": boxes, "category": [int(c) for c in classes]})
    features = Features(
        {
            "image": ImageFeature(),
            "labels": Sequence(ClassLabel(names=NAMES)),
            "objects": {"bbox": Sequence(Sequence(Value("float32"), length=4)), "category": Sequence(ClassLabel(names=NAMES))},
        }
    )
    return Dataset.from_dict(rows, features=features)


def multi_hot(classes) -> torch.Tensor:
    vector = torch.zeros(NUM_CLASSES)
    vector[list(classes)] = 1
    return vector


def visible_pixels(image: Image.Image) -> np.ndarray:
    """How many pixels of each class's colour the image shows (within 3 levels)."""
    pixels = np.asarray(image, dtype=np.int16)
    return np.array([(np.abs(pixels - colour).max(axis=2) <= 3).sum() for colour in CLASS_COLOURS.astype(np.int16)])


def recompose(recomposition, dataset, index, seed):
    torch.manual_seed(seed)
    return recomposition(dataset[index]["image"], multi_hot(dataset[index]["labels"]), index)


@pytest.fixture(scope="module")
def mosaics():
    return square_mosaics()


def test_the_labels_are_the_visible_objects(mosaics):
    """A positive label's object is on the image; an object that shows more than 30% of the largest possible one is
    labelled. Objects come from the image and its partner, in new counts and combinations."""
    recomposition = ObjectRecomposition(mosaics, "image", LabelEncoder("int_list", NAMES), 1.0, object_sides=(10, 40))
    counts, new_combinations = set(), 0
    for seed in range(60):
        index = seed % len(mosaics)
        image, labels = recompose(recomposition, mosaics, index, seed)
        assert image.size == (96, 96) and labels.shape == (NUM_CLASSES,)
        shown = visible_pixels(image)
        positives = set(torch.nonzero(labels == 1).flatten().tolist())
        assert positives and all(shown[label] > 0 for label in positives), (seed, positives, shown)
        assert all(label in positives for label in np.nonzero(shown >= 0.3 * 40 * 40)[0]), (seed, positives, shown)
        counts.add(len(positives))
        new_combinations += positives != set(mosaics[index]["labels"])
    assert len(counts) >= 4 and new_combinations >= 40


def test_same_seed_same_image_and_the_epoch_changes_it(mosaics):
    split = PreparedSplit(mosaics, np.stack([multi_hot(row).numpy() for row in mosaics["labels"]]), {})
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(size={"height": 96, "width": 96})
    recomposition = ObjectRecomposition(mosaics, "image", LabelEncoder("int_list", NAMES), 1.0)
    dataset = MultiLabelImageDataset(split, "image", processor, augmentation_seed=7, recomposition=recomposition)
    first, again = dataset[3], dataset[3]
    assert torch.equal(first["pixel_values"], again["pixel_values"]) and torch.equal(first["labels"], again["labels"])
    dataset.epoch = 1
    assert not torch.equal(first["pixel_values"], dataset[3]["pixel_values"])


def test_probability_zero_and_images_without_a_flat_background_are_left_alone(mosaics):
    encoder = LabelEncoder("int_list", NAMES)
    image, labels = recompose(ObjectRecomposition(mosaics, "image", encoder, 0.0), mosaics, 2, 0)
    assert np.array_equal(np.asarray(image), np.asarray(mosaics[2]["image"])) and torch.equal(labels, multi_hot(mosaics[2]["labels"]))
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    image, labels = ObjectRecomposition(mosaics, "image", encoder, 1.0)(noisy, multi_hot([1]), 0)
    assert image is noisy and torch.equal(labels, multi_hot([1]))


def test_clear_errors_without_boxes_or_with_a_stream(mosaics, tmp_path):
    with pytest.raises(ValueError, match="needs boxes.*--object_recomposition 0"):
        ObjectRecomposition(mosaics.remove_columns("objects"), "image", LabelEncoder("int_list", NAMES))
    with pytest.raises(ValueError, match="probability"):
        ObjectRecomposition(mosaics, "image", LabelEncoder("int_list", NAMES), probability=2.0)
    from modeling_q2l.cli.arguments import Query2LabelTrainingArguments
    from modeling_q2l.training.data_setup import training_datasets

    args = Query2LabelTrainingArguments(output_dir=str(tmp_path), object_recomposition=0.5)
    with pytest.raises(ValueError, match="stream cannot give.*--streaming"):
        training_datasets(None, None, None, None, 64, args, streaming=True)
