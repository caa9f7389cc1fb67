"""The Auto classes give each saved folder its own class: a Query2Label folder and a global-average-pooling baseline
folder (the same config class, another head) load as themselves with and without this package imported, with and
without remote code."""

import pytest
import torch
from helpers import save_model_folder, tiny_config
from transformers import AutoModelForImageClassification, pipeline

from modeling_q2l import Query2LabelBaselineForMultiLabelClassification, Query2LabelForMultiLabelClassification
from modeling_q2l.hub.remote_code_check import check_folder_without_package

HEADS = {"query2label": Query2LabelForMultiLabelClassification, "global_average_pooling": Query2LabelBaselineForMultiLabelClassification}
LABELS = ["cat", "dog", "car", "tree", "person", "boat", "bird"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    saved = {}
    for head in HEADS:
        torch.manual_seed(0)
        config = tiny_config(classifier_head=head, num_labels=7, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
        saved[head] = save_model_folder(tmp_path_factory.mktemp(head), config)
    return saved


@pytest.mark.parametrize("trust_remote_code", [False, True])
@pytest.mark.parametrize("head", list(HEADS))
def test_each_folder_loads_as_its_own_class_with_the_package_imported(folders, head, trust_remote_code):
    model = AutoModelForImageClassification.from_pretrained(folders[head], trust_remote_code=trust_remote_code)
    assert type(model) is HEADS[head]
    saved = HEADS[head].from_pretrained(folders[head])
    for key, value in saved.state_dict().items():  # every weight loaded, none initialised afresh
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    if trust_remote_code:  # the folder's multi-label pipeline is remote code
        assert type(pipeline("image-classification", model=str(folders[head]), trust_remote_code=True).model) is HEADS[head]


@pytest.mark.parametrize("head", list(HEADS))
def test_a_new_config_builds_its_own_head(head):
    config = tiny_config(classifier_head=head)
    assert config.architectures == [HEADS[head].__name__]
    assert type(AutoModelForImageClassification.from_config(config)) is HEADS[head]


@pytest.mark.slow
@pytest.mark.parametrize("head", list(HEADS))
def test_each_folder_loads_as_its_own_class_without_the_package(folders, head):
    seen = check_folder_without_package(folders[head])
    assert seen["model_class"] == HEADS[head].__name__ and seen["model_module"].startswith("transformers_modules.")
    assert sorted(prediction["label"] for prediction in seen["predictions"]) == sorted(LABELS)
