"""`--push_to_hub` in training: checked before the run, done once after it.

The Trainer would push every checkpoint, without the image processor, card or results; instead the finished folder
is checked (it loads through remote code alone) and uploaded in one commit after the final evaluation.
"""

import logging
from pathlib import Path

from ..evaluation.report import EvaluationReport
from ..hub.publish import check_loads_without_package, hub_token, push_folder

logger = logging.getLogger(__name__)


def take_over_push(training_args) -> bool:
    """With `--push_to_hub`: check the repository id and the token now, before any training, and turn the Trainer's
    own pushing off (logged). Returns whether the finished folder is to be pushed."""
    if not training_args.push_to_hub:
        return False
    if not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME: the Hub repository to create or update.")
    hub_token(training_args.hub_token)
    training_args.push_to_hub = False
    logger.info("--push_to_hub: %s gets the finished folder in one commit after the final evaluation, not each checkpoint.", training_args.hub_model_id)
    return True


def push_outputs(training_args, report: EvaluationReport) -> str:
    """Check that the saved folder loads through remote code alone, then upload it in one commit."""
    folder = Path(training_args.output_dir)
    check_loads_without_package(folder, "The trained model (saved, not pushed) in")
    return push_folder(
        folder,
        training_args.hub_model_id,
        private=bool(training_args.hub_private_repo),
        revision=training_args.hub_revision,
        commit_message=f"Query2Label trained with scripts/train.py (mAP {100 * report.mAP:.2f} on {report.eval_split})",
        token=training_args.hub_token,
    )
