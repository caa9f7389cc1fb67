"""Fixtures shared by every test folder; the shared functions and constants are in `helpers.py`."""

import os

# Tests never reach the network: Hub look-ups fail at once instead of retrying (set before any Hub import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from pathlib import Path

import pytest
import torch
from helpers import tiny_config


def pytest_configure(config):
    # transformers' convention: `slow` tests train, launch processes, compile or drive a browser. The loop for every
    # edit is `python -m pytest -m "not slow" tests`; CI (.ci/run) runs everything.
    config.addinivalue_line("markers", "slow: trains a model, launches a process, compiles or drives a browser")


@pytest.fixture
def tiny_model():
    from modeling_q2l import Query2LabelForMultiLabelClassification

    torch.manual_seed(0)
    return Query2LabelForMultiLabelClassification(tiny_config()).eval()


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
