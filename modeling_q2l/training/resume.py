"""Which checkpoint a training run resumes from."""

import logging
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .interruption import checkpoint_problem

logger = logging.getLogger(__name__)


def checkpoint_to_resume(training_args) -> str | None:
    """`--resume_from_checkpoint` if given (it must be complete); else the last complete checkpoint in the output
    folder, as transformers' example scripts do, skipping any that a killed run cut short (said in one log line each),
    unless `--overwrite_output_dir` asks to start over (its checkpoints are then deleted)."""
    if training_args.resume_from_checkpoint:
        problem = checkpoint_problem(training_args.resume_from_checkpoint)
        if problem:
            raise ValueError(f"--resume_from_checkpoint {training_args.resume_from_checkpoint} cannot be resumed from: {problem}.")
        return training_args.resume_from_checkpoint
    output_dir = Path(training_args.output_dir)
    last = _last_complete_checkpoint(output_dir) if output_dir.is_dir() else None
    if last is None:
        return None
    if getattr(training_args, "overwrite_output_dir", False):
        logger.info("--overwrite_output_dir: deleting the checkpoints in %s and starting over.", output_dir)
        if training_args.should_save:
            for folder in output_dir.glob("checkpoint-*"):
                shutil.rmtree(folder)
        return None
    logger.info("Resuming from %s, the last checkpoint in %s (--overwrite_output_dir true starts over).", last, output_dir)
    return last


def _last_complete_checkpoint(output_dir: Path) -> str | None:
    def step(path: Path) -> int:
        suffix = path.name[len(PREFIX_CHECKPOINT_DIR) + 1 :]
        return int(suffix) if suffix.isdigit() else -1

    for folder in sorted(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), key=step, reverse=True):
        if step(folder) < 0 or not folder.is_dir():
            continue
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        logger.warning("Skipping %s: %s; looking for an earlier checkpoint.", folder, problem)
    return None
