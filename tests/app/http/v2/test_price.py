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
