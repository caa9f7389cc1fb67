#!/usr/bin/env python
"""Export a saved Query2Label model to ONNX, with dynamic batch size and input resolution, and check it.

    python scripts/export_onnx.py --model FOLDER [--output FOLDER/model.onnx] [--opset 18] [--tolerance 1e-4]

The export is run with onnxruntime on three inputs (batch 1 and 3 at the model's resolution, batch 2 at a larger,
non-square one) and compared with PyTorch's logits; a difference above --tolerance is an error. Needs `onnx`,
`onnxscript` and `onnxruntime`. `scripts/publish.py --onnx` puts the file into the Hub folder.
"""

from modeling_q2l.cli.commands import export_onnx as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
