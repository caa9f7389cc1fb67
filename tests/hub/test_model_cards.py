"""Variant cards claim only what is checked, and are up to date."""





import pytest
from helpers import REPO
from huggingface_hub import ModelCard

from modeling_q2l.zoo.pretrained import PRETRAINED
from modeling_q2l.zoo.variants import VARIANTS

CARDS = REPO / "model_cards"


# the six the authors' README links and their q2l_infer.py accepts (github SlongLiu/query2labels)
RELEASED = {"Q2L-R101-448", "Q2L-R101-576", "Q2L-TResL-448", "Q2L-TResL-22k-448", "Q2L-SwinL-384", "Q2L-CvT-w24-384"}


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



def test_a_card_says_when_the_model_runs_at_another_resolution_than_it_trained_at():
    import dataclasses

    from modeling_q2l.hub.model_card import TrainingSummary, _resolution_sentence

    summary = TrainingSummary(
        dataset_name="data", eval_split_name="validation", is_embedded_demo=False, backbone="`test_resnet` (timm)",
        schedule="1 epoch", loss="asl", augmentation="none", ema="no EMA", backbone_weights="random", base_model=None,
        saved_weights="regular",
    )  # fmt: skip
    assert _resolution_sentence(summary, 160) == ""  # nothing said when the run did not change it
    assert _resolution_sentence(dataclasses.replace(summary, training_image_size=160), 160) == ""
    larger = _resolution_sentence(dataclasses.replace(summary, training_image_size=128), 160)
    assert "trained at 128 x 128 px; its image processor resizes to 160 x 160 px" in larger and "objects larger" in larger
    assert "objects smaller" in _resolution_sentence(dataclasses.replace(summary, training_image_size=448), 384)


def test_the_card_names_the_fused_grid_and_its_width():
    from helpers import tiny_config

    from modeling_q2l.hub.model_card import _feature_map_words

    fused = tiny_config(backbone_kwargs={"out_indices": [2, 4]}, fuse_feature_levels=True)
    assert _feature_map_words(fused).startswith("stage-2 feature grid with stage 4 projected, upsampled and added onto it (`fuse_feature_levels`)")
    wide = tiny_config(backbone_kwargs={"out_indices": [2, 4]}, fuse_feature_levels=True, feature_fusion_channels=256)
    assert "(`fuse_feature_levels`, every level projected to 256 channels first)" in _feature_map_words(wide)
    assert _feature_map_words(tiny_config()) == "last feature map"
