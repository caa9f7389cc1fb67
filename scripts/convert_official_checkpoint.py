#!/usr/bin/env python
"""Convert an official Query2Label release into a Hugging Face model folder.

    python scripts/convert_official_checkpoint.py --checkpoint Q2L-R101-448.pkl --config config_new.json \
        --output_dir q2l-r101-448 [--labels coco|voc|names.txt] [--allow_unsafe_pickle]
"""

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from modeling_q2l.data.labels import resolve_labels
from modeling_q2l.hub.convert_official import convert_official_checkpoint


@dataclass
class ConversionArguments:
    checkpoint: str = field(metadata={"help": "Official checkpoint (torch pickle holding `state_dict`)."})
    config: str = field(metadata={"help": "JSON of the official training arguments (config_new.json)."})
    output_dir: str = field(metadata={"help": "Folder to write the converted model into."})
    labels: str | None = field(
        default=None,
        metadata={"help": "Label names: coco (default), voc, or a file (JSON list or one name per line)."},
    )
    variant: str | None = field(
        default=None, metadata={"help": "Paper variant the checkpoint must match, e.g. Q2L-R101-448 (optional)."}
    )
    allow_unsafe_pickle: bool = field(
        default=False,
        metadata={"help": "Unpickle the checkpoint fully when weights_only loading fails. Only for trusted files."},
    )


def main(argv=None):
    (args,) = HfArgumentParser(ConversionArguments).parse_args_into_dataclasses(args=argv)
    labels = resolve_labels(args.labels) if args.labels else None
    model, _ = convert_official_checkpoint(
        args.checkpoint,
        args.config,
        args.output_dir,
        labels=labels,
        allow_unsafe_pickle=args.allow_unsafe_pickle,
        variant=args.variant,
    )
    print(
        f"Saved {model.config.backbone} Q2L ({model.num_parameters() / 1e6:.1f} M parameters, "
        f"{model.config.num_labels} labels, {model.config.image_size} px) to {args.output_dir}"
    )


if __name__ == "__main__":
    main()
