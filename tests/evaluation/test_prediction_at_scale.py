"""Prediction streams: images are decoded batch by batch (in worker processes when asked), answers are written as
they come, and the order and the failures are the same with or without workers."""

import io
import json

import pytest
import torch
from helpers import tiny_config, validation_images

from modeling_q2l import Query2LabelForMultiLabelClassification, Query2LabelImageProcessor
from modeling_q2l.evaluation.predict import StreamedOutput, file_sources, iter_predictions


@pytest.fixture(scope="module")
def model_and_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for index, image in enumerate(validation_images(30)):
        image.save(folder / f"{index:03d}.jpg")
    (folder / "015b.jpg").write_text("not an image")  # sorted between 015 and 016
    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(tiny_config(num_labels=7)).eval()
    processor = Query2LabelImageProcessor(size={"height": 64, "width": 64})
    return model, processor, sorted(folder.glob("*.jpg"))


def test_workers_change_nothing_but_speed(model_and_files):
    model, processor, paths = model_and_files
    thresholds = torch.full((7,), 0.5)
    alone = list(iter_predictions(model, processor, file_sources(paths), thresholds, batch_size=4, num_workers=0))
    workers = list(iter_predictions(model, processor, file_sources(paths), thresholds, batch_size=4, num_workers=2))
    assert [row["image"] for row in alone] == [str(path) for path in paths]  # every input, in order
    assert "cannot read the image" in alone[16]["error"] and alone[16]["image"].endswith("015b.jpg")
    assert workers == alone


def test_images_are_decoded_as_the_model_needs_them(model_and_files):
    model, processor, paths = model_and_files
    opened = []

    def counting(path):
        def open_it():
            opened.append(path)
            return validation_images(1)[0]

        return str(path), open_it

    results = iter_predictions(model, processor, [counting(path) for path in paths], torch.full((7,), 0.5), batch_size=4)
    next(results)
    assert len(opened) == 4  # one batch decoded, not all 31 images
    assert len(list(results)) == len(paths) - 1 and len(opened) == len(paths)


def test_answers_are_written_as_they_come():
    for output_format, parse in (("json", json.loads), ("csv", lambda text: text.splitlines())):
        stream = io.StringIO()
        output = StreamedOutput(stream, output_format)
        output.write({"image": "a.png", "labels": [{"label": "cat", "score": 0.9}]})
        assert "a.png" in stream.getvalue()  # before the end
        output.write({"image": "b.png", "labels": []})
        output.close()
        parsed = parse(stream.getvalue())
        assert parsed == ([{"image": "a.png", "labels": [{"label": "cat", "score": 0.9}]}, {"image": "b.png", "labels": []}]
                          if output_format == "json" else ["image,label,score", "a.png,cat,0.9"])  # fmt: skip
    empty = io.StringIO()
    StreamedOutput(empty, "json").close()
    assert json.loads(empty.getvalue()) == []
    with pytest.raises(ValueError, match="json or csv"):
        StreamedOutput(io.StringIO(), "xml")
