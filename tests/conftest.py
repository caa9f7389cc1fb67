import json
import os

# Tests never reach the network: Hub look-ups fail at once instead of retrying (set before any Hub import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from pathlib import Path

import pytest
import torch

from modeling_q2l import Query2LabelConfig

FIXTURES = Path(__file__).parent / "fixtures"
PARITY_FIXTURES = ["r18-post-norm.json", "r18-pre-norm-proj-selfattn.json"]


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


@pytest.fixture
def tiny_model():
    from modeling_q2l import Query2LabelForMultiLabelClassification

    torch.manual_seed(0)
    return Query2LabelForMultiLabelClassification(tiny_config()).eval()


EMBEDDED_DATASET = Path(__file__).parents[1] / "data" / "fashion-mnist-mosaic"


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
        *extra,
    ]  # fmt: skip


@pytest.fixture
def fake_hub(monkeypatch):
    """The Hub's HTTP boundary replaced: `HfApi.create_repo`, `create_branch` and `create_commit` record what would
    be created and committed (each commit as {path in repo: bytes}) instead of calling the Hub."""
    from huggingface_hub import CommitInfo, HfApi

    hub = {"repos": [], "branches": [], "commits": []}

    def create_repo(self, repo_id, **kwargs):
        hub["repos"].append({"repo_id": repo_id, **kwargs})
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, *, branch, **kwargs):
        hub["branches"].append((repo_id, branch))

    def create_commit(self, repo_id, operations, *, commit_message, revision=None, **kwargs):
        files = {}
        for operation in operations:
            source = operation.path_or_fileobj
            files[operation.path_in_repo] = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
        hub["commits"].append({"repo_id": repo_id, "message": commit_message, "revision": revision, "files": files})
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}", commit_message=commit_message,
            commit_description="", oid="0" * 40,
        )  # fmt: skip

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    return hub
