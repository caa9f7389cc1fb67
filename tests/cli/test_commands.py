"""The command line: one home for the arguments, thin scripts, one dataset-argument set for every command, and bad
input that ends in one line instead of a traceback."""

import ast
import json
import subprocess
import sys

import pytest
import torch
from helpers import EMBEDDED_DATASET, FASHION_NAMES, REPO, save_model_folder, tiny_config

from modeling_q2l.cli import arguments, commands

SCRIPTS = sorted((REPO / "scripts").glob("*.py")) + [REPO / "app.py"]


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fashion")
    config = tiny_config(num_labels=10, id2label=dict(enumerate(FASHION_NAMES)), label2id={n: i for i, n in enumerate(FASHION_NAMES)})
    torch.manual_seed(0)
    save_model_folder(folder, config)
    return folder


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_script_is_a_thin_call(script):
    """No logic in scripts: a docstring, imports, constants (the repository's defaults), functions of one statement,
    and `run_script(...)` under `if __name__ == "__main__"`."""
    tree = ast.parse(script.read_text())
    allowed = (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef, ast.If)
    body = tree.body[1:] if isinstance(tree.body[0], ast.Expr) else tree.body  # the docstring
    assert all(isinstance(node, allowed) for node in body), script.name
    assert all(len(node.body) == 1 for node in body if isinstance(node, ast.FunctionDef)), script.name
    (main_block,) = [node for node in body if isinstance(node, ast.If)]
    (call,) = main_block.body
    assert isinstance(call.value, ast.Call) and call.value.func.id == "run_script", script.name


def test_no_script_is_named_after_a_library_it_uses():
    """Python puts a script's folder first on the path: a script named like an installed module shadows it."""
    from importlib.metadata import packages_distributions

    installed = set(packages_distributions()) | set(sys.stdlib_module_names)
    assert "evaluate" in installed and "train" not in installed  # the check sees the environment's modules
    assert [script.name for script in SCRIPTS if script.stem in installed] == []


def test_argument_dataclasses_live_only_in_the_cli():
    package = REPO / "modeling_q2l"
    for path in package.rglob("*.py"):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert not node.name.endswith("Arguments"), f"{path}: {node.name} belongs in modeling_q2l/cli/arguments.py"


def test_one_dataset_argument_set_for_training_evaluation_and_prediction():
    from transformers import HfArgumentParser

    training = HfArgumentParser((arguments.ModelArguments, arguments.DataArguments, arguments.Query2LabelTrainingArguments))
    evaluation = HfArgumentParser((arguments.EvaluationArguments, arguments.DataArguments))
    data_options = {action.dest for action in HfArgumentParser(arguments.DataArguments)._actions} - {"help"}
    for parser in (training, evaluation):
        assert data_options <= {action.dest for action in parser._actions}
    # `--split` is the evaluation split's other name
    _, data_args = evaluation.parse_args_into_dataclasses(args=["--model", "m", "--split", "out_of_layout"])
    assert data_args.eval_split_name == "out_of_layout"


def test_predict_reads_a_dataset_split_through_the_shared_loader(fashion_folder, capsys):
    status = commands.predict([
        "--model", str(fashion_folder), "--dataset_name", str(EMBEDDED_DATASET), "--split", "out_of_layout",
        "--max_eval_samples", "3", "--threshold", "0.0", "--device", "cpu",
    ])  # fmt: skip
    results = json.loads(capsys.readouterr().out)
    assert status == 0 and [row["image"] for row in results] == ["out_of_layout[0]", "out_of_layout[1]", "out_of_layout[2]"]
    assert all(len(row["labels"]) == 10 for row in results)  # threshold 0: every label
    with pytest.raises(ValueError, match="not both"):
        commands.predict(["--model", str(fashion_folder), "--dataset_name", str(EMBEDDED_DATASET), "photo.png"])
    with pytest.raises(ValueError, match="No split 'test'"):
        commands.predict(["--model", str(fashion_folder), "--dataset_name", str(EMBEDDED_DATASET), "--split", "test"])


@pytest.mark.slow
def test_bad_input_to_a_script_is_one_line_and_exit_status_1(fashion_folder, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "predict.py"), "--model", str(fashion_folder), "--format", "xml", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: --format must be json or csv, got 'xml'."


def test_the_demo_command_needs_a_model(monkeypatch):
    monkeypatch.delenv("Q2L_MODEL", raising=False)
    with pytest.raises(ValueError, match="--model"):
        commands.demo([])
    monkeypatch.setenv("Q2L_MODEL", "org/model")
    (args,) = arguments.parse((arguments.DemoArguments,), [])
    assert args.model == "org/model" and args.port == 7860


@pytest.mark.slow
def test_setup_reads_the_packages_one_version():
    import modeling_q2l

    result = subprocess.run([sys.executable, "setup.py", "--version"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == modeling_q2l.__version__


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_scripts_help_works(script, monkeypatch, capsys):
    """`--help` of every script (a new one is found by the glob): argparse formats each help text with `%`, so a
    bare `20%` in one ends the whole help in a TypeError."""
    import runpy

    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert stopped.value.code == 0 and out.startswith("usage:") and "--" in out.split("options:", 1)[1]
    if script.name in ("predict.py", "visualize_attention.py"):  # the images come after the options: the usage says so
        assert "[options] IMAGE_OR_FOLDER [IMAGE_OR_FOLDER ...]" in out.splitlines()[0]


def test_the_training_help_lists_the_recipes_and_every_variant(monkeypatch, capsys):
    from modeling_q2l.zoo.variants import VARIANTS

    with pytest.raises(SystemExit):
        arguments.parse_training_arguments(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert all(name in text for name in VARIANTS) and "fashion-mnist-mosaic:" in text and "general:" in text


def test_building_mosaics_needs_an_output_folder_and_never_writes_over_a_dataset(tmp_path):
    """No default output folder (it once was the repository's embedded dataset); a folder holding files is replaced
    only when asked, and then no split of the old build is left behind."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_mosaic_dataset", REPO / "scripts" / "build_mosaic_dataset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    embedded = sorted(path.stat().st_mtime_ns for path in EMBEDDED_DATASET.rglob("*"))
    with pytest.raises(ValueError, match="Pass --output_dir"):
        script.main(["--num_train", "4"])
    occupied = tmp_path / "occupied"
    (occupied / "data").mkdir(parents=True)
    (occupied / "data" / "layout_old-00000-of-00001.parquet").write_bytes(b"old")
    with pytest.raises(ValueError, match="not empty.*--overwrite_output_dir true"):
        script.main(["--output_dir", str(occupied)])
    assert sorted(path.stat().st_mtime_ns for path in EMBEDDED_DATASET.rglob("*")) == embedded
    source = tmp_path / "source"
    _single_label_dataset(source)
    small = ["--dataset_name", str(source), "--num_train", "6", "--num_validation", "3", "--out_of_layout_split", "none", "--num_per_layout", "0"]
    paths = script.main(["--output_dir", str(occupied), "--overwrite_output_dir", "true", *small])
    assert sorted(path.name.split("-")[0] for path in (occupied / "data").glob("*.parquet")) == ["train", "validation"] == sorted(paths)


def _single_label_dataset(folder):
    """A tiny single-label image dataset on disk (ClassLabel column), from real garments of the embedded set."""
    from datasets import ClassLabel, Dataset, Features, Image

    from helpers import validation_images

    images = [image.convert("L").resize((28, 28)) for image in validation_images(60)]
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b", "c"])})
    Dataset.from_dict({"image": images, "label": [index % 3 for index in range(60)]}, features=features).save_to_disk(str(folder))
