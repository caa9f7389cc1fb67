"""A Gradio app for a Query2Label model: upload an image, get the labels that reach their thresholds with scores,
and see where the query of a chosen label looks (its cross-attention drawn over the image).

The thresholds default to the model's fitted per-label thresholds; unticking them applies the slider's one
threshold to every label. The classification is the multi-label pipeline's (`Query2LabelImageClassificationPipeline`:
same preprocessing, same thresholds), so the page and `pipeline(...)` agree. `build_demo(...).launch()` serves it;
the click handler is also an API endpoint (`/predict`) for `gradio_client`.
"""

import logging
from pathlib import Path

from ..evaluation.attention_figures import explain_image, overlay
from ..evaluation.predict import load_classifier, open_for_prediction
from ..extras import require

logger = logging.getLogger(__name__)

TITLE = "Query2Label: multi-label image classification"
BEST_LABEL = "(the best label)"  # the overlay's default choice, so that the API needs the image alone


def upload_problem(error: Exception) -> str:
    """What went wrong with an uploaded file, in the words the page shows."""
    from PIL import Image

    if isinstance(error, Image.DecompressionBombError):
        return f"The image is too large to open safely ({error}). Upload a smaller image."
    return f"The file is not an image this app can read ({type(error).__name__}: {error}). Upload a PNG, JPEG, WebP, GIF, BMP or TIFF image."


def classify(
    model,
    processor,
    image,
    use_fitted_thresholds: bool,
    threshold: float,
    selected_label: str | None,
    through_encoder: bool = False,
):
    """(labels with scores at or above their thresholds, the overlay of the selected label, that label). `image` is a
    PIL image or a path (an unreadable file is a ValueError naming the problem)."""
    if image is None:
        raise ValueError("Upload an image first.")
    if isinstance(image, (str, Path)):
        try:
            image = open_for_prediction(Path(image))
        except ValueError as error:
            raise ValueError(upload_problem(error.__cause__ or error)) from error
    explained = explain_image(
        model, processor, image, threshold=None if use_fitted_thresholds else threshold, through_encoder=through_encoder
    )
    kept = {
        explained.label_names[i]: float(explained.scores[i])
        for i in explained.shown
        if explained.scores[i] >= explained.thresholds[i]
    }
    label = selected_label if selected_label in explained.label_names else explained.label_names[explained.shown[0]]
    index = explained.label_names.index(label)
    return kept, overlay(explained.image, explained.maps[index]), label


ROLLOUT_LABEL = "Carry the map back through the encoder (attention rollout)"


def build_demo(model_path: str, device: str | None = None, title: str = TITLE, dtype: str = "float32"):
    """The app as a `gradio.Blocks` for a saved model folder or Hub id (call `.launch()` on it)."""
    gr = require("gradio", "The demo app")

    model, processor = load_classifier(model_path, device, dtype)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    fitted = getattr(model.config, "label_thresholds", None) is not None

    def name_upload_problems(preprocess):
        """The image component's decoding, with errors (not an image, a decompression bomb) turned into messages."""

        def checked(payload):
            try:
                return preprocess(payload)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 (PIL raises several kinds on bad files)
                raise gr.Error(upload_problem(error)) from None

        return checked

    def on_submit(image, use_fitted, threshold, selected_label, through_encoder):
        try:
            kept, picture, label = classify(model, processor, image, use_fitted, threshold, selected_label, through_encoder)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return kept, picture, label

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\nModel: `{model_path}`. Each label has its own query; the overlay shows where the chosen "
            "label's query looks (cross-attention of the last decoder layer, mean over heads)."
        )
        with gr.Row():
            with gr.Column():
                # the uploaded file as it is (no conversion, no re-encoding): classify decodes it and names what is wrong
                image = gr.Image(type="filepath", image_mode=None, label="Image")
                image.preprocess = name_upload_problems(image.preprocess)  # this component only
                use_fitted = gr.Checkbox(
                    value=True,
                    label="Per-label thresholds fitted on validation data" if fitted else "Per-label thresholds (0.5: none were fitted)",
                )
                threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="One threshold for every label (when unticked)")
                selected = gr.Dropdown([BEST_LABEL, *names], value=BEST_LABEL, label="Attention of label")
                # only a model with encoder layers has anything to carry the map back through
                rollout = gr.Checkbox(
                    value=False, label=ROLLOUT_LABEL, visible=getattr(model.config, "encoder_layers", 0) > 0
                )
                submit = gr.Button("Submit", variant="primary")
            with gr.Column():
                labels = gr.Label(label="Labels above threshold", num_top_classes=len(names))
                attention = gr.Image(type="pil", label="Attention of the selected label")
        inputs = [image, use_fitted, threshold, selected, rollout]
        outputs = [labels, attention, selected]
        submit.click(on_submit, inputs, outputs, api_name="predict")
        selected.input(on_submit, inputs, outputs, api_name=False)  # a user's choice, not the app's own update
        rollout.input(on_submit, inputs, outputs, api_name=False)
    return demo
