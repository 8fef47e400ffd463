"""`python -m bench [plan|s3import|all] [options]`: run Bayport's benchmarks, print tables."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from bench import plan, s3import


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plan.add_arguments(commands.add_parser("plan", help=_summary(plan.__doc__)))
    s3import.add_arguments(commands.add_parser("s3import", help=_summary(s3import.__doc__)))
    commands.add_parser("all", help="plan, then s3import, with their defaults")
    args = parser.parse_args(argv)
    # A table wider than a pipe's default 80 columns stays readable in logs.
    console = Console(width=max(Console().width, 120))
    if args.command == "plan":
        return plan.run(args, console)
    if args.command == "s3import":
        return s3import.run(args, console)
    status = plan.run(plan_defaults(), console)
    return s3import.run(s3import_defaults(), console) or status


def _summary(doc: str | None) -> str:
    return (doc or "").split("\n\n")[0].replace("\n", " ")


def plan_defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    plan.add_arguments(parser)
    return parser.parse_args([])


def s3import_defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    s3import.add_arguments(parser)
    return parser.parse_args([])


if __name__ == "__main__":
    sys.exit(main())
