#!/usr/bin/env python
"""Assemble, validate and upload a Query2Label model repository to the Hub.

    python scripts/publish.py --model q2l-r101-448 --repo_id ORG/q2l-resnet101-448-coco --variant Q2L-R101-448 \
        --eval_results eval.json [--private] [--revision BRANCH] [--commit_message MSG] [--dry_run OUT]
"""

from transformers import HfArgumentParser

from modeling_q2l.hub.publish import PublishArguments, publish


def main(argv=None):
    (args,) = HfArgumentParser(PublishArguments).parse_args_into_dataclasses(args=argv)
    result = publish(args)
    print(f"Wrote {result}" if args.dry_run else f"Published {result}")


if __name__ == "__main__":
    main()
