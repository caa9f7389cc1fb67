"""Benchmarks: speed and memory of our model against the authors' code, label scaling, exported runtimes."""
