import numpy as np
import pytest
import torch
from PIL import Image

from modeling_q2l import Query2LabelImageProcessor


@pytest.fixture
def processor():
    return Query2LabelImageProcessor(size={"height": 32, "width": 32})


def test_defaults_match_the_official_preprocessing():
    processor = Query2LabelImageProcessor()
    assert processor.size == {"height": 448, "width": 448}
    assert processor.image_mean == pytest.approx([0.485, 0.456, 0.406])
    assert processor.do_convert_rgb


def test_square_resize_and_normalisation(processor):
    image = Image.new("RGB", (80, 30), (255, 0, 128))
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)  # aspect ratio not kept, no crop
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    torch.testing.assert_close(pixels[0, :, 16, 16], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (20, 24), 100),
        Image.new("LA", (20, 24), (100, 255)),
        Image.new("P", (20, 24), 3),
        Image.new("RGBA", (20, 24), (10, 20, 30, 255)),
        Image.new("CMYK", (20, 24), (0, 0, 0, 0)),
    ],
    ids=lambda image: image.mode,
)
def test_every_mode_becomes_rgb(processor, image):
    assert processor(image, return_tensors="pt")["pixel_values"].shape == (1, 3, 32, 32)


def test_transparency_is_composited_on_white(processor):
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    torch.testing.assert_close(
        processor(transparent, return_tensors="pt")["pixel_values"],
        processor(white, return_tensors="pt")["pixel_values"],
    )


def test_sixteen_bit_images_keep_their_contrast(processor):
    ramp = np.tile(np.linspace(0, 65535, 32, dtype=np.uint16), (32, 1))
    image = Image.fromarray(ramp)
    assert image.mode.startswith("I;16")
    pixels = processor(image, return_tensors="pt")["pixel_values"][0, 0]
    eight_bit = processor(Image.fromarray((ramp / 257).round().astype(np.uint8)), return_tensors="pt")
    torch.testing.assert_close(pixels, eight_bit["pixel_values"][0, 0], atol=0.05, rtol=0)
    assert pixels[:, -1].mean() > pixels[:, 0].mean() + 3  # PIL's plain convert would saturate to white


def test_round_trip(tmp_path, processor):
    processor.save_pretrained(tmp_path)
    reloaded = Query2LabelImageProcessor.from_pretrained(tmp_path)
    assert reloaded.size == processor.size and reloaded.image_std == processor.image_std
