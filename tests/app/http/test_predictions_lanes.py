"""GET /v1/predictions/{id}/maps*.png go through the render lane: capped (503 + Retry-After when
full), priced (413 for what the budget can never render), and never in the decode pool."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from app.http.main import create_app
from app.http.routes import predictions
from tests.app.helpers import live_server, png
from tests.app.http.test_errors import assert_problem


def test_a_full_render_lane_answers_503_with_retry_after(
    make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_grid = predictions.grid_png

    def slow_grid(*args, **kwargs):
        gate.wait(10)
        return real_grid(*args, **kwargs)

    monkeypatch.setattr(predictions, "grid_png", slow_grid)
    app = create_app(make_settings(render_threads=1, render_queue=0, shed_hold_s=0))
    with live_server(app) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            rid = client.post("/v1/classify", files={"file": ("x.png", png(3))}).json()["id"]

        async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, str]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as ac:
                rendering = asyncio.create_task(ac.get(f"/v1/predictions/{rid}/maps.png"))
                lane = app.state.serving.admission.renders
                while lane.running == 0:
                    await asyncio.sleep(0.005)
                refused = await ac.get(f"/v1/predictions/{rid}/maps/cat.png")
                # Classification is not blocked by the busy renderer.
                classified = await ac.post("/v1/classify", files={"file": ("x.png", png(4))})
                metrics = (await ac.get("/metrics")).text
                gate.set()
                return await rendering, refused, classified, metrics

        rendered, refused, classified, metrics = asyncio.run(scenario())
    assert rendered.status_code == 200 and rendered.headers["content-type"] == "image/png"
    assert_problem(refused, 503, "overloaded")
    assert refused.headers["retry-after"] == "1"
    assert "render lane is full" in refused.json()["detail"]
    assert classified.status_code == 200
    assert 'ninserve_lane_running{lane="render"} 1.0' in metrics  # /metrics shows the busy lane
    assert 'ninserve_refused_total{where="render"} 1.0' in metrics
    assert 'ninserve_refused_total{where="admission"} 0.0' in metrics


def test_a_render_the_budget_cannot_hold_is_413(client: httpx.Client) -> None:
    rid = client.post("/v1/classify", files={"file": ("x.png", png(5))}).json()["id"]
    too_big = client.get(f"/v1/predictions/{rid}/maps/cat.png", params={"size": 2048, "overlay": "true"})
    body = assert_problem(too_big, 413, "image-too-large")
    assert "smaller size" in body["detail"]
    fine = client.get(f"/v1/predictions/{rid}/maps/cat.png", params={"size": 1024, "overlay": "true"})
    assert fine.status_code == 200
