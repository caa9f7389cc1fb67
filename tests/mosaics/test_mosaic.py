import dataclasses
import gzip
import io

import numpy as np
import pytest
from helpers import EMBEDDED_DATASET
from PIL import Image

from modeling_q2l.mosaics.mosaic import (
    MosaicSpec,
    build_mosaics,
    load_fashion_mnist,
    read_idx,
    save_mosaic_splits,
)


def blob_images(num_classes=5, per_class=6, side=28):
    """Bright class-specific blobs on black: a stand-in for Fashion-MNIST."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for label in range(num_classes):
        for _ in range(per_class):
            image = np.zeros((side, side), dtype=np.uint8)
            image[4:24, 4 + label : 24 - label] = rng.integers(120, 255)
            images.append(image)
            labels.append(label)
    return np.stack(images), np.array(labels)


def test_mosaics_hold_one_to_four_boxed_objects_of_varied_size():
    images, labels = blob_images()
    spec = MosaicSpec(outfits=((0, 1, 2), (3, 4)))
    records = build_mosaics(images, labels, 60, spec, seed=3, image_format="PNG")
    sides = []
    for record in records:
        image = Image.open(io.BytesIO(record["image"]["bytes"]))
        assert image.size == (128, 128) and image.mode == "RGB"
        categories = record["objects"]["category"]
        assert 1 <= len(categories) <= 5  # up to 4, plus the occasional repeated class
        assert record["labels"] == sorted(set(categories))
        for x, y, w, h in record["objects"]["bbox"]:
            assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
            sides.append(max(w, h))
    assert min(sides) < 24 and max(sides) > 48  # small and large objects both occur (blobs fill ~70% of a side)


def test_outfits_create_co_occurrence():
    images, labels = blob_images()
    records = build_mosaics(images, labels, 300, MosaicSpec(outfits=((0, 1), (2, 3)), outfit_probability=1.0), seed=1)
    pairs = [set(r["labels"]) for r in records if len(r["labels"]) == 2]
    assert pairs and all(pair in ({0, 1}, {2, 3}) for pair in pairs)


def test_idx_reader_and_fashion_mnist_loader(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    header = b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(header + images.tobytes())
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + bytes([3, 7]))
    loaded, labels = load_fashion_mnist(tmp_path, "train")
    np.testing.assert_array_equal(loaded, images)
    assert labels.tolist() == [3, 7]
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path, "test")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="idx"):
        read_idx(tmp_path / "bad")


def test_saved_splits_load_with_datasets(tmp_path):
    from datasets import load_dataset

    images, labels = blob_images()
    with pytest.raises(ValueError, match=r"outfits name class ids \[5, 6, 7, 8, 9\]"):
        build_mosaics(images, labels, 4, seed=0)  # the Fashion-MNIST outfits do not fit 5 classes
    records = build_mosaics(images, labels, 4, MosaicSpec(outfits=()), seed=0)
    save_mosaic_splits({"train": records, "validation": records[:2]}, list("abcde"), tmp_path)
    loaded = load_dataset(str(tmp_path))
    assert loaded["train"].features["labels"].feature.names == list("abcde")
    assert len(loaded["validation"]) == 2


def test_the_embedded_dataset_is_in_hub_layout_and_small():
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    files = sorted((EMBEDDED_DATASET / "data").glob("*.parquet"))
    from modeling_q2l.mosaics.layouts import HELD_OUT_LAYOUTS, layout_split_name

    layouts = sorted(layout_split_name(name) for name in HELD_OUT_LAYOUTS)
    assert [f.name.split("-")[0] for f in files] == layouts + ["out_of_layout", "train", "validation"]
    assert sum(f.stat().st_size for f in files) < 32 * 1024 * 1024  # 31.0 MiB with ten layouts: a clone stays small
    card = DatasetCard.load(EMBEDDED_DATASET / "README.md")
    assert card.data.license == "mit" and "Fashion-MNIST" in card.text
    dataset = load_dataset(str(EMBEDDED_DATASET))
    assert dataset["train"].features["labels"].feature.names[0] == "T-shirt/top"
    assert len(dataset["train"]) >= 3000 and len(dataset["validation"]) >= 500 and len(dataset["out_of_layout"]) >= 500
    assert "## The out-of-layout test split" in card.text and "## Held-out layout splits" in card.text
    assert all(len(dataset[split]) == 500 for split in layouts)
    first = dataset["validation"][0]
    assert first["image"].size == (128, 128) and len(first["objects"]["bbox"]) == len(first["objects"]["category"])


def test_builds_mosaics_from_any_single_label_dataset_on_disk(tmp_path):
    from datasets import ClassLabel, Dataset, Features, load_dataset
    from datasets import Image as ImageFeature

    from modeling_q2l.cli.arguments import MosaicBuildArguments
    from modeling_q2l.mosaics.builder import (
        build_mosaic_dataset,
    )

    images, labels = blob_images(num_classes=3, per_class=8)
    light = [Image.fromarray(255 - image) for image in images]  # dark objects on light ground get inverted
    source = Dataset.from_dict(
        {"image": light, "label": labels.tolist()},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=["x", "y", "z"])}),
    )
    source.to_parquet(str(tmp_path / "source.parquet"))
    args = MosaicBuildArguments(
        output_dir=str(tmp_path / "out"), num_train=6, num_validation=3, dataset_name=str(tmp_path / "source.parquet"),
        image_format="PNG", out_of_layout_split="none",
    )  # fmt: skip
    build_mosaic_dataset(args)
    built = load_dataset(str(tmp_path / "out"))
    assert built["train"].features["labels"].feature.names == ["x", "y", "z"] and len(built["validation"]) == 3
    assert "source.parquet" in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(ValueError, match="ClassLabel"):
        build_mosaic_dataset(MosaicBuildArguments(output_dir=str(tmp_path / "bad"), dataset_name=str(tmp_path / "source.parquet"), label_column_name="image"))


def test_varied_backgrounds_and_the_out_of_layout_split(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, load_dataset
    from datasets import Image as ImageFeature

    from modeling_q2l.cli.arguments import MosaicBuildArguments
    from modeling_q2l.mosaics.builder import (
        build_mosaic_dataset,
    )

    images, labels = blob_images(num_classes=3, per_class=8)
    dark = build_mosaics(images, labels, 20, MosaicSpec(outfits=()), seed=0, image_format="PNG")
    varied = build_mosaics(images, labels, 20, MosaicSpec(outfits=(), varied_background_probability=1.0), seed=0, image_format="PNG")

    def corner_brightness(records):
        return [np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])))[:4, :4].mean() for r in records]

    assert max(corner_brightness(dark)) < 50  # dark backgrounds
    assert max(corner_brightness(varied)) > 100 and np.std(corner_brightness(varied)) > 20  # any brightness

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["x", "y", "z"])})
    pil = [Image.fromarray(image) for image in images]
    DatasetDict({
        "train": Dataset.from_dict({"image": pil, "label": labels.tolist()}, features=features),
        "test": Dataset.from_dict({"image": pil[:12], "label": labels[:12].tolist()}, features=features),
    }).save_to_disk(str(tmp_path / "source-arrow"))  # fmt: skip
    for split in ("train", "test"):
        load_dataset_from_disk = Dataset.load_from_disk(str(tmp_path / "source-arrow" / split))
        load_dataset_from_disk.to_parquet(str(tmp_path / "source" / "data" / f"{split}-00000-of-00001.parquet"))
    args = MosaicBuildArguments(
        output_dir=str(tmp_path / "out"), num_train=6, num_validation=3, num_out_of_layout=5,
        dataset_name=str(tmp_path / "source"), image_format="PNG", held_out_layouts=["light", "crowded"], num_per_layout=4,
    )  # fmt: skip
    build_mosaic_dataset(args)
    built = load_dataset(str(tmp_path / "out"))
    card = (tmp_path / "out" / "README.md").read_text()
    assert len(built["out_of_layout"]) == 5 and "out_of_layout" in card
    assert len(built["layout_light"]) == 4 and len(built["layout_crowded"]) == 4 and "layout_small_objects" not in built
    assert "| `layout_crowded` | 4 |" in card and "sealed" in card
    args.held_out_layouts = ["plaid"]
    with pytest.raises(ValueError, match="Unknown held-out layout 'plaid'"):
        build_mosaic_dataset(args)


def test_background_styles_and_held_out_layouts():
    from modeling_q2l.mosaics.layouts import DEVELOPMENT_LAYOUTS, HELD_OUT_LAYOUTS, SEALED_LAYOUTS, held_out_layout

    images, labels = blob_images(num_classes=5, per_class=6)

    def corners(spec, count=12, side=6):
        records = build_mosaics(images, labels, count, spec, seed=0, image_format="PNG")
        return records, [np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])), dtype=np.float32)[:side, :side] for r in records]

    _, light = corners(MosaicSpec(outfits=(), background_styles=("light",)))
    assert min(corner.mean() for corner in light) > 150
    _, pattern = corners(MosaicSpec(outfits=(), background_styles=("pattern",)), side=32)  # periods up to 20 px
    assert min(corner.std(axis=(0, 1)).max() for corner in pattern) > 5  # stripes, checks, dots: never flat
    _, noisy = corners(MosaicSpec(outfits=(), background_styles=("dark",), noise_std=15.0))
    _, clean = corners(MosaicSpec(outfits=(), background_styles=("dark",)))
    spatial_spread = lambda corners: np.mean([corner.std(axis=(0, 1)).mean() for corner in corners])  # noqa: E731
    assert spatial_spread(noisy) > 10 > 1 > spatial_spread(clean)
    small, _ = corners(held_out_layout("small_objects").spec(MosaicSpec()), count=30)
    assert max(max(w, h) for r in small for _, _, w, h in r["objects"]["bbox"]) <= 28
    assert max(len(r["objects"]["category"]) for r in small) > 4
    with pytest.raises(ValueError, match="Unknown background styles"):
        MosaicSpec(background_styles=("plaid",))
    with pytest.raises(ValueError, match="Unknown held-out layout"):
        held_out_layout("plaid")
    assert set(DEVELOPMENT_LAYOUTS) | set(SEALED_LAYOUTS) == set(HELD_OUT_LAYOUTS) and SEALED_LAYOUTS and DEVELOPMENT_LAYOUTS


def test_faint_objects_move_toward_their_background():
    images, labels = blob_images(num_classes=1, per_class=4)
    spec = MosaicSpec(outfits=(), background_styles=("dark",), max_objects=1, min_object_size=40, max_object_size=40)
    contrast = {}
    for value in (1.0, 0.3):
        record = build_mosaics(images, labels, 1, dataclasses.replace(spec, object_contrast=value), seed=0, image_format="PNG")[0]
        pixels = np.asarray(Image.open(io.BytesIO(record["image"]["bytes"])), dtype=np.float32)
        x, y, w, h = (int(v) for v in record["objects"]["bbox"][0])
        contrast[value] = np.abs(pixels[y + h // 2, x + w // 2] - pixels[0, 0]).max()
    assert contrast[0.3] < 0.45 * contrast[1.0]
