import numpy as np
import pytest
import torch

from modeling_q2l.mosaics.layout_augmentation import LayoutRandomization, flat_background
from modeling_q2l.mosaics.mosaic import MosaicSpec, build_mosaics


def blob_images(num_classes=10, per_class=4, side=28):
    rng = np.random.default_rng(0)
    images = np.zeros((num_classes * per_class, side, side), dtype=np.uint8)
    for index in range(len(images)):
        label = index // per_class
        images[index, 4:24, 2 + label // 2 : 26 - label // 2] = rng.integers(150, 255)
    return images, np.repeat(np.arange(num_classes), per_class)


def dark_mosaic():
    """A 128-px mosaic with a flat dark background and one bright 40-px square object at (30, 50)."""
    image = torch.full((3, 128, 128), 20, dtype=torch.uint8)
    image[:, 50:90, 30:70] = torch.tensor([200, 120, 60], dtype=torch.uint8).view(3, 1, 1)
    return image


def _seeded(augmentation, image, seed):
    torch.manual_seed(seed)
    return augmentation(image)


def test_same_seed_same_layout_and_other_seeds_change_the_background():
    augmentation, image = LayoutRandomization(probability=1.0), dark_mosaic()
    first = _seeded(augmentation, image, 0)
    assert first.dtype == torch.uint8 and first.shape == image.shape
    assert torch.equal(first, _seeded(augmentation, image, 0))
    corners = [_seeded(augmentation, image, seed)[:, :6, :6].float().mean().item() for seed in range(20)]
    assert np.std(corners) > 20 and max(corners) > 120  # new backgrounds, light ones among them
    assert flat_background(image.permute(1, 2, 0).numpy().astype(np.float32)) is not None


def test_the_objects_stay_visible_on_their_new_background():
    """Whatever the new layout, the object differs from the background around it (labels stay true)."""
    augmentation, image = LayoutRandomization(probability=1.0, noise_std=2.0), dark_mosaic()
    visible = 0
    for seed in range(40):
        out = _seeded(augmentation, image, seed).float()
        # the object may have shrunk and moved: find it as the pixels far from the border's median colour
        border = torch.cat([out[:, 0], out[:, -1], out[:, :, 0], out[:, :, -1]], dim=1)
        distance = (out - border.median(dim=1).values.view(3, 1, 1)).abs().amax(dim=0)
        visible += int((distance > 40).sum() >= 0.2 * (0.5 * 40) ** 2)  # at least a fifth of the smallest object
    assert visible >= 32  # noise and patterned backgrounds blur the count a little, never the object away


def test_probability_zero_is_the_identity_and_bad_probabilities_stop():
    image = dark_mosaic()
    assert torch.equal(_seeded(LayoutRandomization(probability=0.0), image, 3), image)
    with pytest.raises(ValueError, match="probability"):
        LayoutRandomization(probability=1.5)


def test_images_without_a_flat_background_change_as_a_whole():
    rng = np.random.default_rng(0)
    textured = torch.from_numpy(rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    outputs = [_seeded(LayoutRandomization(probability=1.0), textured, seed) for seed in range(10)]
    assert all(out.shape == textured.shape for out in outputs)
    assert sum(not torch.equal(out, textured) for out in outputs) >= 5


def test_layout_randomisation_runs_on_real_mosaics_of_every_style():
    images, labels = blob_images()
    for style in ("dark", "varied", "light", "pattern", "noise"):
        record = build_mosaics(images, labels, 1, MosaicSpec(outfits=(), background_styles=(style,)), seed=1, image_format="PNG")[0]
        from io import BytesIO

        from PIL import Image

        image = torch.from_numpy(np.asarray(Image.open(BytesIO(record["image"]["bytes"])))).permute(2, 0, 1).contiguous()
        assert _seeded(LayoutRandomization(probability=1.0), image, 0).shape == (3, 128, 128)
