"""Run by test_interruption: the main job, with the process sending itself SIGTERM (as a preempting scheduler
would) when training reaches the step given in Q2L_SIGTERM_AT_STEP."""

import os
import signal
import sys

from transformers import TrainerCallback

from modeling_q2l.cli.commands import run_script, train
from modeling_q2l.training import trainer as trainer_module


class SigtermAt(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["Q2L_SIGTERM_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGTERM)


original_init = trainer_module.Query2LabelTrainer.__init__


def init_with_sigterm(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self.add_callback(SigtermAt())


if __name__ == "__main__":
    trainer_module.Query2LabelTrainer.__init__ = init_with_sigterm
    run_script(train, sys.argv[1:])
