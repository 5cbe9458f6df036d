"""Scaling on load: the KEDA overlay (deploy/k8s/keda, a ScaledObject on requests in flight from
Prometheus) and KServe's Serverless mode (deploy/k8s/kserve-serverless, Knative's concurrency
target). Rendered with kustomize and validated offline: built-in kinds with kubernetes-validate
--strict, the ScaledObject against KEDA's CRD schema (node, deploy/k8s/keda/schema), the
InferenceService against KServe's and its annotations against Knative's rules. The target itself
is checked against the benchmark it was derived from (deploy/README.md, Scaling on load)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import ROOT, run, tool
from tests.deploy.test_k8s import KSERVE_SCHEMAS, by_kind, exported_metrics

K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = K8S / "keda" / "schema"
KNATIVE_ANNOTATIONS = K8S / "kserve-serverless" / "schema" / "knative-autoscaling-annotations.json"
# The run the targets come from (docs/benchmarks.md): one 2-CPU pod, as shipped (int8), 32x32 PNG.
BENCH = ROOT / "bench" / "results" / "20261205T084812Z.json"
TARGET_IN_FLIGHT = 8
CONTAINER_CONCURRENCY = 64
# Keys the KEDA prometheus scaler reads (keda.sh/docs/latest/scalers/prometheus); CRD metadata is
# a free map of strings, so a misspelt key would be silently ignored without this check.
PROMETHEUS_KEYS = {
    "serverAddress", "query", "threshold", "activationThreshold", "namespace", "customHeaders",
    "ignoreNullValues", "unsafeSsl", "timeout", "queryParameters",
}  # fmt: skip


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = tool("kubectl", "kubectl, for its built-in kustomize")
    yaml = pytest.importorskip("yaml")
    rendered = run(kubectl, "kustomize", str(K8S / overlay))
    assert rendered.returncode == 0, rendered.stderr
    return [o for o in yaml.safe_load_all(rendered.stdout) if o]


def validate_builtin(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    validator = tool("kubernetes-validate", "pip install kubernetes-validate, scripts/ci-deps.sh")
    files = []
    for i, o in enumerate(objects):
        files.append(tmp_path / f"{i}-{o['kind']}.yaml")
        files[-1].write_text(yaml.safe_dump(o))
    result = run(validator, "--strict", "--quiet", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def keda_validation(objects: list[dict[str, Any]]) -> tuple[int, list[str]]:
    node = shutil.which("node")
    if node is None or not (KEDA_SCHEMA / "node_modules").is_dir():
        where = KEDA_SCHEMA.relative_to(ROOT)
        pytest.skip(f"needs node and `npm ci --ignore-scripts --prefix {where}` (scripts/ci-deps.sh)")
    result = subprocess.run(
        [node, str(KEDA_SCHEMA / "validate.mjs")], input=json.dumps(objects),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.returncode, result.stdout.splitlines()


def test_the_target_is_the_measured_knee_of_one_pod() -> None:
    """In flight per pod where a pod gives most of its throughput before latency takes over:
    the smallest measured concurrency with >= 75 % of the peak; containerConcurrency the peak's."""
    points = json.loads(BENCH.read_text())["servers"]["ninserve-int8"]["points"]
    png = {p["concurrency"]: p for p in points if p["image"] == "png32"}
    peak = max(png.values(), key=lambda p: p["rps"])
    knee = min(c for c, p in png.items() if p["rps"] >= 0.75 * peak["rps"])
    assert (knee, peak["concurrency"]) == (TARGET_IN_FLIGHT, CONTAINER_CONCURRENCY)
    assert round(png[knee]["rps"]) == 768 and round(peak["rps"]) == 972  # the numbers the docs quote
    # Little's law: 8 in flight at 768 req/s is a 10.4 ms mean, the measured mean.
    assert abs(TARGET_IN_FLIGHT / png[knee]["rps"] * 1000 - png[knee]["mean_ms"]) < 0.5


