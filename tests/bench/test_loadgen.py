from __future__ import annotations

import json

from bench import loadgen


def test_multipart_body_carries_the_image_as_field_file() -> None:
    body, headers = loadgen.request_for("multipart", b"\x89PNGdata", "image/png", "a.png")
    assert headers["Content-Type"] == f"multipart/form-data; boundary={loadgen.BOUNDARY}"
    assert b'name="file"; filename="a.png"' in body
    assert b"Content-Type: image/png\r\n\r\n\x89PNGdata\r\n" in body
    assert body.endswith(f"--{loadgen.BOUNDARY}--\r\n".encode())


def test_triton_body_is_json_header_then_length_prefixed_bytes() -> None:
    image = bytes(range(256)) * 3
    body, headers = loadgen.request_for("triton", image, "image/jpeg", "a.jpg")
    n = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:n])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(image) + 4
    assert int.from_bytes(body[n : n + 4], "little") == len(image)
    assert body[n + 4 :] == image
