"""The paper's variants: presets as data, matching the converter, overrides through the config."""





import pytest
import torch

from modeling_q2l import (
    Query2LabelForMultiLabelClassification,
    variant_config,
)
from modeling_q2l.zoo.variants import VARIANTS, check_official_args_match


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
    with pytest.raises(ValueError, match="Known variants: .*Q2L-R101-448"):
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


def test_the_paper_head_size_of_r101():
    with torch.device("meta"):
        model = Query2LabelForMultiLabelClassification(variant_config("Q2L-R101-448"))
    assert model.num_parameters() / 1e6 == pytest.approx(193.8, abs=0.1)

