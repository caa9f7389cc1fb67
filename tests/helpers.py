"""What the tests share: tiny configurations, the embedded data, official-format fixtures, a tiny training run's
arguments. Imported as `from helpers import ...` (pytest puts `tests/` on the path through its conftest)."""

import io
import json
from pathlib import Path

import torch
from PIL import Image

from modeling_q2l import Query2LabelConfig

TESTS = Path(__file__).parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
PARITY_FIXTURES = ["r18-post-norm.json", "r18-pre-norm-proj-selfattn.json"]
EMBEDDED_DATASET = REPO / "data" / "fashion-mnist-mosaic"
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def tiny_config(**overrides) -> Query2LabelConfig:
    """A Q2L head on timm's tiny `test_resnet` (96 channels at stride 32): fast enough for every test."""
    kwargs = dict(
        backbone="test_resnet",
        num_labels=5,
        hidden_size=32,
        use_input_projection=True,
        intermediate_size=64,
        num_attention_heads=4,
        image_size=64,
    )
    kwargs.update(overrides)
    return Query2LabelConfig(**kwargs)


def save_model_folder(folder, config: Query2LabelConfig | None = None):
    """A saved model folder as a training run leaves it: the classifier of `config` (default `tiny_config()`; its
    `classifier_head` picks the class) and a 64-px image processor. Returns `folder`."""
    from modeling_q2l import Query2LabelImageProcessor, model_class_for

    config = config or tiny_config()
    model_class_for(config)(config).save_pretrained(folder)
    Query2LabelImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def grouped_model(num_labels=23, label_groups=5):
    """A tiny model decoding its labels in groups (`label_groups`), in eval mode."""
    from modeling_q2l import Query2LabelForMultiLabelClassification

    torch.manual_seed(0)
    return Query2LabelForMultiLabelClassification(tiny_config(num_labels=num_labels, label_groups=label_groups)).eval()


def transformers_config(num_labels: int = 7, **overrides) -> Query2LabelConfig:
    """A Q2L head on a tiny transformers ResNet backbone."""
    from transformers import ResNetConfig

    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], out_features=["stage2"], layer_type="basic"
    )
    kwargs = dict(
        backbone_config=backbone, num_labels=num_labels, hidden_size=16, intermediate_size=32, num_attention_heads=2,
        image_size=64, dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip
    kwargs.update(overrides)
    return Query2LabelConfig(**kwargs)


def validation_images(count: int, mode: str | None = None) -> list[Image.Image]:
    """Real images: the first validation mosaics of the embedded dataset (as stored, or converted to `mode`)."""
    import pyarrow.parquet as pq

    table = pq.read_table(next((EMBEDDED_DATASET / "data").glob("validation-*.parquet")), columns=["image"])
    images = [Image.open(io.BytesIO(row["bytes"])) for row in table.column("image").to_pylist()[:count]]
    return [image.convert(mode) for image in images] if mode else images


def official_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def official_state_dict(record: dict, prefix: str = "module.") -> dict:
    """Fill the official keys exactly as the fixture README prescribes."""
    state = {}
    for index, (key, shape) in enumerate(record["keys"]):
        generator = torch.Generator().manual_seed(index)
        if key.endswith("running_var"):
            value = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) == 1 and key.endswith("weight"):
            value = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            value = 0.05 * torch.randn(shape, generator=generator)
        state[prefix + key] = value
    return state


def fixture_input(record: dict) -> torch.Tensor:
    generator = torch.Generator().manual_seed(record["input"]["seed"])
    return torch.randn(record["input"]["shape"], generator=generator)


def write_official_release(record: dict, folder: Path) -> tuple[Path, Path]:
    """An official-format release: a torch pickle with `state_dict` and the training arguments' JSON."""
    checkpoint = folder / "checkpoint.pkl"
    torch.save({"state_dict": official_state_dict(record), "epoch": 7, "arch": "Q2L"}, checkpoint)
    config = folder / "config_new.json"
    config.write_text(json.dumps(record["official_args"]))
    return checkpoint, config


def tiny_training_argv(output_dir, *extra) -> list[str]:
    """Arguments of a seconds-long training run on the embedded set with timm's tiny test_resnet."""
    return [
        "--dataset_name", str(EMBEDDED_DATASET),
        "--backbone", "test_resnet",
        "--image_size", "64",
        "--hidden_size", "32",
        "--intermediate_size", "64",
        "--max_train_samples", "24",
        "--max_eval_samples", "16",
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16",
        "--output_dir", str(output_dir),
        "--logging_steps", "1",
        "--disable_tqdm", "true",
        "--dataloader_num_workers", "0",  # the default (1 per 2 cores) runs once, in the train-script test
        *extra,
    ]  # fmt: skip
