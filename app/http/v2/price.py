"""What parsing a V2 body (app/http/v2/codec.py) will hold, priced from its raw bytes before any of it
is parsed, so that admission (app/core/admission.py: `price_json`, `run_priced`) can refuse or queue
it like an image decode: small JSON expands ~30x into Python objects.
"""

from __future__ import annotations

import math

import numpy as np

from app.core.errors import InvalidTensor
from app.http.v2.codec import BYTES, MAX_ID_CHARS, MAX_PARAMETER_CHARS, json_header_length

# What parsing holds per JSON token, upper bounds on tracemalloc's peak for the whole parse
# (tests/app/test_hostile_decode.py): a value slot up to 210 B (a float or large int as a Python
# object, numpy's copy, orjson's buffer when the values are checked for bools), an empty list or
# object 91-104 B, an object's key 160 B, strings about 8 B per byte. `json_cost` prices by
# counting the tokens on the raw bytes: `[` `{` `,` `:` and the length.
JSON_VALUE_BYTES, JSON_CONTAINER_BYTES, JSON_KEY_BYTES, JSON_BYTE_BYTES = 216, 112, 160, 8
# A BYTES input in binary holds each element as a bytes object: up to ~8 B per byte of tail for
# one-byte elements (4-byte prefix + 1 byte -> 41 B); other binary tensors are views (no copy).
BINARY_BYTES_PER_BYTE = 10
_COUNT_CHUNK = 1024 * 1024
# Without a BYTES input no string in the JSON header is data: names, datatypes, the `id` and
# parameters, all bounded by codec.py (MAX_ID_CHARS, MAX_PARAMETER_CHARS). A longer string there
# is refused once the body is in, before it is parsed. Raw bytes: a character takes up to 6 of
# them (`\\uXXXX`), so the bound here is 6x the characters codec.py allows.
MAX_PLAIN_STRING = 6 * MAX_PARAMETER_CHARS
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
SHORT_RUN = 8  # backslashes before a quote counted step by step; longer runs take a whole-piece pass


class StringScan:
    """The longest JSON string in bytes fed in pieces: unescaped quotes alternate between opening
    and closing a string (outside strings a quote can only open one), and a quote is escaped when
    an odd run of backslashes precedes it. numpy passes with the state carried across pieces:
    0.35 ms a MB for one long string, ~2 ms for dense short ones, ~8 ms when they hold escaped
    quotes, ~7 ms for long backslash runs (one core of the 2-core test machine, 64 KiB pieces)."""

    def __init__(self) -> None:
        self.inside, self.open_len, self.backslashes, self.longest = False, 0, 0, 0

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        data = np.frombuffer(chunk, np.uint8)
        quotes = np.flatnonzero(data == _QUOTE)
        if quotes.size and (self.backslashes or chunk.find(b"\\") >= 0):  # else no quote is escaped
            quotes = quotes[self._backslash_runs(data, quotes) % 2 == 0]
        if quotes.size:
            first_closes = self.inside
            opens = quotes[1::2] if first_closes else quotes[0::2]
            closes = quotes[0::2] if first_closes else quotes[1::2]
            if first_closes:
                self.longest = max(self.longest, self.open_len + int(closes[0]))
                closes_after = closes[1:]
            else:
                closes_after = closes
            pairs = min(opens.size, closes_after.size)
            if pairs:
                self.longest = max(self.longest, int((closes_after[:pairs] - opens[:pairs] - 1).max()))
            self.inside = (quotes.size + first_closes) % 2 == 1
            self.open_len = data.size - 1 - int(quotes[-1]) if self.inside else 0
        elif self.inside:
            self.open_len += data.size
        if self.inside:
            self.longest = max(self.longest, self.open_len)
        if chunk[-1] != _BACKSLASH:
            self.backslashes = 0
        else:  # the run of backslashes this piece ends with, carried into the next piece
            plain = np.flatnonzero(data != _BACKSLASH)
            self.backslashes = data.size - 1 - int(plain[-1]) if plain.size else self.backslashes + data.size

    def _backslash_runs(self, data: np.ndarray, quotes: np.ndarray) -> np.ndarray:
        """How many backslashes run up to each quote (the run carried from the last piece counts
        for one at the start). Stepped back from the quotes while runs are short, as escapes
        are (\\" or \\\\"); a whole-piece pass for long runs, which only a hostile body has."""
        runs = np.zeros(quotes.size, np.int64)
        live = np.flatnonzero(quotes > 0)
        for step in range(1, SHORT_RUN + 1):
            at = quotes[live] - step
            going = data[at] == _BACKSLASH
            runs[live[going]] += 1
            live = live[going & (at > 0)]
            if live.size == 0:
                break
        else:
            index = np.arange(data.size)
            last_plain = np.maximum.accumulate(np.where(data == _BACKSLASH, -1 - self.backslashes, index))
            before = np.where(quotes > 0, last_plain[np.maximum(quotes - 1, 0)], -1 - self.backslashes)
            return quotes - 1 - before
        # A run that reaches the piece's start goes on in the carried run.
        reaches_start = (quotes - runs) == 0
        return runs + np.where(reaches_start, self.backslashes, 0)


