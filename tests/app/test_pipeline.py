"""app/pipeline.py: resolution rules and stage timings."""

from __future__ import annotations

import pytest

from app.errors import InvalidParameter
from app.pipeline import STAGES, Timings, resolve_resolution


def test_resolution_rules() -> None:
    assert resolve_resolution(None, 32, 256) == 32
    assert resolve_resolution(128, 32, 256) == 128
    for bad in (28, 30, 260, 258):
        with pytest.raises(InvalidParameter, match="multiple of 4"):
            resolve_resolution(bad, 32, 256)


def test_timings_header_lists_every_stage() -> None:
    timings = Timings()
    timings.lap("decode", timings.start)
    timings.finish()
    header = timings.header()
    assert [part.split(";")[0] for part in header.split(", ")] == list(STAGES)
    assert timings.ms["total"] >= timings.ms["decode"] >= 0
