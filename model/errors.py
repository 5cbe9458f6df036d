"""Errors of the model tooling that a user fixes at the command line (data, splits, files).

Kept apart from model/data.py so that `ninserve` can recognise them without importing numpy,
Pillow or tqdm before a command runs.
"""

from __future__ import annotations


class DataError(Exception):
    """The data given cannot be used as asked; the message says why and what would work."""
