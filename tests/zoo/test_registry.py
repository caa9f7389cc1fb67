"""The zoo's registry: list the variants, create one with or without weights; architecture apart from what is known
of the weights."""

import pytest
import torch
from helpers import tiny_config

from modeling_q2l import (
    Query2LabelForMultiLabelClassification,
    create_model,
    create_model_and_processor,
    list_variants,
)
from modeling_q2l.zoo.pretrained import PRETRAINED, get_pretrained_facts, normalisation
from modeling_q2l.zoo.variants import VARIANTS


def test_list_variants_filters_by_pattern_and_released_weights():
    assert list_variants() == sorted(VARIANTS) and len(list_variants()) == 8
    assert list_variants("*R101*") == ["Q2L-R101-448", "Q2L-R101-576"]
    released = list_variants(pretrained=True)
    assert set(released) == {name for name, facts in PRETRAINED.items() if facts.official_weights}
    assert "Q2L-TResXL-640" not in released and "Q2L-SwinL-384" in released
    assert list_variants("nothing*") == []


def test_architecture_and_pretrained_facts_are_kept_apart():
    assert set(PRETRAINED) == set(VARIANTS)
    architecture_fields = set(VARIANTS["Q2L-R101-448"].__dataclass_fields__)
    assert not architecture_fields & {"paper_coco_map", "official_weights", "base_model", "license", "hub_id"}
    assert get_pretrained_facts("Q2L-R101-448").paper_coco_map == 84.9
    assert normalisation("Q2L-TResL-448") == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # the authors' TResNet: no normalisation
    assert normalisation("Q2L-R101-448")[0] == pytest.approx((0.485, 0.456, 0.406))
    with pytest.raises(ValueError, match="Known variants"):
        get_pretrained_facts("Q2L-R50-224")


@pytest.mark.slow
def test_create_model_without_weights_and_with_a_saved_folder(tmp_path):
    model, processor = create_model_and_processor("Q2L-R101-448", num_labels=3, image_size=64)
    assert isinstance(model, Query2LabelForMultiLabelClassification)
    assert (model.config.backbone, model.config.hidden_size, model.config.num_labels) == ("resnet101", 2048, 3)
    assert processor.size["height"] == 64 and processor.image_mean == pytest.approx([0.485, 0.456, 0.406])
    model.save_pretrained(tmp_path / "r101")
    loaded = create_model("Q2L-R101-448", pretrained=str(tmp_path / "r101"))
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(pixels).logits, model.eval()(pixels).logits)


def test_create_model_says_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="no published Hub repository yet"):
        create_model("Q2L-R101-448", pretrained=True)
    Query2LabelForMultiLabelClassification(tiny_config()).save_pretrained(tmp_path / "tiny")
    with pytest.raises(ValueError, match="not Q2L-R101-448"):
        create_model("Q2L-R101-448", pretrained=str(tmp_path / "tiny"))
    checkpoint = tmp_path / "release.pkl"
    checkpoint.write_bytes(b"not read")
    with pytest.raises(ValueError, match="official_config=PATH"):
        create_model("Q2L-R101-448", pretrained=str(checkpoint))
    with pytest.raises(ValueError, match="Known variants"):
        create_model("Q2L-R50-224")


def test_an_official_checkpoint_must_describe_the_variant(tmp_path):
    from helpers import PARITY_FIXTURES, official_fixture, write_official_release

    checkpoint, config = write_official_release(official_fixture(PARITY_FIXTURES[0]), tmp_path)  # a ResNet-18 release
    with pytest.raises(ValueError, match="does not describe Q2L-R101-448"):
        create_model("Q2L-R101-448", pretrained=str(checkpoint), official_config=str(config))
