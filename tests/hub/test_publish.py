"""Publishing: the assembled folder, one commit, clear errors, cards with measured results."""

import json
import shutil
from pathlib import Path
from unittest import mock

import pytest
from helpers import REPO, save_model_folder, tiny_config
from huggingface_hub import ModelCard

from modeling_q2l.cli.arguments import PublishArguments
from modeling_q2l.hub.publish import PublishError, publish

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    labels = ["cat", "dog", "car", "tree", "person"]
    config = tiny_config(id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    save_model_folder(folder, config)
    report = {
        "mAP": 0.5, "mAP_voc": 0.52, "CP": 0.4, "CR": 0.6, "CF1": 0.48, "OP": 0.41, "OR": 0.62, "OF1": 0.49,
        "num_images": 16, "threshold": 0.5, "dataset": "tiny test images", "eval_split": "validation",
        "per_label": [{"label": n, "AP": 0.5, "positives": 3} for n in labels],
    }  # fmt: skip
    (folder / "eval.json").write_text(json.dumps(report))
    return folder


def test_dry_run_writes_a_folder_that_loads_without_the_package(model_dir, tmp_path):
    out = tmp_path / "repo"
    publish(PublishArguments(model=str(model_dir), repo_id="me/q2l-test", eval_results=str(model_dir / "eval.json"), dry_run=str(out)))
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "modeling_query2label.py", "eval_results.json"} <= names
    card = ModelCard.load(out / "README.md")
    measured = [r for r in card.data.eval_results if r.metric_type == "mAP"]
    assert measured[0].metric_value == 50.0 and "tiny test images" in card.text


def test_upload_commits_the_assembled_folder_once(model_dir, fake_hub):
    url = publish(PublishArguments(model=str(model_dir), repo_id="me/q2l-test", private=True, revision="v1", commit_message="first", eval_results=str(model_dir / "eval.json")))
    assert url == "https://huggingface.co/me/q2l-test"
    assert fake_hub["repos"] == [{"repo_id": "me/q2l-test", "private": True, "repo_type": "model", "exist_ok": True}]
    assert fake_hub["branches"] == [("me/q2l-test", "v1")]
    (commit,) = fake_hub["commits"]
    assert commit["message"] == "first" and commit["revision"] == "v1"
    shipped = {path.name for path in (REPO / "modeling_q2l" / "model").glob("*.py")} - {"__init__.py"}
    assert set(commit["files"]) == {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "eval_results.json"} | shipped
    assert json.loads(commit["files"]["eval_results.json"])["mAP"] == 0.5


def test_publish_errors_are_clear(model_dir, tmp_path):
    def run(**kwargs):
        publish(PublishArguments(**{"model": str(model_dir), "repo_id": "me/x", "dry_run": str(tmp_path / "o"), **kwargs}))

    with pytest.raises(ValueError, match="Known variants"):
        run(variant="Q2L-Giant")
    bad_report = json.loads((model_dir / "eval.json").read_text())
    bad_report["per_label"][0]["label"] = "zebra"
    (tmp_path / "bad.json").write_text(json.dumps(bad_report))
    with pytest.raises(PublishError, match="evaluation results are for labels"):
        run(eval_results=str(tmp_path / "bad.json"))
    no_weights = tmp_path / "no_weights"
    shutil.copytree(model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(PublishError, match="No safetensors weights"):
        run(model=str(no_weights))
    broken_card = tmp_path / "broken_card"
    shutil.copytree(model_dir, broken_card)
    (broken_card / "README.md").write_text("---\nlicense: [unclosed\n---\n# card\n")
    with pytest.raises(PublishError, match="does not parse"):
        run(model=str(broken_card))
    with mock.patch("modeling_q2l.hub.publish.get_token", return_value=None):
        with pytest.raises(PublishError, match="No Hub token"):
            publish(PublishArguments(model=str(model_dir), repo_id="me/x"))


def test_a_training_card_gets_the_results_of_evaluate(model_dir, tmp_path):
    from modeling_q2l.hub.model_card import CardContent, render_card

    folder = tmp_path / "trained"
    shutil.copytree(model_dir, folder)
    from modeling_q2l.evaluation.report import EvaluationReport

    old = EvaluationReport.from_json({**json.loads((model_dir / "eval.json").read_text()), "mAP": 0.11})
    card = render_card(CardContent(model_name="demo", repo_id="ORG/MODEL", summary="A demo.", architecture="Arch.", training="Recipe text.", limitations="Limits.", measured=old, measured_on="old data"))
    card.save(folder / "README.md")
    out = tmp_path / "repo"
    publish(PublishArguments(model=str(folder), repo_id="me/demo", eval_results=str(model_dir / "eval.json"), dry_run=str(out)))
    published = ModelCard.load(out / "README.md")
    assert [r.metric_value for r in published.data.eval_results if r.metric_type == "mAP"] == [50.0]
    assert "Recipe text." in published.text and "| 50.00 |" in published.text and "11.00" not in published.text
    assert 'model="me/demo"' in published.text


def test_a_card_compares_with_a_baseline_and_keeps_the_figures(model_dir, tmp_path):
    folder = tmp_path / "trained"
    shutil.copytree(model_dir, folder)
    own = {**json.loads((model_dir / "eval.json").read_text()), "mAP_small": 0.3, "mAP_medium": 0.5, "mAP_large": 0.6,
           "extra_splits": {"out_of_layout": {"mAP": 0.45}}}  # fmt: skip
    (folder / "eval_results.json").write_text(json.dumps(own))
    (folder / "figures").mkdir()
    (folder / "figures" / "precision_recall.png").write_bytes(b"png")
    baseline = {"mAP": 0.4, "mAP_small": 0.2, "mAP_medium": 0.45, "mAP_large": 0.6, "extra_splits": {"out_of_layout": {"mAP": 0.42}}}
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    out = Path(publish(PublishArguments(model=str(folder), repo_id="me/demo", baseline_results=str(tmp_path / "baseline.json"), dry_run=str(tmp_path / "repo"))))
    text = ModelCard.load(out / "README.md").text
    assert "## Compared with the global-average-pooling baseline" in text
    assert "| evaluation split: mAP | 50.00 | 40.00 | +10.00 |" in text
    assert "| evaluation split: mAP_small | 30.00 | 20.00 | +10.00 |" in text and "| out_of_layout: mAP | 45.00 | 42.00 | +3.00 |" in text
    assert text.index("## Compared with") < text.index("## Limitations")
    assert (out / "figures" / "precision_recall.png").read_bytes() == b"png"

