"""`--help` that shows defaults, for every `ninserve` subcommand: the model's (train, export, ...)
and the server's (app/cli/). It lives under model/ because app/cli builds on model/, never the
reverse."""

from __future__ import annotations

import argparse
from pathlib import Path


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help
        shown = action.default
        if isinstance(shown, Path) and shown.is_absolute():  # the bundled artifact: say where in the repo
            shown = Path(*shown.parts[-3:])
        return f"{action.help or ''} (default: {str(shown).replace('%', '%%')})"
