#!/usr/bin/env python
"""Export a saved Query2Label model to ONNX, with dynamic batch size and input resolution, and check it.

    python scripts/export_onnx.py --model FOLDER [--output FOLDER/model.onnx] [--opset 18] [--tolerance 1e-4]

The export is run with onnxruntime on three inputs (batch 1 and 3 at the model's resolution, batch 2 at a larger,
non-square one) and compared with PyTorch's logits; a difference above --tolerance is an error. Needs `onnx`,
`onnxscript` and `onnxruntime`. `scripts/publish.py --onnx` puts the file into the Hub folder.
"""

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from modeling_q2l.hub.onnx_export import export_saved_model


@dataclass
class ExportArguments:
    model: str = field(metadata={"help": "Saved model folder or Hub id."})
    output: str | None = field(default=None, metadata={"help": "ONNX file to write (default: model.onnx in the folder)."})
    opset: int = field(default=18, metadata={"help": "ONNX opset."})
    tolerance: float = field(default=1e-4, metadata={"help": "Largest allowed |logit difference| to PyTorch."})


def main(argv=None):
    (args,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses(args=argv)
    try:
        path, worst = export_saved_model(args.model, args.output, args.opset, args.tolerance)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"Wrote {path}: onnxruntime logits within {worst:.1e} of PyTorch's.")


if __name__ == "__main__":
    main()
