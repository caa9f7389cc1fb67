"""Reading a saved model (a local folder or a Hub id) with errors a user can act on.

transformers reports a damaged model folder with the exception of whichever library met the damage first: a
`SafetensorError` for weights cut short by an interrupted save, copy or download, an `OSError` for a missing file or a
config that is not JSON, a `RuntimeError` for weights that do not fit the config. Every command that loads a saved
model (prediction, evaluation, attention figures, ONNX export, publishing, fine-tuning, the demo app) loads it inside
`saved_model_errors`, which turns those into one `ValueError` naming the model, the problem and the fix; the
command-line entry points print it as one line.
"""

from contextlib import contextmanager
from pathlib import Path

SAVE_AGAIN = (
    "save the model again with save_pretrained (a training run's output folder and each of its checkpoint-* folders "
    "hold a whole copy), or copy or download it again"
)


def describe_source(source) -> str:
    return f"the model folder {source}" if Path(str(source)).is_dir() else f"the model {source!r}"


def safetensors_error(path) -> str | None:
    """Why the safetensors file `path` cannot be read (cut short by an interrupted save or copy, empty, a damaged
    header), in the safetensors library's words, from its own check of the header against the file; None when it
    reads."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            return None
    except SafetensorError as error:
        return str(error)


def unreadable_weights(source, error: str) -> ValueError:
    return ValueError(f"The weights of {describe_source(source)} cannot be read ({error}): the file is cut short or damaged; {SAVE_AGAIN}.")


def missing_local_folder(source) -> str | None:
    """Why `source`, meant as a local folder, names none: it does not exist, and it is written as a path (absolute,
    relative to `.`/`~`, or under a folder that exists here), not as a Hub id. transformers would take it for a Hub id
    and retry the network for half a minute before failing."""
    path = Path(str(source)).expanduser()
    if path.exists():
        return None
    text = str(source)
    as_path = text.startswith(("/", ".", "~")) or "\\" in text or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())
    return f"No model folder at {path.resolve()}" if as_path else None


@contextmanager
def saved_model_errors(source):
    """Run the loading of the saved model `source`; a damaged or missing model ends in a `ValueError` that says
    what is wrong and how to mend it (`ValueError`s of the loading code itself pass unchanged)."""
    from safetensors import SafetensorError

    missing = missing_local_folder(source)
    if missing:
        raise ValueError(f"{missing}: check the path (a training run's --output_dir, or one of its checkpoint-* folders), or give a Hub id as ORG/NAME.")
    where = describe_source(source)
    try:
        yield
    except SafetensorError as error:
        raise unreadable_weights(source, str(error)) from None
    except OSError as error:
        local = Path(str(source)).is_dir()
        fix = (
            "a saved model folder holds config.json, model.safetensors and preprocessor_config.json as save_pretrained "
            f"writes them; {SAVE_AGAIN}" if local else "check the Hub id, or pass a local folder (this machine may have no network)"
        )  # fmt: skip
        raise ValueError(f"Cannot load {where}: {' '.join(str(error).split())} ({fix}).") from None
    except RuntimeError as error:
        if "mismatched" not in str(error) and "size mismatch" not in str(error):
            raise
        raise ValueError(
            f"The weights of {where} do not fit its config.json (the tensors are listed above): the config was edited "
            "or belongs to other weights; put back the config.json saved with these weights."
        ) from None
