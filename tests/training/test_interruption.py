"""Interrupted runs lose nothing: cut-short checkpoints are skipped (or refused when named), SIGTERM ends in a
checkpoint the next run resumes from, and the final folder is swapped in whole."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_training_argv

from modeling_q2l.cli.arguments import parse_training_arguments
from modeling_q2l.training.interruption import FolderUpdate, checkpoint_problem
from modeling_q2l.training.main import run
from modeling_q2l.training.resume import checkpoint_to_resume

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow

COMMON = ["--save_strategy", "steps", "--save_steps", "2", "--max_train_samples", "40", "--per_device_train_batch_size", "8",
          "--num_train_epochs", "2", "--ema_decay", "0.9"]  # fmt: skip


def train(output, *extra):
    return run(*parse_training_arguments(tiny_training_argv(output, *COMMON, *extra)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: 10 steps, checkpoints every 2."""
    output = tmp_path_factory.mktemp("reference")
    trainer, report = train(output)
    return output, trainer, report


def cut_short(checkpoint: Path) -> None:
    """What a run killed while writing `checkpoint` leaves: the weights file truncated, no trainer_state.json."""
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (checkpoint / "trainer_state.json").unlink()


def test_checkpoint_problems_are_named(reference, tmp_path):
    output, _, _ = reference
    complete = sorted(output.glob("checkpoint-*"))[-1]
    assert checkpoint_problem(complete) is None
    broken = shutil.copytree(complete, tmp_path / "checkpoint-10")
    (broken / "trainer_state.json").write_text('{"log_history": [')
    assert "trainer_state.json is cut short" in checkpoint_problem(broken)
    cut_short(broken)
    assert "no trainer_state.json" in checkpoint_problem(broken)
    (broken / "trainer_state.json").write_text("{}")
    assert "model.safetensors is cut short" in checkpoint_problem(broken)
    shutil.copy(complete / "model.safetensors", broken / "model.safetensors")
    optimizer = broken / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:-100])
    assert checkpoint_problem(broken) == "optimizer.pt is cut short"


def test_auto_resume_skips_a_cut_short_checkpoint_and_ends_as_the_uninterrupted_run(reference, tmp_path, caplog):
    _, reference_trainer, reference_report = reference
    source, _, _ = reference
    interrupted = tmp_path / "interrupted"
    for checkpoint in ("checkpoint-8", "checkpoint-10"):  # as if killed while writing checkpoint-10
        shutil.copytree(source / checkpoint, interrupted / checkpoint)
    cut_short(interrupted / "checkpoint-10")
    with caplog.at_level("INFO"):
        resumed, report = train(interrupted)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Skipping" in m and "checkpoint-10" in m and "no trainer_state.json" in m for m in messages)
    assert any("Resuming from" in m and "checkpoint-8" in m for m in messages)
    assert resumed.state.global_step == reference_trainer.state.global_step
    for key, value in reference_trainer.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert report.mAP == reference_report.mAP


def test_resuming_from_a_named_incomplete_checkpoint_is_a_clear_error(reference, tmp_path):
    output, _, _ = reference
    broken = shutil.copytree(sorted(output.glob("checkpoint-*"))[-1], tmp_path / "checkpoint-10")
    cut_short(broken)
    _, _, training_args = parse_training_arguments(tiny_training_argv(tmp_path / "out", "--resume_from_checkpoint", str(broken)))
    with pytest.raises(ValueError, match=r"checkpoint-10 cannot be resumed from: it has no trainer_state.json"):
        checkpoint_to_resume(training_args)


def learning_rates(trainer) -> dict:
    return {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}


