"""One record per backbone family: a family file registers its implementation, converter rules, variants, their
pretrained facts and the cards' words, checked when registered; the registry, the converter, the cards, the training
recipes and `--variant` all read it. Shown with a stand-in family that exists only as one file of the tests."""

import importlib
import re
import sys
from dataclasses import replace

import pytest
import torch
from helpers import REPO

from modeling_q2l import create_model, list_variants, variant_config
from modeling_q2l.zoo import family as registry
from modeling_q2l.zoo.family import BackboneFamily, PretrainedFacts, Query2LabelVariant, register_family

NAME = "Q2L-TestNet-64"


@pytest.fixture
def standin():
    """The stand-in family registered by importing its file, and unregistered after the test."""
    sys.modules.pop("standin_family", None)
    module = importlib.import_module("standin_family")
    yield module.STANDIN
    registry.unregister_family("testnet")
    assert NAME not in list_variants()


def test_one_file_adds_a_family_to_the_zoo_the_converter_the_recipes_and_the_cards(standin):
    from modeling_q2l.cli.arguments import parse_training_arguments
    from modeling_q2l.hub.model_card import variant_card
    from modeling_q2l.zoo import PRESETS
    from modeling_q2l.zoo.official_backbones import config_from_official_args, official_family
    from modeling_q2l.zoo.pretrained import get_pretrained_facts
    from modeling_q2l.zoo.recipes import all_recipes

    assert NAME in list_variants() and NAME in list_variants("*TestNet*") and NAME not in list_variants(pretrained=True)
    assert get_pretrained_facts(NAME).paper_coco_map == 12.5 and PRESETS[NAME]["backbone"] == "test_resnet"
    config = variant_config(NAME, num_labels=7)
    assert (config.backbone, config.image_size, config.hidden_size, config.num_labels) == ("test_resnet", 64, 96, 7)
    model = create_model(NAME, num_labels=7).eval()  # the paper's head on the stand-in backbone
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 3, 64, 64)).logits.shape == (1, 7)
    # the converter knows the official name, and builds the same config from the official arguments
    assert official_family("testnet") is standin
    assert config_from_official_args(standin.variants[0].official_args()).to_dict() == variant_config(NAME).to_dict()
    # training: the variant's recipe, through --variant
    assert NAME in all_recipes()
    model_args, _, training_args = parse_training_arguments(["--variant", NAME, "--dataset_name", "x"])
    assert (model_args.recipe, model_args.backbone, model_args.image_size, training_args.learning_rate) == (NAME, "test_resnet", 64, 1e-4)
    # the card says what the record says
    card = str(variant_card(NAME, f"ORG/{NAME.lower()}"))
    assert "(stride 32)" in card and "12.5" in card and "TestNet" in card


def facts(**changes) -> PretrainedFacts:
    return replace(PretrainedFacts("Net", "ImageNet-1k", 80.0, True, "timm/net"), **changes)


def family(**changes) -> BackboneFamily:
    base = BackboneFamily(
        name="broken", official_names=("brokennet",), config_kwargs=lambda name, size: {"backbone": "test_resnet"},
        convert=lambda tensors, backbone: (tensors, {}), feature_stride=32, conversion_check="words",
        variants=(Query2LabelVariant("Q2L-Broken-64", "brokennet", 64, 96, facts()),),
    )  # fmt: skip
    return replace(base, **changes)


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"variants": (Query2LabelVariant("Q2L-Broken-64", "brokennet", 64, 96, facts(paper_coco_map=None)),)}, "the fact 'paper_coco_map' is missing"),
        ({"variants": (Query2LabelVariant("Q2L-Broken-64", "brokennet", 64, 96, facts(base_model="")),)}, "the fact 'base_model' is missing"),
        ({"variants": (Query2LabelVariant("Q2L-Broken-64", "othernet", 64, 96, facts()),)}, "official_backbone 'othernet' is not one of"),
        ({"variants": (Query2LabelVariant("Broken", "brokennet", 64, 96, facts()),)}, "a name like Q2L-R101-448"),
        ({"conversion_check": " "}, "conversion_check"),
        ({"feature_stride": 7}, "feature_stride 7"),
        ({"official_names": ("resnet101",), "variants": ()}, "official backbone 'resnet101' belongs to 'resnet'"),
        ({"name": "resnet"}, "a family named 'resnet' is registered already"),
        ({"variants": (Query2LabelVariant("Q2L-R101-448", "brokennet", 64, 96, facts()),)}, "variant 'Q2L-R101-448' is registered already"),
    ],
)
def test_a_family_with_a_missing_or_wrong_fact_is_refused_when_registered(changes, named):
    before = (dict(registry.FAMILIES), dict(registry.VARIANTS), dict(registry.OFFICIAL_BACKBONES))
    with pytest.raises(ValueError, match=re.escape(named)):
        register_family(family(**changes))
    assert (registry.FAMILIES, registry.VARIANTS, registry.OFFICIAL_BACKBONES) == before  # nothing half-registered


def test_a_fact_left_out_of_a_family_file_fails_at_import():
    with pytest.raises(TypeError, match="base_model"):
        PretrainedFacts("Net", "ImageNet-1k", 80.0, True)  # noqa: the missing argument is the point


def test_the_readme_lists_exactly_the_registered_variants():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Reproducing a paper variant", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"`(Q2L-[A-Za-z0-9-]+)`", section.split("sets the variant's", 1)[0]))
    assert listed == set(list_variants())


def test_every_shipped_family_is_one_file_that_registers_itself():
    shipped = sorted(path.stem for path in (REPO / "modeling_q2l" / "zoo" / "families").glob("[!_]*.py"))
    assert shipped == sorted(registry.FAMILIES) == ["cvt", "resnet", "swin", "tresnet"]
    assert sum(len(entry.variants) for entry in registry.FAMILIES.values()) == len(list_variants()) == 8
