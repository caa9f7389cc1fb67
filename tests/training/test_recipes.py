"""Training recipes: the demo's tuned settings apply only to the demo's dataset, a user's own dataset gets the
documented general defaults, a paper variant gets its architecture and the authors' recipe, and every value can be
overridden (the card names the recipe and what was overridden)."""

import json

import pytest
from helpers import EMBEDDED_DATASET, REPO

from modeling_q2l.cli.arguments import parse_training_arguments
from modeling_q2l.mosaics.layouts import HELD_OUT_LAYOUTS
from modeling_q2l.zoo.recipes import FASHION_MNIST_MOSAIC, GENERAL, all_recipes, get_recipe, overridden_values
from modeling_q2l.zoo.variants import VARIANTS, variant_config

SCRIPT_DEFAULTS = {"dataset_name": str(EMBEDDED_DATASET)}  # what scripts/train.py passes


def parse(*argv):
    """Arguments as `scripts/train.py` parses them: the embedded set, with its recipe, is the default dataset."""
    return parse_training_arguments(list(argv), SCRIPT_DEFAULTS, FASHION_MNIST_MOSAIC)


def test_the_main_job_is_the_embedded_datasets_recipe():
    """No arguments: 9 epochs, stem and first three stages frozen, layout randomisation 0.6, trained at 128 px and
    saved at 160, fused levels at 256 channels, every held-out layout evaluated, localisation on out_of_layout."""
    model_args, data_args, training_args = parse()
    assert model_args.recipe == FASHION_MNIST_MOSAIC and data_args.dataset_name == str(EMBEDDED_DATASET)
    assert model_args.frozen_backbone_stages == 3 and training_args.num_train_epochs == 9
    assert training_args.layout_randomization == 0.6 and training_args.object_recomposition == 0.0
    assert data_args.extra_eval_split_names == ["out_of_layout", *(f"layout_{name}" for name in HELD_OUT_LAYOUTS)]
    assert model_args.image_size == 128 and model_args.inference_image_size == 160 and model_args.encoder_layers == 0
    assert model_args.fuse_feature_levels and model_args.feature_fusion_channels == 256 == model_args.hidden_size
    assert data_args.localization_split_name == "out_of_layout" and len(HELD_OUT_LAYOUTS) == 10
    assert training_args.output_dir == "outputs/q2l-fashion-mnist-mosaic"
    assert overridden_values(get_recipe(FASHION_MNIST_MOSAIC), model_args, data_args, training_args) == {}


def test_another_dataset_gets_the_general_defaults_not_the_demos(tmp_path):
    model_args, data_args, training_args = parse("--dataset_name", str(tmp_path), "--image_size", "448")
    assert model_args.recipe == GENERAL
    # each value changed from the documented defaults is named, nothing else (the data and output are not recipe values)
    assert overridden_values(get_recipe(GENERAL), model_args, data_args, training_args) == {"image_size": (224, 448)}
    assert model_args.image_size == 448 and model_args.inference_image_size is None  # saved and evaluated at 448
    assert model_args.frozen_backbone_stages is None and not model_args.freeze_backbone
    assert training_args.layout_randomization == 0.0 and training_args.object_recomposition == 0.0
    assert data_args.extra_eval_split_names is None and data_args.localization_split_name is None
    assert model_args.encoder_layers == 1 and model_args.feature_fusion_channels is None
    assert training_args.output_dir == "outputs/q2l-model"
    # the demo's recipe on other data only when asked for, and then each option still overrides it
    model_args, _, training_args = parse("--dataset_name", str(tmp_path), "--recipe", FASHION_MNIST_MOSAIC, "--num_train_epochs", "2")
    assert model_args.recipe == FASHION_MNIST_MOSAIC and model_args.inference_image_size == 160 and training_args.num_train_epochs == 2
    # a JSON file of options goes through the same choice
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"dataset_name": str(tmp_path), "image_size": 96}))
    model_args, data_args, _ = parse(str(options))
    assert model_args.recipe == GENERAL and model_args.inference_image_size is None and data_args.extra_eval_split_names is None


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_variant_sets_its_architecture_and_the_authors_recipe(name):
    model_args, _, training_args = parse("--variant", name, "--dataset_name", "my/photos")
    config = variant_config(name)
    assert model_args.recipe == name and model_args.variant == name
    assert (model_args.backbone, model_args.image_size, model_args.hidden_size) == (config.backbone, config.image_size, config.hidden_size)
    assert (model_args.encoder_layers, model_args.decoder_layers, model_args.intermediate_size) == (1, 2, 8192)
    assert (training_args.learning_rate, training_args.weight_decay, str(training_args.lr_scheduler_type)) == (1e-4, 1e-2, "one_cycle")
    assert (training_args.num_train_epochs, training_args.per_device_train_batch_size) == (80, 64)
    assert (model_args.ema_decay, model_args.gamma_neg, model_args.gamma_pos, model_args.clip) == (0.9997, 2.0, 0.0, 0.0)
    assert training_args.randaugment and training_args.cutout_probability == 0.0 and not training_args.horizontal_flip
    assert model_args.inference_image_size is None and training_args.layout_randomization == 0.0


