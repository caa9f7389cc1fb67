"""Group decoding (`label_groups`): G queries, each decoding its share of the labels."""






import pytest
import torch
from helpers import grouped_model, tiny_config, tiny_training_argv

from modeling_q2l import Query2LabelConfig, Query2LabelForMultiLabelClassification
from modeling_q2l.evaluation.attention_maps import label_attention_maps


def test_group_decoding_decodes_each_group_into_its_labels():
    model = grouped_model()  # 23 labels in 5 groups of 5 (the last group has 2 padding outputs)
    assert model.config.num_queries == 5 and model.config.labels_per_query == 5
    assert model.model.label_embeddings.weight.shape == (5, 32)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = model(pixel_values=pixels, output_attentions=True)
        hidden = model.model(pixel_values=pixels).last_hidden_state  # (2, 5 groups, 32)
    assert outputs.logits.shape == (2, 23) and hidden.shape == (2, 5, 32)
    assert outputs.cross_attentions[-1].shape[:3] == (2, 4, 5)  # (batch, heads, groups)
    weight, bias = model.classifier.weight, model.classifier.bias  # (5, 5, 32), (23,)
    for label in (0, 4, 5, 17, 22):
        group, slot = divmod(label, 5)
        expected = hidden[:, group] @ weight[group, slot] + bias[label]
        torch.testing.assert_close(outputs.logits[:, label], expected)
        assert model.config.query_of_label(label) == group
    maps = label_attention_maps(model, pixels).maps  # per label: its group's map
    torch.testing.assert_close(maps[:, 17], outputs.cross_attentions[-1][:, :, 3].mean(1))


def test_without_groups_the_model_is_the_papers():
    config = tiny_config(num_labels=12)
    assert config.label_groups is None and config.num_queries == 12
    assert Query2LabelForMultiLabelClassification(config).model.label_embeddings.weight.shape[0] == 12


@pytest.mark.parametrize("groups", [0, 13])
def test_label_groups_must_fit_the_labels(groups):
    with pytest.raises(ValueError, match="label_groups must lie between 1 and num_labels"):
        tiny_config(num_labels=12, label_groups=groups)


@pytest.mark.slow
def test_a_grouped_model_trains_saves_and_loads_through_remote_code(tmp_path):
    from transformers import AutoModelForImageClassification

    from modeling_q2l.cli.arguments import parse_training_arguments as parse_arguments
    from modeling_q2l.training.main import run

    trainer, report = run(*parse_arguments(tiny_training_argv(tmp_path / "run", "--label_groups", "3")))
    saved = AutoModelForImageClassification.from_pretrained(tmp_path / "run", trust_remote_code=True).eval()
    assert saved.config.label_groups == 3 and saved.model.label_embeddings.weight.shape[0] == 3
    assert report.num_images == 16 and 0 <= report.mAP <= 1
    pixels = torch.randn(2, 3, 64, 64)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        torch.testing.assert_close(saved(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


def test_config_round_trip_keeps_groups(tmp_path):
    config = tiny_config(num_labels=30, label_groups=7)
    config.save_pretrained(tmp_path)
    loaded = Query2LabelConfig.from_pretrained(tmp_path)
    assert loaded.label_groups == 7 and loaded.labels_per_query == 5 and loaded.query_of_label(29) == 5

