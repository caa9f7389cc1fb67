"""Runs that are stopped lose nothing: checkpoints cut short are recognised, SIGTERM (a preempted machine) ends in a
checkpoint, and the final folder is replaced in one step.

- `checkpoint_problem(folder)`: why a checkpoint cannot be resumed from (no `trainer_state.json`, a weights or
  optimizer file cut short), or None.
- `SigtermCheckpoint`: a callback that, on SIGTERM, lets the current step finish, saves a checkpoint and stops.
- `FolderUpdate`: the final folder is written into a sibling staging folder and swapped with the old one atomically
  (Linux `renameat2(RENAME_EXCHANGE)`), so a kill during the save leaves the previous complete folder or the new one.
"""

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import signal
import threading
import zipfile
from pathlib import Path

from transformers import TrainerCallback

from ..saved_models import safetensors_error

logger = logging.getLogger(__name__)


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why `folder` cannot be resumed from, or None when it is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    state = folder / "trainer_state.json"
    if not state.is_file():
        return "it has no trainer_state.json (the save was cut short)"
    try:
        json.loads(state.read_text())
    except ValueError:
        return "its trainer_state.json is cut short"
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if not any(path.name.startswith(("model", "pytorch_model")) for path in weights):
        return "it holds no model weights"
    for path in folder.glob("*.safetensors"):
        error = safetensors_error(path)
        if error:
            return f"{path.name} is cut short or damaged ({error})"
    for path in folder.glob("*.pt*"):  # torch.save writes zip archives, whose index is at the end
        if path.is_file() and not zipfile.is_zipfile(path):
            return f"{path.name} is cut short"
    return None


class SigtermCheckpoint(TrainerCallback):
    """On SIGTERM, finish the current step, save a checkpoint there and stop training; `stopped_at` is then the step.
    The handler is installed for the length of training (main thread only) and the previous one restored."""

    def __init__(self):
        self.received = False
        self.stopped_at: int | None = None
        self._previous = None

    def _handle(self, signum, frame):
        self.received = True
        logger.warning("SIGTERM received: saving a checkpoint after this step, then stopping.")

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 with RENAME_EXCHANGE); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = libc.renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    return result == 0


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


class FolderUpdate:
    """Write a new version of `folder` into `staging` (a sibling), then `commit()`: everything of `folder` that the
    new version does not replace (checkpoints, logs) is hard-linked into it, and the two are swapped in one step."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.parent.glob(f".{self.folder.name}.saving-*"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
        self.staging = self.folder.parent / f".{self.folder.name}.saving-{os.getpid()}"
        self.staging.mkdir()

    # what a model folder holds: never carried over from the old version, so the two cannot mix
    MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".py", ".md", ".onnx", ".txt")
    MODEL_FOLDERS = ("figures",)

    def _carry_over(self) -> None:
        """Hard-link into the new version what the old folder holds besides the model (checkpoints, logs)."""
        for entry in self.folder.iterdir():
            target = self.staging / entry.name
            if target.exists() or entry.name in self.MODEL_FOLDERS or (entry.is_file() and entry.suffix in self.MODEL_FILE_SUFFIXES):
                continue
            if entry.is_dir():
                shutil.copytree(entry, target, copy_function=_link_or_copy)
            else:
                _link_or_copy(entry, target)

    def _readable_by_the_umask(self) -> None:
        """transformers writes weights owner-only (0600); the folder's files get the mode the user's umask gives
        every other file they write, as a folder meant for sharing and serving should."""
        umask = os.umask(0)
        os.umask(umask)
        for path in self.staging.rglob("*"):
            if path.is_file() and not path.is_symlink():
                path.chmod(0o666 & ~umask)

    def commit(self) -> None:
        self._readable_by_the_umask()
        if not self.folder.exists():
            os.rename(self.staging, self.folder)
            return
        self._carry_over()
        if not _exchange(self.staging, self.folder):  # not Linux: a short window where the folder is absent
            logger.info("No atomic folder exchange on this system: replacing %s in two renames.", self.folder)
            backup = self.folder.parent / f".{self.folder.name}.previous-{os.getpid()}"
            os.rename(self.folder, backup)
            os.rename(self.staging, self.folder)
            self.staging = backup
        shutil.rmtree(self.staging, ignore_errors=True)