def test_keda_overlay_scales_the_deployment_on_in_flight_requests(tmp_path: Path) -> None:
    objects = render("keda")
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]  # KEDA makes its own
    scaled = by_kind(objects, "ScaledObject", "ninserve")
    target = scaled["spec"]["scaleTargetRef"]
    deployment = by_kind(objects, target["kind"], target["name"])
    assert deployment["apiVersion"] == target["apiVersion"] == "apps/v1"
    assert 2 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    prometheus = triggers["prometheus"]
    assert prometheus["metricType"] == "AverageValue"  # the sum over pods, divided by replicas
    metadata = prometheus["metadata"]
    assert set(metadata) <= PROMETHEUS_KEYS and {"serverAddress", "query", "threshold"} <= set(metadata)
    assert metadata["threshold"] == str(TARGET_IN_FLIGHT)
    series = set(re.findall(r"\b(ninserve_\w+|nv_\w+)\b", metadata["query"]))
    assert series == {"ninserve_admitted_images"} and series <= exported_metrics()
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    assert f'container="{api["name"]}"' in metadata["query"]
    assert triggers["cpu"]["metadata"] == {"value": "70"}  # needs a CPU request: it has one
    assert "cpu" in api["resources"]["requests"]
    validate_builtin([o for o in objects if o["kind"] != "ScaledObject"], tmp_path)
    assert keda_validation([scaled]) == (0, ["ok ScaledObject/ninserve"])


def test_keda_schema_check_catches_a_wrong_type() -> None:
    """Trigger metadata is a map of strings: a number threshold, or no trigger type, must fail."""
    scaled = by_kind(render("keda"), "ScaledObject", "ninserve")
    number = copy.deepcopy(scaled)
    number["spec"]["triggers"][0]["metadata"]["threshold"] = TARGET_IN_FLIGHT
    untyped = copy.deepcopy(scaled)
    del untyped["spec"]["triggers"][0]["type"]
    code, lines = keda_validation([number, untyped])
    assert code == 1 and [line.split(":")[0] for line in lines] == ["invalid ScaledObject/ninserve"] * 2


def knative_annotation_errors(annotations: dict[str, str]) -> list[str]:
    """The vendored schema, plus the numeric ranges a pattern cannot state (annotation_validation.go)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(KNATIVE_ANNOTATIONS.read_text())
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(annotations)]
    target = annotations.get("autoscaling.knative.dev/target")
    if target is not None and not errors and float(target) < 0.01:  # TargetMin
        errors.append(f"target {target} should be at least 0.01")
    utilization = annotations.get("autoscaling.knative.dev/target-utilization-percentage")
    if utilization is not None and not errors and not 1 <= float(utilization) <= 100:
        errors.append(f"target-utilization-percentage {utilization} is not in [1, 100]")
    return errors


def test_kserve_serverless_scales_on_concurrency(tmp_path: Path) -> None:
    objects = render("kserve-serverless")
    isvc = by_kind(objects, "InferenceService", "ninserve")
    annotations, predictor = isvc["metadata"]["annotations"], isvc["spec"]["predictor"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"
    assert knative_annotation_errors(annotations) == []
    assert annotations["autoscaling.knative.dev/metric"] == predictor["scaleMetric"] == "concurrency"
    assert (
        float(annotations["autoscaling.knative.dev/target"]) == predictor["scaleTarget"] == TARGET_IN_FLIGHT
    )
    # Knative: 0 < containerConcurrency <= 1000 (container-concurrency-max-limit's default), and a
    # soft target above the hard limit would never be reached.
    assert predictor["containerConcurrency"] == CONTAINER_CONCURRENCY
    assert TARGET_IN_FLIGHT < predictor["containerConcurrency"] <= 1000
    assert "deploymentStrategy" not in predictor and predictor["minReplicas"] >= 2
    policy = by_kind(objects, "NetworkPolicy", "ninserve-api")["spec"]
    assert {8000, 8012, 9090} <= {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    checker = tool("check-jsonschema", "pip install check-jsonschema, the dev extra")
    for o in objects:
        if o["apiVersion"].startswith("serving.kserve.io/"):
            path = tmp_path / f"{o['kind']}.json"
            path.write_text(json.dumps(o))
            result = run(checker, "--schemafile", str(KSERVE_SCHEMAS[f"{o['kind'].lower()}.yaml"]), str(path))
            assert result.returncode == 0, result.stdout + result.stderr
    validate_builtin([o for o in objects if not o["apiVersion"].startswith("serving.kserve.io/")], tmp_path)


@pytest.mark.parametrize(
    "bad",
    [
        {"autoscaling.knative.dev/metric": "cpu"},  # not a KPA metric
        {"autoscaling.knative.dev/target": "0.001"},  # below TargetMin
        {"autoscaling.knative.dev/target": "eight"},
        {"autoscaling.knative.dev/target-utilization-percentage": "170"},
        {"autoscaling.knative.dev/class": "kpb.autoscaling.knative.dev"},
        {"autoscaling.knative.dev/targt": "8"},  # a typo Knative would ignore
    ],
)
def test_knative_annotation_check_catches_mistakes(bad: dict[str, str]) -> None:
    isvc = by_kind(render("kserve-serverless"), "InferenceService", "ninserve")
    assert knative_annotation_errors(isvc["metadata"]["annotations"] | bad)
