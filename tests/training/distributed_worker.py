"""Run by test_training_run under torch.distributed.run or `accelerate launch`: trains, then saves what this rank
holds: its final weights (not under FSDP, where each rank holds a shard) and, on the main process, the in-memory
model's logits on the evaluation images with those images."""

import sys
from pathlib import Path

import torch

from modeling_q2l.cli.arguments import parse_training_arguments as parse_arguments
from modeling_q2l.training.main import run

if __name__ == "__main__":
    model_args, data_args, training_args = parse_arguments(sys.argv[1:])
    trainer, _ = run(model_args, data_args, training_args)
    output = Path(training_args.output_dir)
    rank = training_args.process_index
    if not trainer.is_fsdp_enabled:
        torch.save(trainer.model.state_dict(), output / f"weights-rank{rank}.pt")
    prediction = trainer.predict(trainer.eval_dataset)  # every process takes part; the main one gets all logits
    if trainer.is_world_process_zero():
        pixels = torch.stack([trainer.eval_dataset[i]["pixel_values"] for i in range(len(trainer.eval_dataset))])
        torch.save({"logits": torch.as_tensor(prediction.predictions), "pixel_values": pixels}, output / "in-memory.pt")
