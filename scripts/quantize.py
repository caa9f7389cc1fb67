#!/usr/bin/env python
"""int8 for CPUs without native bfloat16: quantize a saved model with ONNX Runtime, calibrated on its training images,
and measure it against float32.

    python scripts/quantize.py --model outputs/my-model --dataset_name my_photos
    python scripts/predict.py --model outputs/my-model --dtype int8 photo.jpg

Writes `model.int8.onnx` (and `model.onnx`, when missing) into the folder, and `quantization.json` with the
float32 and int8 results on the evaluation split. Arguments: `python scripts/quantize.py --help`.
"""

from modeling_q2l.cli.commands import quantize, run_script

if __name__ == "__main__":
    run_script(quantize)