def test_resuming_with_a_longer_run_rebuilds_the_one_cycle_schedule_for_it(reference, tmp_path, caplog):
    """Extending a run (the same folder, more epochs): the checkpoint's one-cycle schedule was built for 10 steps;
    the resumed run follows a schedule built for 20, from step 8 on exactly as a 20-step run does, and says so."""
    source, _, _ = reference
    extended = tmp_path / "extended"
    shutil.copytree(source / "checkpoint-8", extended / "checkpoint-8")
    with caplog.at_level("INFO"):
        resumed, _ = train(extended, "--num_train_epochs", "4")
    assert resumed.state.global_step == 20
    assert any("built for 10 steps, this run asks for 20; the schedule is rebuilt" in record.getMessage() for record in caplog.records)
    scheduler = torch.load(extended / "checkpoint-20" / "scheduler.pt", weights_only=True)
    assert (scheduler["total_steps"], scheduler["last_epoch"]) == (20, 20)
    uninterrupted, _ = train(tmp_path / "twenty", "--num_train_epochs", "4")
    expected = {step: rate for step, rate in learning_rates(uninterrupted).items() if step > 8}
    continued = {step: rate for step, rate in learning_rates(resumed).items() if step > 8}
    assert continued == pytest.approx(expected, rel=1e-6) and len(expected) == 12


def test_resuming_with_fewer_steps_than_the_checkpoint_has_is_one_clear_line(reference, tmp_path):
    source, _, _ = reference
    shutil.copytree(source / "checkpoint-8", tmp_path / "checkpoint-8")
    with pytest.raises(ValueError, match=r"The checkpoint this run resumes from has already trained 8 steps, and this run asks for 6 in all: ask for more steps"):
        train(tmp_path, "--max_steps", "6")


def test_sigterm_saves_a_checkpoint_and_the_next_run_ends_as_the_uninterrupted_one(reference, tmp_path):
    _, reference_trainer, _ = reference
    output = tmp_path / "preempted"
    worker = Path(__file__).with_name("sigterm_worker.py")
    env = {**os.environ, "Q2L_SIGTERM_AT_STEP": "3", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(worker), *tiny_training_argv(output, *COMMON)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "Stopped by SIGTERM at step 4" in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert checkpoint_problem(output / "checkpoint-4") is None and not (output / "model.safetensors").exists()
    resumed, _ = train(output)
    assert resumed.state.global_step == reference_trainer.state.global_step
    for key, value in reference_trainer.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_a_save_killed_half_way_leaves_the_previous_folder_whole(reference, tmp_path, monkeypatch):
    source, _, _ = reference
    folder = shutil.copytree(source, tmp_path / "run")
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    from modeling_q2l.hub import model_card

    monkeypatch.setattr(model_card.ModelCard, "save", lambda self, path: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed after the weights, before the card: nothing swapped in
        train(folder, "--overwrite_output_dir", "true", "--max_steps", "2", "--learning_rate", "1e-2")
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before
    monkeypatch.undo()
    trainer, _ = train(folder, "--overwrite_output_dir", "true", "--max_steps", "2", "--learning_rate", "1e-2")
    after = folder / "model.safetensors"
    assert after.read_bytes() != before["model.safetensors"] and json.loads((folder / "eval_results.json").read_text())
    assert not list(tmp_path.glob(".run.saving-*")) and not list(tmp_path.glob(".run.previous-*"))  # no leftovers


def test_folder_update_keeps_checkpoints_and_drops_old_model_files(tmp_path):
    folder = tmp_path / "model"
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (folder / "model-00001-of-00002.safetensors").write_text("old shard")
    (folder / "figures").mkdir()
    (folder / "figures" / "old.png").write_text("old")
    update = FolderUpdate(folder)
    (update.staging / "model.safetensors").write_text("new")
    (update.staging / "model.safetensors").chmod(0o600)  # as transformers writes weights
    update.commit()
    assert sorted(path.name for path in folder.iterdir()) == ["checkpoint-2", "model.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # readable as the user's other files
    assert (folder / "checkpoint-2" / "trainer_state.json").read_text() == "{}"
    assert not update.staging.exists()
