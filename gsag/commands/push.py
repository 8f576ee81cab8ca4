"""`gsag push RUN_DIR REPO_ID`: save a run as a pretrained folder and upload it to the Hub."""

from __future__ import annotations

import argparse

from gsag.commands.save import add_pretrained_arguments

HELP = "upload a run to the Hugging Face Hub as a pretrained model (one commit)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pretrained_arguments(parser)
    parser.add_argument("repo_id", metavar="REPO_ID", help="owner/name on the Hub")
    parser.add_argument(
        "--private", action="store_true", help="create the repo private (if it does not exist)"
    )
    parser.add_argument("--revision", help="the branch to commit to (default: main)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gsag.trained.push import push_to_hub

    with Console(stderr=True).status(f"pushing {args.run_dir} to {args.repo_id} ..."):
        url = push_to_hub(
            args.run_dir,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            onnx=args.onnx,
            checkpoint=args.checkpoint,
            include_aux=args.include_aux,
            evaluation=args.evaluation,
        )
    Console().print(f"pushed [bold]{args.run_dir}[/] to {args.repo_id}: {url}")
    return 0
