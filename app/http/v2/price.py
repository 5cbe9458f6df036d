"""What parsing a V2 body (app/http/v2/codec.py) will hold, priced from its raw bytes before any of it
is parsed, so that admission (app/core/admission.py: `price_json`, `run_priced`) can refuse or queue
it like an image decode: small JSON expands ~30x into Python objects.
"""

from __future__ import annotations

import math

from app.http.v2.codec import json_header_length

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


class JsonPrice:
    """What parsing a body will hold, priced from its raw bytes as they arrive, before any of it
    is parsed.

    The JSON header is priced by its structure: `[`, `{`, `,` and `:` counted (16 MB of
    `[[],[],...]` would become ~530 MB of lists, and is priced ~1.7 GB); the binary tail after
    `json_length` bytes costs nothing unless a BYTES input may hold it as many small bytes objects
    (`finish`). Counting is C scans, ~3 ms a MB, so a body can be refused after its first few MB."""

    def __init__(self, json_length: int | None = None) -> None:
        self.json_length, self.seen, self.cost = json_length, 0, 0

    def feed(self, chunk: bytes) -> int:
        """Count `chunk`, the next bytes of the body; the price so far."""
        end = (
            len(chunk) if self.json_length is None else max(0, min(len(chunk), self.json_length - self.seen))
        )
        self.seen += len(chunk)
        if end:
            self.cost += (
                chunk.count(b",", 0, end) * JSON_VALUE_BYTES
                + (chunk.count(b"[", 0, end) + chunk.count(b"{", 0, end)) * JSON_CONTAINER_BYTES
                + chunk.count(b":", 0, end) * JSON_KEY_BYTES
                + end * JSON_BYTE_BYTES
            )
        return self.cost

    def finish(self, body: bytes) -> int:
        """The whole body's price: the counted JSON and, if it names BYTES, the binary tail."""
        json_end = len(body) if self.json_length is None else min(self.json_length, len(body))
        if json_end < len(body) and body.find(b'"BYTES"', 0, json_end) >= 0:
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
