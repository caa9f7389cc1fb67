"""Without an optional package, a command says in one line which extra installs it and exits with status 1."""

import subprocess
import sys

import pytest
from helpers import REPO, save_model_folder, tiny_config

from modeling_q2l.extras import EXTRA_OF_MODULE, MissingExtraError, require

# trains, launches processes, compiles or drives a browser: deselected by `pytest -m "not slow"`
pytestmark = pytest.mark.slow

# a Python that cannot import the named packages, whatever is installed
BLOCK = "import sys; [sys.modules.__setitem__(name, None) for name in sys.argv[1].split(',')]; sys.argv = sys.argv[2:]; import runpy; runpy.run_path(sys.argv[0], run_name='__main__')"


def run_without(modules: list[str], script: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK, ",".join(modules), str(REPO / script), *argv], capture_output=True, text=True, timeout=300)


def test_every_extra_named_exists_in_setup():
    setup = (REPO / "setup.py").read_text()
    for module, extra in EXTRA_OF_MODULE.items():
        assert f'"{extra}": [' in setup, extra
    with pytest.raises(MissingExtraError, match=r'The thing needs no_such_module, which is not installed: pip install no_such_module'):
        require("no_such_module", "The thing")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import torch


    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    save_model_folder(folder)
    return folder


@pytest.mark.parametrize(
    "missing, script, argv, extra",
    [
        (["gradio"], "app.py", ["--model", "FOLDER"], "demo"),
        (["onnxscript"], "scripts/export_onnx.py", ["--model", "FOLDER"], "onnx"),
        (["matplotlib"], "scripts/visualize_attention.py", ["--model", "FOLDER", "--output_dir", "OUT", "IMAGE"], "demo"),
    ],
    ids=["gradio", "onnxscript", "matplotlib"],
)
def test_a_missing_optional_package_is_one_line_and_exit_status_1(folder, tmp_path, missing, script, argv, extra):
    from PIL import Image

    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "image.png")
    values = {"FOLDER": str(folder), "OUT": str(tmp_path / "out"), "IMAGE": str(tmp_path / "image.png")}
    result = run_without(missing, script, *[values.get(value, value) for value in argv])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"needs {missing[0]}, which is not installed" in line and f'[{extra}]' in line


def test_the_browser_script_names_selenium():
    result = run_without(["selenium"], "tests/demo/browser.py", "--model", "m", "--image", "i.png", "--screenshot", "s.png")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "needs selenium, which is not installed" in result.stderr and "[tests]" in result.stderr


@pytest.mark.parametrize("module", ["onnx", "onnxscript", "onnxruntime"])
def test_each_onnx_package_is_named_with_the_onnx_extra(module, monkeypatch, tmp_path):
    from modeling_q2l import Query2LabelForMultiLabelClassification
    from modeling_q2l.export.onnx import export_onnx, onnx_session

    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(MissingExtraError, match=rf'needs {module}, which is not installed: pip install "modeling-q2l\[onnx\]"'):
        if module == "onnxruntime":
            onnx_session(tmp_path / "model.onnx")
        else:
            export_onnx(Query2LabelForMultiLabelClassification(tiny_config()), tmp_path / "model.onnx", 64)


@pytest.mark.slow  # launches a Python process
def test_a_command_starts_without_torchaos_registration_notices():
    """With the `int8` extra installed, transformers imports torchao, whose enum registration torch 2.14 reports as
    deprecated on stderr: a command's output is the user's, so importing the package drops that notice (and only
    that one) before transformers is imported."""
    code = (
        "import logging, modeling_q2l, transformers.quantizers\n"
        "logging.getLogger('torch.utils._pytree').warning('%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type.', 'X')\n"
        "logging.getLogger('torch.utils._pytree').warning('another pytree notice')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Enum subclass" not in result.stderr and "another pytree notice" in result.stderr
