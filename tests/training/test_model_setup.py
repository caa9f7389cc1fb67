import pytest
import torch

from modeling_q2l.zoo.architecture import backbone_kwargs_for_grid


@pytest.mark.parametrize(
    "backbone, kwargs, size, min_grid, expected",
    [
        ("tf_efficientnet_lite0", None, 128, 6, {"out_indices": [3]}),  # the main job: 8 x 8 instead of 4 x 4
        ("tf_efficientnet_lite0", None, 224, 6, None),  # 7 x 7 at the last stage is enough
        ("resnet101", None, 448, 6, None),  # the paper's models keep their last stage
        ("test_resnet", None, 64, 6, {"out_indices": [2]}),
        ("tf_efficientnet_lite0", None, 128, 0, None),  # asked for the last stage
        ("tf_efficientnet_lite0", {"output_stride": 16}, 128, 6, {"output_stride": 16}),  # the user chose
        ("tf_efficientnet_lite0", {"out_indices": [2]}, 128, 6, {"out_indices": [2]}),
        ("tf_efficientnet_lite0", {"drop_rate": 0.1}, 128, 6, {"drop_rate": 0.1, "out_indices": [3]}),
    ],
)
def test_the_denser_grid_is_chosen_only_where_the_last_one_is_too_coarse(backbone, kwargs, size, min_grid, expected):
    assert backbone_kwargs_for_grid(backbone, kwargs, size, min_grid) == expected


def test_fusing_keeps_the_last_stage_in_the_chosen_grid():
    assert backbone_kwargs_for_grid("tf_efficientnet_lite0", None, 128, 6, fuse=True) == {"out_indices": [3, 4]}
    assert backbone_kwargs_for_grid("tf_efficientnet_lite0", None, 448, 6, fuse=True) is None


def test_the_main_jobs_model_attends_to_the_fused_dense_grid():
    from dataclasses import fields

    from modeling_q2l.cli.arguments import ModelArguments
    from modeling_q2l.training.model_setup import build_model
    from modeling_q2l.zoo.recipes import FASHION_MNIST_MOSAIC, get_recipe

    options = {field.name for field in fields(ModelArguments)}
    demo = {name: value for name, value in get_recipe(FASHION_MNIST_MOSAIC).values.items() if name in options}
    demo.update(backbone_weights="none", frozen_backbone_stages=None, feature_fusion_channels=None)

    def config_of(**changes):
        return build_model(ModelArguments(**{**demo, **changes}), ["a", "b"]).model.config

    config = config_of()
    assert config.backbone_kwargs == {"out_indices": [3, 4]} and config.fuse_feature_levels and config.encoder_layers == 0
    alone = config_of(fuse_feature_levels=False)
    assert alone.backbone_kwargs == {"out_indices": [3]} and not alone.fuse_feature_levels
    wide = build_model(ModelArguments(**{**demo, "feature_fusion_channels": 256}), ["a", "b"]).model
    assert wide.config.feature_fusion_channels == 256 and wide.get_backbone().num_features == 256
    with pytest.raises(ValueError, match="--feature_fusion_channels sets the width of fused feature levels, but this run's queries attend to one level"):
        config_of(fuse_feature_levels=False, feature_fusion_channels=256)
    general = build_model(ModelArguments(backbone_weights="none"), ["a", "b"]).model.config  # 224 px: the last stage, 7 x 7
    assert general.backbone_kwargs is None and general.image_size == 224 and general.encoder_layers == 1


def test_the_chosen_stage_gives_the_promised_grid():
    from helpers import tiny_config

    from modeling_q2l import Query2LabelForMultiLabelClassification

    kwargs = backbone_kwargs_for_grid("test_resnet", None, 64, 6)
    model = Query2LabelForMultiLabelClassification(tiny_config(backbone_kwargs=kwargs)).eval()
    with torch.no_grad():
        attentions = model(torch.randn(1, 3, 64, 64), output_attentions=True).cross_attentions[-1]
    assert tuple(attentions.shape[-2:]) == (8, 8)  # 64 px at stride 8
