"""The Gradio demo: its answers are the pipeline's, in a real browser (Debian's Chromium) and via gradio_client;
and the Space folder that publish.py --space writes runs the app on its own copy of the package."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from browser import (
    browser_available,
    chromium_driver,
    free_port,
    labels_on_page,
    serve_app,
)
from helpers import save_model_folder, tiny_config, validation_images
from transformers import pipeline

from modeling_q2l import (
    Query2LabelForMultiLabelClassification,
    Query2LabelImageProcessor,
)
from modeling_q2l.demo.app import classify

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow

NAMES = [f"garment {i}" for i in range(12)]


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """A tiny 12-label model whose fitted thresholds pass some labels of the first image and stop others."""
    folder = tmp_path_factory.mktemp("q2l-demo")
    config = tiny_config(num_labels=12, id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)})
    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(config).eval()
    processor = Query2LabelImageProcessor(size={"height": 64, "width": 64})
    images = validation_images(3, "RGB")
    with torch.no_grad():
        scores = torch.sigmoid(model(**processor(images[0], return_tensors="pt")).logits[0])
    # even labels just pass, odd labels just fail on the first image
    model.config.label_thresholds = [float(s - 1e-3 if i % 2 == 0 else min(s + 1e-3, 1.0)) for i, s in enumerate(scores)]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for index, image in enumerate(images):
        image.save(folder / f"image{index}.png")
    return folder


def pipeline_answer(folder: Path, image, **kwargs) -> dict:
    """The pipeline's answer for an image path or a PIL image."""
    classifier = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    return {item["label"]: item["score"] for item in classifier(image if not isinstance(image, Path) else str(image), **kwargs)}


def test_the_app_answers_as_the_pipeline_does(demo_model):
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(demo_model, trust_remote_code=True).eval()
    processor = Query2LabelImageProcessor.from_pretrained(demo_model)
    for index in range(3):
        image_path = demo_model / f"image{index}.png"
        from PIL import Image

        with Image.open(image_path) as image:
            kept, picture, selected = classify(model, processor, image, True, 0.5, None)
            assert kept == pytest.approx(pipeline_answer(demo_model, image_path))
            assert picture.size == image.size and selected in NAMES
            assert selected == max(kept, key=kept.get) if kept else True
            one_threshold, rolled, chosen = classify(model, processor, image, False, 0.55, "garment 3", through_encoder=True)
            assert one_threshold == pytest.approx(pipeline_answer(demo_model, image_path, threshold=0.55))
            assert chosen == "garment 3" and rolled.size == image.size
    first, _, _ = classify(model, processor, Image.open(demo_model / "image0.png"), True, 0.5, None)
    assert sorted(first) == sorted(NAMES[0::2])  # the fitted thresholds decide, not 0.5
    with pytest.raises(ValueError, match="Upload an image"):
        classify(model, processor, None, True, 0.5, None)