class JsonPrice:
    """What parsing a body will hold, priced from its raw bytes as they arrive, before any of it
    is parsed.

    The JSON header is priced by its structure: `[`, `{`, `,` and `:` counted (16 MB of
    `[[],[],...]` would become ~530 MB of lists, and is priced ~1.7 GB); the binary tail after
    `json_length` bytes costs nothing unless a BYTES input may hold it as many small bytes objects
    (`finish`). Counting is C scans, ~3 ms a MB, so a body can be refused after its first few MB."""

    def __init__(self, json_length: int | None = None) -> None:
        self.json_length, self.seen, self.cost = json_length, 0, 0
        self.strings = StringScan()

    def feed(self, chunk: bytes) -> int:
        """Count `chunk`, the next bytes of the body; the price so far."""
        end = (
            len(chunk) if self.json_length is None else max(0, min(len(chunk), self.json_length - self.seen))
        )
        self.seen += len(chunk)
        if end:
            self.strings.feed(chunk[:end] if end < len(chunk) else chunk)
            self.cost += (
                chunk.count(b",", 0, end) * JSON_VALUE_BYTES
                + (chunk.count(b"[", 0, end) + chunk.count(b"{", 0, end)) * JSON_CONTAINER_BYTES
                + chunk.count(b":", 0, end) * JSON_KEY_BYTES
                + end * JSON_BYTE_BYTES
            )
        return self.cost

    def finish(self, body: bytes) -> int:
        """The whole body's price: the counted JSON and, if it names BYTES, the binary tail. A
        header without BYTES inputs and a string over MAX_PLAIN_STRING is refused here (400),
        before it is parsed: an `id` or parameter that long is never valid."""
        json_end = len(body) if self.json_length is None else min(self.json_length, len(body))
        names_bytes = body.find(b'"%s"' % BYTES.encode(), 0, json_end) >= 0
        if self.strings.longest > MAX_PLAIN_STRING and not names_bytes:
            raise InvalidTensor(
                f"the request holds a string of {self.strings.longest} bytes; without a BYTES input "
                f"no string may be longer than {MAX_PLAIN_STRING} (`id`: at most {MAX_ID_CHARS} characters)"
            )
        if json_end < len(body) and names_bytes:
            return self.cost + JSON_VALUE_BYTES + (len(body) - json_end) * BINARY_BYTES_PER_BYTE
        return self.cost + JSON_VALUE_BYTES


def json_cost(body: bytes, header_length: str | None, stop_above: int | None = None) -> int:
    """`JsonPrice` of a body already in memory, 1 MB at a time, stopping once past `stop_above`."""
    price = JsonPrice(json_header_length(header_length))
    limit = math.inf if stop_above is None else stop_above
    for start in range(0, len(body), _COUNT_CHUNK):
        if price.feed(body[start : start + _COUNT_CHUNK]) > limit:
            return price.cost
    return price.finish(body)
