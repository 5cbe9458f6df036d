"""The served model through V2, without HTTP: metadata from the artifact, and how one request's
images are submitted (the live protocol is tested in tests/app/http/routes/test_v2.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from app.core.engine import Engine
from app.core.errors import DeadlineExceeded, Overloaded
from app.http.v2.infer import model_config, model_metadata


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Engine:
    return Engine(tiny_model, device="cpu", intra_op_threads=1)


def test_metadata_comes_from_the_artifact(engine: Engine, make_settings) -> None:
    meta = model_metadata(engine)
    assert (
        meta["name"] == "tiny"
        and meta["versions"] == ["tiny-0001"]
        and meta["platform"] == "onnxruntime_onnx"
    )
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [
        ("scores", "FP32"),
        ("confidence_maps", "FP32"),
    ]
    config = model_config(engine, make_settings(max_request_images=16, max_batch_wait_ms=2.5))
    assert config["max_batch_size"] == 16
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2500
    assert config["output"][1] == {"name": "confidence_maps", "data_type": "TYPE_FP32", "dims": [10, -1, -1]}


def test_bytes_inputs_are_priced_and_admitted_whole_before_any_decode(make_settings, monkeypatch) -> None:
    from app.core import admission as admission_module
    from app.core.errors import ImageTooLarge
    from app.http.v2.codec import InferRequest, InputTensor
    from app.http.v2.infer import infer
    from app.serving.state import ServingState
    from tests.app.core.test_memory import png_header_only
    from tests.app.helpers import png

    decoded: list[int] = []
    real = admission_module.decode_image
    monkeypatch.setattr(
        admission_module,
        "decode_image",
        lambda data, *a, **k: decoded.append(len(data)) or real(data, *a, **k),
    )

    def request(*files: bytes) -> InferRequest:
        tensor = InputTensor("image", "BYTES", (len(files),), list(files), {})
        return InferRequest(id=None, inputs=[tensor], outputs=None, parameters={}, binary_output=False)

    async def main() -> None:
        rt = ServingState(make_settings(max_queue=4, max_batch_size=2))
        await rt.start()
        await rt.wait_ready(30)
        try:
            with pytest.raises(ImageTooLarge):  # one image over the decode budget fails the request
                await infer(rt, request(png(1), png_header_only(4000, 4000, "RGBA")), rt.model())
            rt.admission.admitted = rt.admission.max_images - 1
            with pytest.raises(Overloaded):  # two images, room for one: refused whole
                await infer(rt, request(png(1), png(2)), rt.model())
            rt.admission.admitted = 0
            outputs = await infer(rt, request(png(1), png(2)), rt.model())
            assert outputs[0].data.shape[0] == 2
            assert rt.admission.admitted == 0
            with pytest.raises(DeadlineExceeded):  # the request's own deadline, spent parsing
                await infer(rt, request(png(1)), rt.model(), deadline=time.monotonic() - 0.001)
            assert rt.admission.admitted == 0
        finally:
            await rt.stop()

    asyncio.run(main())
    assert len(decoded) == 2  # only the admitted request's images
