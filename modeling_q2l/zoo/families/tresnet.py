"""TResNet-L, TResNet-XL and TResNet-L v2: timm's `tresnet_*`, the official tensors through timm's own checkpoint
filter. The authors' TResNets take unnormalised inputs (0 to 1)."""

from ..family import CHECKED_KEY_BY_KEY, BackboneFamily, PretrainedFacts, Query2LabelVariant, register_family, strip_prefix

TIMM_NAMES = {"tresnetl": "tresnet_l", "tresnetxl": "tresnet_xl", "tresnetl_v2": "tresnet_v2_l"}


def config_kwargs(name: str, image_size: int) -> dict:
    return {"backbone": TIMM_NAMES[name], "backbone_kwargs": {"features_only": False}}


def convert(tensors: dict, backbone) -> tuple[dict, dict]:
    from timm.models.tresnet import checkpoint_filter_fn

    # Official keys are `body.body.*` (the detector wrapper's `body`, then TResNet's own `body`).
    inner = {strip_prefix(key, "body."): value for key, value in tensors.items()}
    return {f"model.{key}": value for key, value in checkpoint_filter_fn(inner, backbone.model).items()}, {}


def _variant(name, official, size, channels, words, pretraining, paper_map, released, base_model):
    return Query2LabelVariant(name, official, size, channels, PretrainedFacts(words, pretraining, paper_map, released, base_model))


TRESNET = register_family(
    BackboneFamily(
        name="tresnet",
        official_names=tuple(TIMM_NAMES),
        config_kwargs=config_kwargs,
        convert=convert,
        feature_stride=32,
        conversion_check=CHECKED_KEY_BY_KEY,
        variants=(
            _variant("Q2L-TResL-448", "tresnetl", 448, 2432, "TResNet-L", "ImageNet-1k", 87.3, True, "timm/tresnet_l.miil_in1k_448"),
            _variant("Q2L-TResL-22k-448", "tresnetl_v2", 448, 2048, "TResNet-L (v2)", "ImageNet-22k", 89.2, True, "timm/tresnet_v2_l.miil_in21k"),
            _variant("Q2L-TResXL-640", "tresnetxl", 640, 2656, "TResNet-XL", "ImageNet-1k", 89.0, False, "timm/tresnet_xl.miil_in1k_448"),
            _variant("Q2L-TResL-22k-640", "tresnetl_v2", 640, 2048, "TResNet-L (v2)", "ImageNet-22k", 90.3, False, "timm/tresnet_v2_l.miil_in21k"),
        ),
        image_mean=(0.0, 0.0, 0.0),
        image_std=(1.0, 1.0, 1.0),
    )
)
