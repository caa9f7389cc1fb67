"""Which checkpoint a training run resumes from."""

import logging
import shutil
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger(__name__)


def checkpoint_to_resume(training_args) -> str | None:
    """`--resume_from_checkpoint` if given; else the last checkpoint in the output folder, as transformers' example
    scripts do, unless `--overwrite_output_dir` asks to start over (its checkpoints are then deleted)."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    output_dir = Path(training_args.output_dir)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
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
