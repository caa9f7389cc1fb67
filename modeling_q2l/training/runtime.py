"""How a training process runs: its logging and, on CPU, its threads."""

import logging
import os
import sys

import torch
import transformers

logger = logging.getLogger(__name__)


def configure_logging(training_args) -> None:
    """Our log lines on stdout; `--log_level` sets transformers' verbosity and ours."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, handlers=[logging.StreamHandler(sys.stdout)])
    transformers.utils.logging.set_verbosity_warning()
    if training_args.log_level != "passive":
        level = training_args.get_process_log_level()
        transformers.utils.logging.set_verbosity(level)
        logging.getLogger("modeling_q2l").setLevel(level)


def configure_cpu_threads(requested: int | None, training_args) -> int:
    """On CPU, use every core: `accelerate launch` limits torch to 1 thread unless told otherwise."""
    if torch.cuda.is_available() and not training_args.use_cpu:
        return torch.get_num_threads()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = requested or max(1, (os.cpu_count() or 1) // local_processes)
    if threads != torch.get_num_threads():
        logger.info("Using %d torch threads per process (was %d).", threads, torch.get_num_threads())
        torch.set_num_threads(threads)
    return threads
