"""app/core/echo.py: client values quoted in errors are escaped and cut short."""

from __future__ import annotations

from app.core.echo import ECHO_LIMIT, clipped, shown


def test_short_values_are_quoted_whole() -> None:
    assert shown("cat") == "'cat'"
    assert shown("a\x00b\n") == "'a\\x00b\\n'"  # control characters cannot reach a log line raw
    assert shown(42) == "42"


def test_long_values_are_cut_and_say_how_long() -> None:
    text = shown("m" * 10_000)
    assert text == repr("m" * ECHO_LIMIT) + "... (10000 characters)"
    assert len(shown(list(range(100_000)))) < ECHO_LIMIT + 40


def test_clipped_keeps_short_text_and_marks_the_cut() -> None:
    assert clipped("/v1/classify", 20) == "/v1/classify"
    assert clipped("/x" * 100, 10) == "/x/x/x/x/x..."
