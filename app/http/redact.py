"""Secrets out of log lines: values of query parameters named like a credential are replaced.

A client that sends its key as `?api_key=…` or `?access_token=…` (ninserve reads keys only from
`Authorization`, but clients get this wrong) would otherwise have it written to the access log,
which is kept longer and read by more people than the key's owner. `install()` adds a filter to
uvicorn's access and error loggers and to ninserve's own, so it holds whatever handler or format
the logging setup chooses; a logger filter runs once per record, and a line without `=` costs a
substring test per argument.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# Filters apply only where a record is made, not to children: ninserve.access is named on its own.
LOGGERS = ("uvicorn.access", "uvicorn.error", "ninserve", "ninserve.access")
# A query parameter's name that says it carries a credential (after percent-decoding).
SECRET_NAME = re.compile(r"key|token|auth|secret|passw|pwd|signature|credential|session", re.IGNORECASE)
QUERY_PAIR = re.compile(r"([?&;])([^=&;#\s\"'?]+)=([^&;#\s\"']*)")


def redact(text: str) -> str:
    """`text` with the value of every credential-like `name=value` of a query string replaced."""
    if "=" not in text:
        return text
    return QUERY_PAIR.sub(_redact_pair, text)


def _redact_pair(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    if not value or not SECRET_NAME.search(unquote_plus(name)):
        return match.group(0)
    return f"{sep}{name}={REDACTED}"


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and string arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            if any(isinstance(a, str) and "=" in a for a in args):
                record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        access = getattr(record, "access", None)  # JSON access lines carry the path as a field too
        if isinstance(access, dict):
            record.access = {k: redact(v) if isinstance(v, str) else v for k, v in access.items()}
        return True


def install() -> None:
    """Idempotent: one filter per logger, however often an app is created in a process."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
