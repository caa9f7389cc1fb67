#!/usr/bin/env python
"""The Gradio demo of a Query2Label model (also the app of its Hub Space).

    python app.py --model FOLDER_OR_HUB_ID [--port 7860] [--host 127.0.0.1] [--device cuda]

In a Space, the model comes from the `Q2L_MODEL` variable that `scripts/publish.py --space` writes into its README.
"""

from modeling_q2l.cli.commands import demo as main
from modeling_q2l.cli.commands import run_script

if __name__ == "__main__":
    run_script(main)
