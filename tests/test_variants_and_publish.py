import json
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
from conftest import tiny_config
from huggingface_hub import ModelCard

from modeling_q2l import (
    Query2LabelForMultiLabelClassification,
    Query2LabelImageProcessor,
    variant_config,
)
from modeling_q2l.zoo.pretrained import PRETRAINED
from modeling_q2l.zoo.variants import VARIANTS, check_official_args_match
from modeling_q2l.cli.arguments import PublishArguments
from modeling_q2l.hub.publish import PublishError, publish

REPO = Path(__file__).parents[1]
CARDS = REPO / "model_cards"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_builds_its_config(name):
    variant = VARIANTS[name]
    config = variant_config(name)
    assert (config.image_size, config.hidden_size, config.num_labels) == (variant.image_size, variant.hidden_size, 80)
    assert (config.encoder_layers, config.decoder_layers, config.num_attention_heads, config.intermediate_size) == (1, 2, 4, 8192)
    with torch.device("meta"):
        model = Query2LabelForMultiLabelClassification(config)  # hidden size matches the backbone's channels
    assert model.config.id2label[0] == "person"


def test_variant_errors_and_overrides():
    with pytest.raises(ValueError, match="Known variants: Q2L-R101-448"):
        variant_config("Q2L-R50-224")
    assert variant_config("Q2L-R101-448", image_size=512).image_size == 512
    with pytest.raises(ValueError, match="no field"):
        variant_config("Q2L-R101-448", not_a_field=1)
    # overrides go through the constructor's checks, like the preset's own arguments
    with pytest.raises(ValueError, match="divisible"):
        variant_config("Q2L-R101-448", num_attention_heads=5)
    assert variant_config("Q2L-R101-448", num_labels=20).num_labels == 20


def test_presets_are_data_and_match_the_converter():
    from modeling_q2l import PRESETS
    from modeling_q2l.zoo.official_backbones import config_from_official_args

    assert set(PRESETS) == set(VARIANTS)
    assert PRESETS["Q2L-R101-448"]["frozen_backbone_modules"] == ["conv1", "bn1", "layer1"]
    assert PRESETS["Q2L-CvT-w24-384"]["backbone_hidden_act"] == "quick_gelu"  # the authors' CvT
    for name, variant in VARIANTS.items():
        converted = config_from_official_args(variant.official_args()).to_dict()
        assert variant_config(name).to_dict() == converted, name
    check_official_args_match("Q2L-R101-576", VARIANTS["Q2L-R101-576"].official_args())
    with pytest.raises(ValueError, match="img_size"):
        check_official_args_match("Q2L-R101-576", {**VARIANTS["Q2L-R101-576"].official_args(), "img_size": 448})


# The authors' release holds these variants (github SlongLiu/query2labels, its README's model table).
RELEASED = {"Q2L-R101-448", "Q2L-TResL-448", "Q2L-TResL-22k-448", "Q2L-SwinL-384", "Q2L-CvT-w24-384"}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_cards_claim_only_what_is_checked(name):
    import timm

    card = ModelCard.load(CARDS / f"{name}.md")
    summary = card.text.split("## Usage")[0]
    assert PRETRAINED[name].official_weights == (name in RELEASED)
    if name in RELEASED:
        assert "Converted from the authors' release" in summary and "have not published" not in summary
    else:
        assert "have not published weights for this variant" in summary and "Converted from" not in summary
    # "reproduces the official logits" only where a numerical parity test exists (the ResNet fixtures)
    assert ("reproduces the official logits" in summary) == (name in RELEASED and name.startswith("Q2L-R101"))
    assert ("side by side" in summary) == (name == "Q2L-CvT-w24-384")  # BENCHMARKS.md, scripts/compare_official_cvt.py
    base_model = card.data.base_model
    if base_model.startswith("timm/"):  # a pretrained backbone timm knows, with its weights on the Hub
        assert base_model.removeprefix("timm/") in timm.list_pretrained()
    else:
        assert base_model == "microsoft/cvt-w24-384-22k"
    (result,) = card.data.eval_results  # the model index as the Hub renders it: the paper's number, labelled so
    assert (result.dataset_type, result.dataset_split) == ("coco-2014", "validation")
    assert result.metric_value == PRETRAINED[name].paper_coco_map and "not measured here" in result.source_name
    assert "detection-datasets/coco" not in (CARDS / f"{name}.md").read_text()  # that is COCO 2017


def test_the_paper_head_size_of_r101():
    with torch.device("meta"):
        model = Query2LabelForMultiLabelClassification(variant_config("Q2L-R101-448"))
    assert model.num_parameters() / 1e6 == pytest.approx(193.8, abs=0.1)


def test_model_cards_directory_holds_nine_parsable_cards():
    cards = sorted(CARDS.glob("*.md"))
    assert len(cards) == 9
    for path in cards:
        card = ModelCard.load(path)
        data = card.data
        assert data.library_name == "transformers" and data.pipeline_tag == "image-classification"
        assert {"custom_code", "multi-label-image-classification"} <= set(data.tags)
        assert data.license and data.eval_results
        assert "trust_remote_code=True" in card.text and "top_k=None" in card.text
        assert "@article{liu2021query2label" in card.text and "## Limitations" in card.text
    for name, facts in PRETRAINED.items():
        card = ModelCard.load(CARDS / f"{name}.md")
        paper = [r for r in card.data.eval_results if "paper" in (r.source_name or "")]
        assert paper and paper[0].metric_value == facts.paper_coco_map
        assert "reported by the paper" in card.text.lower()


def test_variant_cards_are_up_to_date(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_model_cards", REPO / "scripts" / "generate_model_cards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--output_dir", str(tmp_path)])
    for path in tmp_path.glob("*.md"):
        assert path.read_text() == (CARDS / path.name).read_text(), f"{path.name}: run scripts/generate_model_cards.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    labels = ["cat", "dog", "car", "tree", "person"]
    config = tiny_config(id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    Query2LabelForMultiLabelClassification(config).save_pretrained(folder)
    Query2LabelImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
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
    old = {**json.loads((model_dir / "eval.json").read_text()), "mAP": 0.11}
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