def test_a_variants_values_are_overridden_one_by_one_and_the_overrides_named():
    model_args, data_args, training_args = parse("--variant", "Q2L-R101-448", "--image_size", "224", "--num_train_epochs", "3")
    assert model_args.image_size == 224 and training_args.num_train_epochs == 3 and training_args.learning_rate == 1e-4
    changed = overridden_values(get_recipe(model_args.recipe), model_args, data_args, training_args)
    assert changed == {"image_size": (448, 224), "num_train_epochs": (80, 3.0)}
    with pytest.raises(ValueError, match="Unknown variant 'Q2L-R50'.*Q2L-R101-448"):
        parse("--variant", "Q2L-R50")
    with pytest.raises(ValueError, match="Unknown recipe 'fast'.*general"):
        parse("--recipe", "fast")
    with pytest.raises(ValueError, match="--recipe Q2L-R101-576 is the recipe of Q2L-R101-576, not of --variant Q2L-R101-448"):
        parse("--variant", "Q2L-R101-448", "--recipe", "Q2L-R101-576")
    with pytest.raises(ValueError, match="--recipe fashion-mnist-mosaic sets its own model: drop --variant Q2L-R101-448"):
        parse("--variant", "Q2L-R101-448", "--recipe", "fashion-mnist-mosaic")


def test_a_variants_model_is_the_papers_with_the_overridden_fields_only():
    from modeling_q2l.zoo.architecture import config_from_options

    labels = ["cat", "dog"]
    model_args, _, _ = parse("--variant", "Q2L-R101-448")
    config = config_from_options(vars(model_args), labels)
    paper = variant_config("Q2L-R101-448")
    assert config.num_labels == 2 and config.frozen_backbone_modules == ["conv1", "bn1", "layer1"]
    for field in ("backbone", "image_size", "hidden_size", "use_input_projection", "encoder_layers", "intermediate_size", "freeze_backbone_batch_norm"):
        assert getattr(config, field) == getattr(paper, field), field
    model_args, _, _ = parse("--variant", "Q2L-R101-448", "--image_size", "224", "--hidden_size", "256")
    config = config_from_options(vars(model_args), labels)
    assert (config.image_size, config.hidden_size, config.use_input_projection) == (224, 256, True)  # a narrower head projects
    model_args, _, _ = parse("--variant", "Q2L-CvT-w24-384")
    config = config_from_options(vars(model_args), labels)
    assert config.backbone is None and config.backbone_config.model_type == "cvt" and config.backbone_hidden_act == "quick_gelu"


def test_a_variant_starts_from_its_own_pretrained_backbone_and_says_so_when_it_cannot(monkeypatch, caplog):
    """Q2L-R101 starts from torchvision's ResNet-101 weights (`resnet101.tv_in1k`), not timm's default ResNet-101;
    offline, the run says it starts from random weights and why."""
    from modeling_q2l import Query2LabelForMultiLabelClassification
    from modeling_q2l.zoo import backbone_weights
    from modeling_q2l.zoo.pretrained import get_pretrained_facts

    asked = []
    monkeypatch.setattr(backbone_weights, "timm_weights_unavailable", lambda name: asked.append(name) or "offline")
    model = Query2LabelForMultiLabelClassification(variant_config("Q2L-R101-448", backbone="test_resnet", hidden_size=32, use_input_projection=True, intermediate_size=64))
    with caplog.at_level("WARNING"):
        weights = backbone_weights.load_pretrained_backbone(model, None, get_pretrained_facts("Q2L-R101-448").base_model)
    assert asked == ["resnet101.tv_in1k"] and not weights.pretrained
    assert "starts from random weights: offline" in caplog.text


