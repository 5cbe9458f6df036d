"""app/http/v2/price.py: a body priced while it arrives, in chunks of any size, costs what the whole
body costs; the binary tail counts only when a BYTES input may hold it as small objects."""

from __future__ import annotations

import struct

import orjson
import pytest

from app.http.v2.price import BINARY_BYTES_PER_BYTE, JsonPrice, json_cost


def streamed(body: bytes, header_length: int | None, chunk: int) -> int:
    price = JsonPrice(header_length)
    for start in range(0, len(body), chunk):
        price.feed(body[start : start + chunk])
    return price.finish(body)


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_a_streamed_price_is_the_whole_bodys_price(chunk: int) -> None:
    header = (
        b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":10}}]}'
    )
    tail = struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b"
    body = header + tail
    assert streamed(body, len(header), chunk) == json_cost(body, str(len(header)))
    json_only = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[[1,2],[3],{"a":[]}]}]}'
    assert streamed(json_only, None, chunk) == json_cost(json_only, None)


def test_the_binary_tail_costs_only_for_bytes_inputs() -> None:
    tensor = {"name": "image", "datatype": "UINT8", "shape": [1000], "parameters": {"binary_data_size": 1000}}
    header = orjson.dumps({"inputs": [tensor]})
    body = header + bytes(1000)
    pixels = json_cost(body, str(len(header)))
    assert pixels == json_cost(header, None)  # a fixed-size tensor's tail is a view: free
    as_bytes = json_cost(body.replace(b'"UINT8"', b'"BYTES"'), str(len(header)))
    assert as_bytes - pixels == 1000 * BINARY_BYTES_PER_BYTE


def _longest_string(body: bytes) -> int:
    """The longest JSON string in `body`, by walking it byte by byte (the reference)."""
    i, best, inside, start = 0, 0, False, 0
    while i < len(body):
        if inside and body[i] == 0x5C:  # a backslash escapes the next byte
            i += 2
            continue
        if body[i] == 0x22:
            if inside:
                best = max(best, i - start - 1)
            inside, start = not inside, i
        i += 1
    return max(best, len(body) - start - 1) if inside else best


def test_the_longest_string_is_found_in_pieces_of_any_size() -> None:
    import random

    from app.http.v2.price import StringScan

    rng = random.Random(1)
    for _ in range(2000):
        doc = {
            "id": "".join(rng.choice('ab"\\\\x\n') for _ in range(rng.randint(0, 40))),
            "p": ["".join(rng.choice('"\\\\q') for _ in range(rng.randint(0, 10))) for _ in range(3)],
            "n": [1, 2, 3],
        }
        body = orjson.dumps(doc)
        cuts = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randint(0, 6))))
        scan, last = StringScan(), 0
        for cut in [*cuts, len(body)]:
            scan.feed(body[last:cut])
            last = cut
        assert scan.longest == _longest_string(body), (body, cuts)


def test_a_long_string_without_bytes_inputs_is_refused_before_parsing() -> None:
    from app.core.errors import InvalidTensor

    header = orjson.dumps(
        {"id": "x" * 7000, "inputs": [{"name": "image", "datatype": "UINT8", "shape": [1]}]}
    )
    with pytest.raises(InvalidTensor, match="no string may be longer than 6144"):
        streamed(header, None, 4096)
    as_bytes = header.replace(b'"UINT8"', b'"BYTES"')  # may be an encoded image: left to the parse
    assert streamed(as_bytes, None, 4096) > 0


@pytest.mark.parametrize("cut", [None, 1, 3, 7, 15])
def test_long_runs_of_backslashes_before_quotes(cut: int | None) -> None:
    from app.http.v2.price import StringScan

    for n in range(0, 40):
        body = orjson.dumps({"a": "\\" * n + '"' + "x" * n, "b": ["\\" * (n % 5), "q"]})
        scan = StringScan()
        size = cut or len(body)
        for start in range(0, len(body), size):
            scan.feed(body[start : start + size])
        assert scan.longest == _longest_string(body), (n, body)
