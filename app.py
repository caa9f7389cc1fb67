#!/usr/bin/env python
"""The Gradio demo of a Query2Label model (also the app of its Hub Space).

    python app.py --model FOLDER_OR_HUB_ID [--port 7860] [--host 127.0.0.1] [--device cuda]

In a Space, the model comes from the `Q2L_MODEL` variable that `scripts/publish.py --space` writes into its README.
"""

import argparse
import os

from modeling_q2l.demo.app import build_demo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("Q2L_MODEL"), help="Saved model folder or Hub id.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present).")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give --model (a saved model folder or Hub id), or set Q2L_MODEL")
    build_demo(args.model, args.device).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
