"""The README's worked example, run as written at a tiny size: a local `imagefolder` of real images with a
`metadata.jsonl` per split, the training command, then predicting with the result; and what the general recipe did
with a user's dataset (nothing of the demo's recipe)."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EMBEDDED_DATASET, REPO

# Appended to the README's training command: a tiny model and a few steps, so that it runs in seconds.
TINY = [
    "--backbone", "test_resnet", "--hidden_size", "32", "--intermediate_size", "64", "--image_size", "64",
    "--max_steps", "3", "--per_device_train_batch_size", "8", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
]  # fmt: skip


def worked_example() -> tuple[str, dict, list[str]]:
    """(the folder tree, the metadata line, the commands) of the README's worked example."""
    section = (REPO / "README.md").read_text().split("### A worked example", 1)[1].split("\n### ", 1)[0]
    tree = re.search(r"```\n(.*?)```", section, re.DOTALL)[1]
    line = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL)[1])
    commands = [command for command in re.search(r"```bash\n(.*?)```", section, re.DOTALL)[1].splitlines() if command.strip()]
    return tree, line, commands


def write_image_folder(root: Path, tree: str, line: dict) -> None:
    """The folder the README draws, filled with real mosaics of the embedded set and their label names, one
    metadata line per image in the README's shape."""
    from datasets import load_dataset

    source = load_dataset("parquet", data_files=str(next((EMBEDDED_DATASET / "data").glob("validation-*.parquet"))))["train"]
    names = source.features["labels"].feature.names
    splits = {"train": (1, 24), "validation": (101, 8)}  # the README names 0001.jpg and 0101.jpg
    assert all(f"{split}/" in tree for split in splits) and "metadata.jsonl" in tree and set(line) == {"file_name", "labels"}
    offset = 0
    for split, (first, count) in splits.items():
        folder = root / split
        folder.mkdir(parents=True)
        with open(folder / "metadata.jsonl", "w") as metadata:
            for index in range(count):
                example = source[offset + index]
                file_name = f"{first + index:04d}.jpg"
                example["image"].convert("RGB").save(folder / file_name, quality=90)
                metadata.write(json.dumps({"file_name": file_name, "labels": [names[label] for label in example["labels"]]}) + "\n")
        offset += count


@pytest.mark.slow
def test_the_readme_worked_example_runs_as_written_and_gets_the_general_recipe(tmp_path):
    tree, line, commands = worked_example()
    assert [command.split()[:4] for command in commands] == [["accelerate", "launch", "--quiet", "scripts/train.py"], ["python", "scripts/predict.py", "--model", "outputs/my-model"]]
    dataset = shlex.split(commands[0])[shlex.split(commands[0]).index("--dataset_name") + 1]
    write_image_folder(tmp_path / dataset, tree, line)
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    runs = []
    for command in commands:
        argv = [REPO / value if value.startswith("scripts/") else value for value in shlex.split(command)]
        argv = [accelerate, *argv[1:], *TINY] if argv[0] == "accelerate" else [sys.executable, *argv[1:]]
        runs.append(subprocess.run([str(value) for value in argv], capture_output=True, text=True, timeout=600, cwd=tmp_path))
        assert runs[-1].returncode == 0, runs[-1].stderr[-4000:]
    trained = tmp_path / shlex.split(commands[0])[shlex.split(commands[0]).index("--output_dir") + 1]
    # the general recipe, said at the start: nothing of the embedded demo's
    log = runs[0].stdout + runs[0].stderr
    assert "Recipe general (the documented defaults, for any dataset); overridden: backbone 'test_resnet' (recipe: 'tf_efficientnet_lite0')" in log
    assert "max_steps 3 (recipe: -1)" in log and "output_dir" not in log.split("Recipe general", 1)[1].split("\n", 1)[0]
    assert json.loads((trained / "preprocessor_config.json").read_text())["size"] == {"height": 64, "width": 64}
    report = json.loads((trained / "eval_results.json").read_text())
    assert report["dataset"] == dataset and "localization" not in report and not report.get("extra_splits")
    config = json.loads((trained / "config.json").read_text())
    assert config["image_size"] == 64 and not config.get("frozen_backbone_modules") and config["encoder_layers"] == 1
    card = (trained / "README.md").read_text()
    assert "Recipe: `general`" in card and "layout randomisation" not in card and "frozen" not in card
    # predicting with the result: one answer for the image the README names, labels among the dataset's
    (answer,) = json.loads(runs[1].stdout)
    assert answer["image"].endswith("0101.jpg") and {row["label"] for row in answer["labels"]} <= set(config["label2id"])


@pytest.mark.slow
def test_a_mistake_through_accelerate_launch_is_one_line(tmp_path):
    """The README's launcher with `--quiet`: a split the data lacks is the script's one line and exit status 1,
    without accelerate's own traceback."""
    tree, line, commands = worked_example()
    write_image_folder(tmp_path / "my_photos", tree, line)
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    argv = [accelerate, "launch", "--quiet", str(REPO / "scripts" / "train.py"), "--dataset_name", "my_photos", "--eval_split_name", "test", *TINY]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: No split 'test' in my_photos (splits: ['train', 'validation'])."
