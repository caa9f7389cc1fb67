"""Check that a saved model folder works the way Hub users will load it: in a fresh Python process where this
package cannot be imported, through `trust_remote_code`, the Auto classes and the image-classification pipeline."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

_CHECK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_q2l"] = None  # make this package unimportable: only the folder's code may be used
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, pipeline

    folder, image_path = sys.argv[1], sys.argv[2]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    image = Image.open(image_path) if image_path else Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (97, 131, 3), dtype=np.uint8)
    )
    classifier = pipeline("image-classification", model=folder, trust_remote_code=True)  # the Hub user's call
    predictions = classifier(image, top_k=None)
    default_predictions = classifier(image)
    path_predictions = classifier(image_path, top_k=None) if image_path else predictions  # the file, opened by the pipeline
    with torch.no_grad():
        logits = model(**processor(image, return_tensors="pt")).logits[0]
    import transformers

    print("Q2L-CHECK " + json.dumps({
        "transformers_version": transformers.__version__,
        "model_module": type(model).__module__,
        "model_class": type(model).__name__,
        "config_module": type(config).__module__,
        "processor_module": type(processor).__module__,
        "pipeline_module": type(classifier).__module__,
        "default_predictions": default_predictions,
        "num_labels": config.num_labels,
        "predictions": predictions,
        "path_predictions": path_predictions,
        "sigmoid_of_logits": {config.id2label[i]: float(p) for i, p in enumerate(torch.sigmoid(logits))},
    }))
    """
)


def check_folder_without_package(
    folder: str | Path, image_path: str | Path | None = None, timeout: int = 600, python: str | None = None
) -> dict:
    """Load `folder` in a subprocess that cannot import `modeling_q2l` and run the pipeline on one image; `python`
    is the interpreter (default: this one), e.g. one with another transformers release.

    Returns what the subprocess saw (module names of the loaded classes and of the pipeline, the pipeline's
    predictions with `top_k=None`, by default and from the image's path, and the sigmoid of the raw logits); raises `RuntimeError` with the
    subprocess's error otherwise.
    """
    folder = Path(folder).resolve()
    result = subprocess.run(
        [python or sys.executable, "-c", _CHECK_SCRIPT, str(folder), str(image_path or "")],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=folder.parent,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    for line in result.stdout.splitlines():
        if line.startswith("Q2L-CHECK "):
            return json.loads(line[len("Q2L-CHECK ") :])
    raise RuntimeError(
        f"{folder} does not load without this package (exit {result.returncode}):\n{result.stderr[-3000:]}"
    )
