"""deploy/grafana/ninserve.json: every panel's query names only series a running ninserve exports
(read from its /metrics, with the Redis result store so that the store's series exist too), and
the dashboard is well formed (unique panel ids, a Prometheus datasource variable on every query)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "ninserve.json"
# PromQL words that look like series names once selectors, groupings and ranges are stripped.
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def series_in(expr: str) -> set[str]:
    """The series a PromQL expression reads: identifiers that are not functions, keywords, label
    matchers, groupings or ranges."""
    bare = re.sub(r'"[^"]*"|\{[^}]*\}|\b(?:by|without)\s*\([^)]*\)|\[[^\]]*\]', " ", expr)
    return {n for n in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare)} - KEYWORDS


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name a live server's /metrics shows after one classification."""
    httpx = pytest.importorskip("httpx")
    parser = pytest.importorskip("prometheus_client.parser")
    from app.config import Settings
    from tests.app.core.test_store_redis import REDIS_SERVER, redis_server
    from tests.app.helpers import live_server, png

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/ci-deps.sh): the store's series need it")
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        settings = Settings(device="cpu", intra_op_threads=1, result_store=url)
        with live_server(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
            response = client.post("/v1/classify", files={"file": ("x.png", png(1), "image/png")})
            assert response.status_code == 200, response.text
            assert client.get("/v1/predictions/" + "0" * 32).status_code == 404
            bad = client.post("/v1/classify", files={"file": ("x.png", b"not an image", "image/png")})
            assert bad.status_code == 400  # nv_inference_request_failure_total gets its first series
            text = client.get("/metrics").text
    names = set()
    for family in parser.text_string_to_metric_families(text):
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)) >= 20
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all('namespace=~"$namespace"' in t["expr"] for t in panel["targets"]), panel["title"]


def test_every_query_names_a_series_the_server_exports(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            names = series_in(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    # What the dashboard promises to show: by model/version, queue, batches, memory, store, shedding.
    for name in (
        "nv_inference_request_success_total", "nv_inference_request_duration_seconds_bucket",
        "nv_inference_pending_request_count", "nv_inference_batch_size_sum", "ninserve_model_memory_bytes",
        "ninserve_store_available", "ninserve_store_backlog_bytes", "ninserve_store_writes_dropped_total",
        "ninserve_store_fetch_failures_total", "ninserve_refused_total", "ninserve_admitted_images",
    ):  # fmt: skip
        assert name in used, name


def test_the_name_check_catches_a_misspelt_series(exported: set[str]) -> None:
    assert series_in('sum by (model) (rate(nv_inference_request_success_total{a="b"}[5m]))') <= exported
    assert not series_in('rate(nv_inference_request_sucess_total{namespace=~"$x"}[5m])') <= exported
    assert series_in("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) / y") == {"x_bucket", "y"}


def test_docs_name_the_dashboard() -> None:
    assert "deploy/grafana/ninserve.json" in (ROOT / "deploy" / "README.md").read_text()
    assert Path(DASHBOARD).stat().st_size > 0
