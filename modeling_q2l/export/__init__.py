"""Exporting a saved model to other runtimes (ONNX)."""
