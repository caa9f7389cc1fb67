"""The package's optional parts and the `pip install` extra that brings each one (setup.py's `extras_require`).

`require("gradio", "the demo app")` imports and returns the module, or raises `MissingExtraError` whose one-line
message names the extra; the command-line entry points print that line and exit with status 1.
"""

import importlib
import logging

# module -> the extra of setup.py that installs it
EXTRA_OF_MODULE = {
    "gradio": "demo",
    "matplotlib": "demo",  # also in "train": the figures saved with a trained model
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "torchao": "int8",
    "selenium": "tests",
    "accelerate": "train",
    "datasets": "train",
    "evaluate": "train",
}


class MissingExtraError(ImportError):
    """An optional package a feature needs is not installed."""


def missing_extra_message(module: str, feature: str) -> str:
    extra = EXTRA_OF_MODULE.get(module.split(".")[0])
    install = f'pip install "modeling-q2l[{extra}]" (from a clone: pip install -e ".[{extra}]")' if extra else f"pip install {module}"
    return f"{feature} needs {module.split('.')[0]}, which is not installed: {install}"


def require(module: str, feature: str):
    """`importlib.import_module(module)`, or `MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but something it needs is missing: let that error speak
        raise MissingExtraError(missing_extra_message(module, feature)) from None


class _TorchaoRegistrationNotice(logging.Filter):
    """torchao registers its enums with torch's pytree in a way torch 2.14 deprecates, and transformers imports
    torchao whenever it is installed (the `int8` extra): every command would start with two lines of that, about
    neither the user's code nor ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is an Enum subclass and is now natively supported by torch.compile" not in record.getMessage()


def quiet_optional_package_notices() -> None:
    """Drop the notices optional packages print at import that concern no user (`_TorchaoRegistrationNotice`)."""
    pytree = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(existing, _TorchaoRegistrationNotice) for existing in pytree.filters):
        pytree.addFilter(_TorchaoRegistrationNotice())
