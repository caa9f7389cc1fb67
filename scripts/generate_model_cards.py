#!/usr/bin/env python
"""Write `model_cards/<variant>.md` for every paper variant (the demo card comes from the default training run).

    python scripts/generate_model_cards.py [--output_dir model_cards] [--repo_namespace ORG]
"""

from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from modeling_q2l.hub.model_card import variant_card
from modeling_q2l.hub.presets import VARIANTS


@dataclass
class CardArguments:
    output_dir: str = field(default="model_cards", metadata={"help": "Where to write the cards."})
    repo_namespace: str = field(default="ORG", metadata={"help": "Hub namespace used in the usage snippets."})


def repo_name(variant_name: str) -> str:
    return variant_name.lower() + "-coco"


def main(argv=None):
    (args,) = HfArgumentParser(CardArguments).parse_args_into_dataclasses(args=argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    for name, variant in VARIANTS.items():
        variant_card(variant, f"{args.repo_namespace}/{repo_name(name)}").save(output / f"{name}.md")
        print(output / f"{name}.md")


if __name__ == "__main__":
    main()