def test_the_benchmarks_build_the_demo_model_the_main_job_trains():
    """One home for the demo's recipe: the model the main job builds from its parsed options is the one
    `recipe_config` gives the benchmarks."""
    from modeling_q2l.training.model_setup import build_model
    from modeling_q2l.zoo.recipes import recipe_config

    labels = [str(index) for index in range(10)]
    model_args, _, _ = parse("--backbone_weights", "none")
    trained = build_model(model_args, labels).model.config.to_dict()
    benchmarked = recipe_config(FASHION_MNIST_MOSAIC, labels).to_dict()
    for key in ("transformers_version", "freeze_backbone_stages"):
        trained.pop(key, None), benchmarked.pop(key, None)
    assert trained == benchmarked and benchmarked["backbone_kwargs"] == {"out_indices": [3, 4]}
    assert benchmarked["feature_fusion_channels"] == 256 and benchmarked["encoder_layers"] == 0


def test_every_recipe_sets_only_options_that_exist():
    from transformers import HfArgumentParser

    from modeling_q2l.cli.arguments import DataArguments, ModelArguments, Query2LabelTrainingArguments

    options = {action.dest for action in HfArgumentParser((ModelArguments, DataArguments, Query2LabelTrainingArguments))._actions}
    for recipe in all_recipes().values():
        assert set(recipe.values) <= options, recipe.name
    assert set(all_recipes()) == {GENERAL, FASHION_MNIST_MOSAIC, *VARIANTS}


def test_the_train_script_names_the_embedded_dataset_and_its_recipe():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.EMBEDDED_DATASET == str(EMBEDDED_DATASET)


@pytest.mark.slow
def test_a_variant_run_trains_the_papers_head_and_its_card_names_the_recipe_and_the_overrides(tmp_path):
    """`--variant Q2L-R101-448` shrunk to a tiny backbone: the paper's frozen stem and first stage, its schedule and
    loss, and a card that says which recipe ran and each value that was changed."""
    from helpers import tiny_training_argv

    from modeling_q2l.cli.commands import train

    report = train(["--variant", "Q2L-R101-448", *tiny_training_argv(tmp_path, "--max_steps", "2")], SCRIPT_DEFAULTS, FASHION_MNIST_MOSAIC)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["frozen_backbone_modules"] == ["conv1", "bn1", "layer1"] and config["freeze_backbone_batch_norm"]
    assert (config["encoder_layers"], config["decoder_layers"], config["asl_gamma_neg"]) == (1, 2, 2.0)
    assert report.extra_splits == {}  # not the demo's splits, on the demo's data
    card = (tmp_path / "README.md").read_text()
    assert "Recipe: `Q2L-R101-448` (the paper's architecture at 448 px and the authors' COCO training recipe)" in card
    for changed in ("`backbone` test_resnet (recipe: resnet101)", "`image_size` 64 (recipe: 448)", "`hidden_size` 32 (recipe: 2048)", "`per_device_train_batch_size` 8 (recipe: 64)"):
        assert changed in card, changed
    assert "one-cycle schedule with peak learning rate 0.0001" in card and "conv1, bn1, layer1 were not trained" in card


def test_bfloat16_training_on_a_machine_without_cuda_runs_on_the_cpu():
    """transformers refuses `--bf16` without a GPU unless told the run is a CPU one; AMX CPUs train in bfloat16."""
    import torch

    _, _, training_args = parse("--bf16", "true")
    assert training_args.bf16 and training_args.use_cpu == (not torch.cuda.is_available())
    _, _, plain = parse()
    assert not plain.bf16 and not plain.use_cpu
