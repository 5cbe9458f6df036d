"""The `ninserve` command: serving (`serve`, `predict`) and model (`train`, `export`, `quantize`, `eval`).

Each group registers its own subcommands; the model group imports torch only when one of its
commands runs, so the serving install works without it. Errors a user can fix (missing data or
files, an extra that is not installed, data that does not fit the flags) end in one line on
stderr and exit status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from app.cli import commands as app_commands
from model import commands as model_commands
from model.errors import DataError

# Modules only the `train` extra installs, and what needs them.
TRAIN_EXTRA_MODULES = frozenset({"torch", "onnx", "onnxscript", "matplotlib"})
INSTALL_TRAIN = "pip install 'ninserve[cpu,train]' (or `make .venv/.dev-installed` in a checkout)"


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), or the source tree's when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ninserve")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ninserve")
    parser.add_argument("--version", action="version", version=f"ninserve {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    app_commands.register(sub)
    serving = list(sub.choices)
    model_commands.register(sub)
    model = [name for name in sub.choices if name not in serving]
    # Built from what is registered, so a new command cannot be left out of --help's summary.
    parser.description = (
        f"The ninserve command: serving ({', '.join(serving)}) and model ({', '.join(model)})."
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"ninserve {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in TRAIN_EXTRA_MODULES:
            raise
        print(
            f"ninserve {args.command}: needs the `train` extra (module {top!r} is not installed): "
            f"{INSTALL_TRAIN}",
            file=sys.stderr,
        )
        return 1
    except DataError as exc:
        print(f"ninserve {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or folder named on the command line: missing, unreadable, full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"ninserve {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
