"""deploy/k8s: every manifest valid against the Kubernetes API schema (kubernetes-validate
--strict, offline) or, for KServe's kinds, against KServe's schema (check-jsonschema), the
kustomizations complete and setting the image, and the pieces wired to each other and to the
image (ports, user, probes, selectors, the Redis URL, the V2 protocol)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import ROOT, load_yaml_documents, run, tool

K8S = ROOT / "deploy" / "k8s"
KSERVE = K8S / "kserve"
# KServe's kinds are custom resources: kubernetes-validate does not know them (schemas below).
KSERVE_SCHEMAS = {
    "inferenceservice.yaml": KSERVE / "schema" / "inferenceservice-v1beta1.json",
    "servingruntime.yaml": KSERVE / "schema" / "servingruntime-v1alpha1.json",
}
MANIFESTS = sorted(
    p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and p.name not in KSERVE_SCHEMAS
)
VARIANTS = ("cpu", "gpu")
# Oldest Kubernetes the manifests are meant for (the preStop `sleep` action is on by default from
# 1.30), and the newest schema the validator knows.
K8S_VERSIONS = ("1.30.0", None)


def resources(kustomization_dir: Path) -> list[dict[str, Any]]:
    """Every object a kustomization deploys, following `resources` entries (files or dirs)."""
    (kustomization,) = load_yaml_documents(kustomization_dir / "kustomization.yaml")
    objects: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        target = (kustomization_dir / entry).resolve()
        assert target.exists(), f"{kustomization_dir}/kustomization.yaml lists missing {entry}"
        objects += resources(target) if target.is_dir() else load_yaml_documents(target)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_manifests_are_valid_kubernetes_objects(version: str | None) -> None:
    validator = tool("kubernetes-validate", "pip install kubernetes-validate, scripts/ci-deps.sh")
    args = [validator, "--strict", "--quiet"] + (["--kubernetes-version", version] if version else [])
    result = run(*args, *map(str, MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(MANIFESTS) >= 7


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_has_every_piece(variant: str) -> None:
    objects = resources(K8S / variant)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert kinds >= {
        ("Deployment", "ninserve"),
        ("Service", "ninserve"),
        ("HorizontalPodAutoscaler", "ninserve"),
        ("PodDisruptionBudget", "ninserve"),
        ("ConfigMap", "ninserve"),
        ("Deployment", "ninserve-redis"),
        ("Service", "ninserve-redis"),
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_api_pods_probe_limit_and_run_like_the_image(variant: str) -> None:
    objects = resources(K8S / variant)
    pod = by_kind(objects, "Deployment", "ninserve")["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert {"cpu", "memory"} <= api["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= api["resources"]["limits"].keys()
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in api["volumeMounts"]
    assert api["args"] == ["serve", "--host", "0.0.0.0"]
    env = {e["name"]: e["value"] for e in api["env"]}
    assert env["NINSERVE_DEVICE"] == variant.replace("gpu", "cuda")


def test_gpu_variant_requests_a_gpu_and_cpu_does_not() -> None:
    gpu = by_kind(resources(K8S / "gpu"), "Deployment", "ninserve")["spec"]["template"]["spec"]
    cpu = by_kind(resources(K8S / "cpu"), "Deployment", "ninserve")["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_selectors_and_references_line_up(variant: str) -> None:
    objects = resources(K8S / variant)
    deployment = by_kind(objects, "Deployment", "ninserve")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the replica count
    for kind in ("Service", "PodDisruptionBudget"):
        spec = by_kind(objects, kind, "ninserve")["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    target = by_kind(objects, "HorizontalPodAutoscaler", "ninserve")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "ninserve")
    store = by_kind(objects, "ConfigMap", "ninserve")["data"]["NINSERVE_RESULT_STORE"]
    redis = by_kind(objects, "Service", "ninserve-redis")
    assert store == f"redis://{redis['metadata']['name']}:{redis['spec']['ports'][0]['port']}/0"
    redis_pods = by_kind(objects, "Deployment", "ninserve-redis")["spec"]["template"]["metadata"]["labels"]
    assert redis["spec"]["selector"].items() <= redis_pods.items()


@pytest.mark.parametrize("manifest", sorted(KSERVE_SCHEMAS))
def test_kserve_objects_are_valid_against_kserve_schema(manifest: str) -> None:
    checker = tool("check-jsonschema", "pip install check-jsonschema, the dev extra")
    result = run(checker, "--schemafile", str(KSERVE_SCHEMAS[manifest]), str(KSERVE / manifest))
    assert result.returncode == 0, result.stdout + result.stderr


def test_kserve_schema_is_strict() -> None:
    """A misspelt field or an unknown scale metric must fail, or the validation above proves little."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(KSERVE_SCHEMAS["inferenceservice.yaml"].read_text())
    (isvc,) = load_yaml_documents(KSERVE / "inferenceservice.yaml")
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(isvc))
    predictor = isvc["spec"]["predictor"]
    for bad in (
        {"minReplica": 2},
        {"scaleMetric": "gpu"},
        {"model": {**predictor["model"], "protocol": "v2"}},
    ):
        wrong = copy.deepcopy(isvc)
        wrong["spec"]["predictor"] |= bad
        assert list(validator.iter_errors(wrong)), bad


def test_kserve_speaks_v2_on_the_image_port_and_autoscales() -> None:
    objects = resources(KSERVE)
    isvc = by_kind(objects, "InferenceService", "ninserve")
    runtime = by_kind(objects, "ServingRuntime", "ninserve")
    predictor, model = isvc["spec"]["predictor"], isvc["spec"]["predictor"]["model"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "v2"
    assert "v2" in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert "storageUri" not in model  # the artifact is in the image
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["args"] == ["serve", "--host", "0.0.0.0"]
    env = {e["name"]: e["value"] for e in container["env"]}
    (port,) = container["ports"]
    assert port["containerPort"] == int(env["NINSERVE_PORT"]) == 8000
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] == predictor["securityContext"]["runAsUser"] == 10001
    assert 2 <= predictor["minReplicas"] < predictor["maxReplicas"]
    assert predictor["scaleMetric"] == "cpu" and 0 < predictor["scaleTarget"] <= 100
    # The API pods must reach Redis: the NetworkPolicy admits pods by these labels.
    policy = by_kind(objects, "NetworkPolicy", "ninserve-redis")
    admitted = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert admitted.items() <= predictor["labels"].items()
    store = by_kind(objects, "ConfigMap", "ninserve")["data"]["NINSERVE_RESULT_STORE"]
    assert store.startswith("redis://ninserve-redis:")


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_kustomize_sets_the_image(variant: str) -> None:
    """`images:` in the overlay decides what every ninserve container runs (kubectl kustomize)."""
    kubectl = tool("kubectl", "kubectl, for its built-in kustomize")
    (kustomization,) = load_yaml_documents(K8S / variant / "kustomization.yaml")
    (image,) = [i for i in kustomization["images"] if i["name"] == "ninserve"]
    rendered = run(kubectl, "kustomize", str(K8S / variant))
    assert rendered.returncode == 0, rendered.stderr
    images = re.findall(r"^\s+image: (\S+)$", rendered.stdout, re.M)
    ours = [i for i in images if not i.startswith("redis:")]
    assert ours and set(ours) == {f"{image['newName']}:{image['newTag']}"}
