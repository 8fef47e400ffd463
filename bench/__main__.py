"""`python -m bench COMMAND [options]` (plan, s3import, crossprovider, coco, sync, compare,
tensorbay, streamcopy, all): run Bayport's benchmarks, print tables."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from rich.console import Console

from bench import coco, compare, crossprovider, plan, s3import, streamcopy, sync, tensorbay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plan.add_arguments(commands.add_parser("plan", help=_summary(plan.__doc__)))
    s3import.add_arguments(commands.add_parser("s3import", help=_summary(s3import.__doc__)))
    crossprovider.add_arguments(
        commands.add_parser("crossprovider", help=_summary(crossprovider.__doc__))
    )
    coco.add_arguments(commands.add_parser("coco", help=_summary(coco.__doc__)))
    sync.add_arguments(commands.add_parser("sync", help=_summary(sync.__doc__)))
    compare.add_arguments(commands.add_parser("compare", help=_summary(compare.__doc__)))
    tensorbay.add_arguments(commands.add_parser("tensorbay", help=_summary(tensorbay.__doc__)))
    streamcopy.add_arguments(commands.add_parser("streamcopy", help=_summary(streamcopy.__doc__)))
    commands.add_parser("all", help="plan, s3import, crossprovider, then coco, with defaults")
    args = parser.parse_args(argv)
    # A table wider than a pipe's default 80 columns stays readable in logs.
    console = Console(width=max(Console().width, 120))
    if args.command == "plan":
        return plan.run(args, console)
    if args.command == "s3import":
        return s3import.run(args, console)
    if args.command == "crossprovider":
        return crossprovider.run(args, console)
    if args.command == "coco":
        return coco.run(args, console)
    if args.command == "sync":
        return sync.run(args, console)
    if args.command == "compare":
        return compare.run(args, console)
    if args.command == "tensorbay":
        return tensorbay.run(args, console)
    if args.command == "streamcopy":
        return streamcopy.run(args, console)
    status = plan.run(defaults(plan), console)
    status = s3import.run(defaults(s3import), console) or status
    status = crossprovider.run(defaults(crossprovider), console) or status
    return coco.run(defaults(coco), console) or status


def _summary(doc: str | None) -> str:
    # argparse %-formats help texts.
    return (doc or "").split("\n\n")[0].replace("\n", " ").replace("%", "%%")


def defaults(module: ModuleType) -> argparse.Namespace:
    """A benchmark module's options as its command line would give them without any."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args([])


if __name__ == "__main__":
    sys.exit(main())
