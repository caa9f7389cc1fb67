"""The Gradio demo of a saved model (`python app.py --model FOLDER`, and the app of a Hub Space)."""
