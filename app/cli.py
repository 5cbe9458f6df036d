"""The `ninserve` command: serving (`serve`, `predict`) and model (`train`, `export`, `eval`).

Each group registers its own subcommands; the model group imports torch only when one of its
commands runs, so the serving install works without it.
"""

from __future__ import annotations

import argparse
import sys

from app import commands as app_commands
from model import commands as model_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ninserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    app_commands.register(sub)
    model_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
