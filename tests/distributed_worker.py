"""Run by test_training_run under torch.distributed.run: trains, then saves this rank's final weights."""

import sys
from pathlib import Path

import torch

from modeling_q2l.training.main import parse_arguments, run

if __name__ == "__main__":
    model_args, data_args, training_args = parse_arguments(sys.argv[1:])
    trainer, _ = run(model_args, data_args, training_args)
    rank = training_args.process_index
    torch.save(trainer.model.state_dict(), Path(training_args.output_dir) / f"weights-rank{rank}.pt")
