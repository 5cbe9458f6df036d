"""Client-supplied values quoted in error messages, cut short.

An error message may quote what the client sent (an unknown model name, a label, an input
name), but never in full: a 10,000-character name must not come back as a 10 KB error body, and
whatever is quoted is `repr`-escaped, so control characters and NULs cannot reach a log line raw.
A value sent back as it is, not quoted (a request path as a problem's `instance`), is `clipped`.
"""

from __future__ import annotations

ECHO_LIMIT = 64  # characters of a client's value quoted back


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)`, or its first `limit` characters and the full length when longer."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    cut = repr(text[:limit]) if isinstance(value, str) else text[:limit]
    return f"{cut}... ({len(text)} characters)"


def clipped(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and "..." when longer, unquoted."""
    return text if len(text) <= limit else text[:limit] + "..."