@pytest.fixture(scope="module")
def served_app(demo_model, tmp_path_factory):
    port = free_port()
    server = serve_app(str(demo_model), port, tmp_path_factory.mktemp("app") / "app.log")
    yield f"http://127.0.0.1:{port}/"
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.skipif(not browser_available(), reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_in_a_browser_the_page_shows_the_pipelines_labels(demo_model, served_app, tmp_path):
    driver = chromium_driver()
    try:
        for index in (0, 1):
            image_path = demo_model / f"image{index}.png"
            shown = labels_on_page(driver, served_app, image_path, screenshot=tmp_path / f"page{index}.png")
            expected = pipeline_answer(demo_model, image_path)
            assert list(shown) == list(expected)  # the same labels, best first
            assert shown == pytest.approx(expected, abs=1e-6)
            if index == 0:
                assert sorted(shown) == sorted(NAMES[0::2])  # the fitted thresholds decide, not 0.5
    finally:
        driver.quit()
    from PIL import Image

    with Image.open(tmp_path / "page0.png") as screenshot:
        assert screenshot.size[0] >= 1000


def test_gradio_client_calls_the_app(demo_model, served_app):
    from gradio_client import Client, handle_file

    client = Client(served_app, verbose=False)
    image_path = demo_model / "image0.png"
    labels, overlay, selected = client.predict(handle_file(str(image_path)), True, 0.5, None, False, api_name="/predict")
    answer = {row["label"]: row["confidence"] for row in labels["confidences"]}
    assert answer == pytest.approx(pipeline_answer(demo_model, image_path), abs=1e-6)
    assert sorted(answer) == sorted(NAMES[0::2])
    assert Path(overlay).is_file() and selected == labels["label"]


def test_publish_writes_a_space_that_runs_on_its_own_copy_of_the_package(demo_model, tmp_path):
    from huggingface_hub import RepoCard

    from modeling_q2l.cli.arguments import PublishArguments
    from modeling_q2l.hub.publish import publish

    folder = Path(publish(PublishArguments(model=str(demo_model), repo_id="org/q2l-demo", space="org/q2l-demo-space", dry_run=str(tmp_path / "repo"))))
    space = folder.with_name("repo-space")
    card = RepoCard.load(space / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.models == ["org/q2l-demo"]
    import gradio

    assert card.data.sdk_version == gradio.__version__
    requirements = (space / "requirements.txt").read_text().split()
    assert {"matplotlib", "timm>=1.0"} <= set(requirements) and any(r.startswith("transformers") for r in requirements)
    # The Space's app builds the demo from its own package copy (no launch on import), here on the local folder.
    script = "import app, modeling_q2l; print(modeling_q2l.__file__); print(type(app.demo).__name__)"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=space, capture_output=True, text=True,
        env={"Q2L_MODEL": str(demo_model), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PATH": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    package_file, demo_type = result.stdout.split()[-2:]
    assert Path(package_file).is_relative_to(space) and demo_type == "Blocks"
    with pytest.raises(ValueError, match="ORG/NAME"):
        publish(PublishArguments(model=str(demo_model), repo_id="org/q2l-demo", space="no-slash", dry_run=str(tmp_path / "x")))


def bad_and_unusual_images(folder: Path) -> dict:
    """Files a user uploads: three the app must refuse with a reason, four it must answer."""
    import struct
    import zlib

    from PIL import Image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    files = {}
    files["not an image"] = folder / "notes.png"
    files["not an image"].write_text("these are notes, not pixels")
    jpeg = folder / "full.jpg"
    Image.open(folder / "image0.png").convert("RGB").resize((256, 256)).save(jpeg, quality=95)
    files["truncated"] = folder / "truncated.jpg"
    files["truncated"].write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 3])
    # a 30,000 x 30,000 PNG header over a few bytes of data: a decompression bomb that costs nothing to make
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    files["bomb"] = folder / "bomb.png"
    files["bomb"].write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    base = Image.open(folder / "image0.png").convert("RGB")
    Image.new("RGB", (1, 1), (120, 30, 200)).save(folder / "tiny.png")
    Image.fromarray((__import__("numpy").array(base.convert("L"), dtype="uint16") * 257)).save(folder / "sixteen.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    frames = [base, base.rotate(90), base.rotate(180)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files.update({name: folder / name for name in ("tiny.png", "sixteen.png", "cmyk.jpg", "animated.gif")})
    return files


def test_the_app_says_what_is_wrong_with_a_file_and_answers_unusual_images(demo_model, served_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    for name in ("image0.png",):
        (tmp_path / name).write_bytes((demo_model / name).read_bytes())
    files = bad_and_unusual_images(tmp_path)
    client = Client(served_app, verbose=False)
    expected = {"not an image": "not an image this app can read", "truncated": "truncated", "bomb": "too large to open safely"}
    for kind, words in expected.items():
        with pytest.raises(AppError, match=words):  # the message the page shows
            client.predict(handle_file(str(files[kind])), api_name="/predict")
    for name in ("tiny.png", "sixteen.png", "cmyk.jpg", "animated.gif"):
        labels, overlay, selected = client.predict(handle_file(str(files[name])), api_name="/predict")  # the image alone
        assert len(labels["confidences"]) >= 1 or labels.get("label") is None, name
        assert Path(overlay).is_file() and selected in NAMES, name
        answer = {row["label"]: row["confidence"] for row in labels["confidences"]}
        from PIL import Image

        with Image.open(files[name]) as image:  # a PIL image: transformers' path loading would clip 16 bits
            assert answer == pytest.approx(pipeline_answer(demo_model, image), abs=1e-5), name


def test_the_rollout_switch_shows_only_for_a_model_with_encoder_layers(demo_model, tmp_path):
    from modeling_q2l.demo.app import ROLLOUT_LABEL, build_demo

    def rollout_visible(folder) -> bool:
        components = build_demo(str(folder)).config["components"]
        return next(c["props"]["visible"] for c in components if c.get("props", {}).get("label") == ROLLOUT_LABEL)

    assert Query2LabelForMultiLabelClassification.from_pretrained(demo_model).config.encoder_layers > 0
    assert rollout_visible(demo_model)
    without_encoder = tiny_config(num_labels=12, encoder_layers=0, id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)})
    save_model_folder(tmp_path, without_encoder)
    assert not rollout_visible(tmp_path)
