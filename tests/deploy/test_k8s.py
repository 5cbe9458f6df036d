"""deploy/k8s: every manifest valid against the Kubernetes API schema (kubernetes-validate
--strict, offline), for KServe's kinds against KServe's schema (check-jsonschema), for the
Prometheus Operator's against its CRD schemas (deploy/k8s/components/monitoring/schema, node),
rendered with the components too; the kustomizations complete and setting the image; and the
pieces wired to each other and to the image (ports, user, probes, selectors, the Redis URL and
password, the V2 protocol, drain and rollout budgets, network policies, scraping and alerts)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
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
MONITORING = K8S / "components" / "monitoring"
# Prometheus Operator kinds: custom resources too, validated by MONITORING/schema/validate.mjs.
OPERATOR_MANIFESTS = ("podmonitor.yaml", "prometheusrule.yaml")
MANIFESTS = sorted(
    p
    for p in K8S.rglob("*.yaml")
    if p.name != "kustomization.yaml"
    and p.name not in KSERVE_SCHEMAS
    and p.name not in OPERATOR_MANIFESTS
    and p.name != "alerts-test.yaml"  # promtool's unit tests of the alerts (tests/deploy/test_alerts.py)
    and p.name != "scaledobject.yaml"  # KEDA's kind: tests/deploy/test_scaling.py validates it
    and "node_modules" not in p.parts
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


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """{name: value, or the valueFrom mapping} of a container's env."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


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
    assert api["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
    ]
    assert {"cpu", "memory"} <= api["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= api["resources"]["limits"].keys()
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in api["volumeMounts"]
    assert api["args"] == ["serve", "--host", "0.0.0.0"]
    assert env_of(api)["NINSERVE_DEVICE"] == variant.replace("gpu", "cuda")


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
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    redis = by_kind(objects, "Service", "ninserve-redis")
    host = f"{redis['metadata']['name']}:{redis['spec']['ports'][0]['port']}"
    assert env_of(api)["NINSERVE_RESULT_STORE"] == f"redis://:$(REDIS_PASSWORD)@{host}/0"
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
    env = env_of(container)
    port, grpc = container["ports"]  # KServe routes the first; the second is its gRPC data port
    assert port["containerPort"] == int(env["NINSERVE_PORT"]) == 8000
    assert grpc["containerPort"] == int(env["NINSERVE_GRPC_PORT"]) == 8001 and grpc["name"] == "h2c"
    assert runtime["spec"]["grpcDataEndpoint"] == "port:8001"
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
    assert env["NINSERVE_RESULT_STORE"] == "redis://:$(REDIS_PASSWORD)@ninserve-redis:6379/0"


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_kustomize_sets_the_image(variant: str) -> None:
    """`images:` in the overlay decides what every ninserve container runs (kubectl kustomize)."""
    kubectl = tool("kubectl", "kubectl, for its built-in kustomize")
    (kustomization,) = load_yaml_documents(K8S / variant / "kustomization.yaml")
    (image,) = [i for i in kustomization["images"] if i["name"] == "ninserve"]
    rendered = run(kubectl, "kustomize", str(K8S / variant))
    assert rendered.returncode == 0, rendered.stderr
    images = re.findall(r"^\s+image: (\S+)$", rendered.stdout, re.M)
    ours = [i for i in images if not i.startswith("redis")]
    assert ours and set(ours) == {f"{image['newName']}:{image['newTag']}"}
    assert not [i for i in images if i.startswith("redis") and "@sha256:" not in i]


# ---- drains, rollouts and the preStop -------------------------------------------------------------

PROPAGATION_S = 2  # the endpoint-removal delay of the recorded stop test (deploy/README.md)


def api_pods() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """{variant: (pod spec fields, the API container)} for the plain Deployments and KServe."""
    pods = {}
    for variant in VARIANTS:
        pod = by_kind(resources(K8S / variant), "Deployment", "ninserve")["spec"]["template"]["spec"]
        pods[variant] = (pod, pod["containers"][0])
    objects = resources(KSERVE)
    predictor = by_kind(objects, "InferenceService", "ninserve")["spec"]["predictor"]
    pods["kserve"] = (predictor, by_kind(objects, "ServingRuntime", "ninserve")["spec"]["containers"][0])
    return pods


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_api_pods_sleep_before_sigterm_within_the_grace_period(variant: str) -> None:
    """The listener closes at SIGTERM: the preStop sleep must outlast the endpoint removal
    (tests/deploy/test_stop_under_load.py shows what is lost without it)."""
    pod, container = api_pods()[variant]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert PROPAGATION_S < sleep < pod["terminationGracePeriodSeconds"]


def minimum_and_budgets(variant: str) -> tuple[int, int, int, int]:
    """(minimum replicas, rollout maxUnavailable, rollout maxSurge, PDB maxUnavailable)."""
    if variant == "kserve":
        objects = resources(KSERVE)
        predictor = by_kind(objects, "InferenceService", "ninserve")["spec"]["predictor"]
        rolling = predictor["deploymentStrategy"]["rollingUpdate"]
        pdb = by_kind(objects, "PodDisruptionBudget", "ninserve-predictor")["spec"]
        return predictor["minReplicas"], rolling["maxUnavailable"], rolling["maxSurge"], pdb["maxUnavailable"]
    kubectl = tool("kubectl", "kubectl, for its built-in kustomize")
    rendered = run(kubectl, "kustomize", str(K8S / variant))
    assert rendered.returncode == 0, rendered.stderr
    yaml = pytest.importorskip("yaml")
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    rolling = by_kind(objects, "Deployment", "ninserve")["spec"]["strategy"]["rollingUpdate"]
    hpa = by_kind(objects, "HorizontalPodAutoscaler", "ninserve")["spec"]
    pdb = by_kind(objects, "PodDisruptionBudget", "ninserve")["spec"]
    return hpa["minReplicas"], rolling["maxUnavailable"], rolling["maxSurge"], pdb["maxUnavailable"]


# What a container keeps above NINSERVE_MEMORY_BUDGET_MB: request bodies in flight (128 MiB,
# max_body_bytes_in_flight) and ~96 MiB the memory plan does not model (allocator, libraries).
HEADROOM_MIB = 224


def mebibytes(quantity: str) -> int:
    """A Kubernetes or Compose memory quantity (`1Gi`, `512Mi`, `1g`) in MiB."""
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", str(quantity)).groups()
    return int(number) * {"Gi": 1024, "Mi": 1, "g": 1024, "m": 1}[unit]


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_memory_requests_limits_and_budget_agree(variant: str) -> None:
    """Guaranteed QoS (requests = limits, every resource), and the budget set explicitly next to
    them: the limit less the headroom, a budget the server accepts at start."""
    _, container = api_pods()[variant]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert requests == limits and {"cpu", "memory"} <= limits.keys()
    budget = int(env_of(container)["NINSERVE_MEMORY_BUDGET_MB"])
    assert budget == mebibytes(limits["memory"]) - HEADROOM_MIB
    Settings = pytest.importorskip("app.config").Settings
    assert Settings(memory_budget_mb=budget).memory_budget_mb == budget


def test_compose_budget_agrees_with_its_memory_limits() -> None:
    (compose,) = load_yaml_documents(ROOT / "docker-compose.yml")
    for name in ("api", "api-gpu"):
        service = compose["services"][name]
        limit = service["deploy"]["resources"]["limits"]["memory"]
        assert service["environment"]["NINSERVE_MEMORY_BUDGET_MB"] == mebibytes(limit) - HEADROOM_MIB


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_rollouts_and_drains_never_take_every_replica(variant: str) -> None:
    minimum, unavailable, surge, disruptable = minimum_and_budgets(variant)
    assert minimum >= 2  # one replica cannot be both drainable and up
    assert (unavailable, surge) == (0, 1)  # a new pod is ready before an old one goes
    assert minimum - disruptable >= 1  # a drain leaves one serving, and is never blocked for good
    assert disruptable >= 1


def test_kserve_predictor_has_its_budget_and_spread() -> None:
    objects = resources(KSERVE)
    predictor = by_kind(objects, "InferenceService", "ninserve")["spec"]["predictor"]
    selector = by_kind(objects, "PodDisruptionBudget", "ninserve-predictor")["spec"]["selector"][
        "matchLabels"
    ]
    # KServe labels predictor pods with serving.kserve.io/inferenceservice=<name>, plus ours.
    expected = predictor["labels"] | {"serving.kserve.io/inferenceservice": "ninserve"}
    assert selector.items() <= expected.items()
    keys = {c["topologyKey"] for c in predictor["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in predictor["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"].items() <= predictor["labels"].items()


def test_kserve_names_the_model_after_the_inference_service_and_is_scraped() -> None:
    objects = resources(KSERVE)
    isvc = by_kind(objects, "InferenceService", "ninserve")
    runtime = by_kind(objects, "ServingRuntime", "ninserve")["spec"]
    assert env_of(runtime["containers"][0])["NINSERVE_MODEL_NAME"] == "{{.Name}}"  # KServe's template
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert runtime["annotations"]["prometheus.kserve.io/port"] == str(
        runtime["containers"][0]["ports"][0]["containerPort"]
    )
    assert runtime["annotations"]["prometheus.kserve.io/path"] == "/metrics"


# ---- Redis: auth, image, policies -------------------------------------------------------------------


def test_redis_requires_the_password_the_api_pods_use() -> None:
    objects = resources(K8S / "shared")
    (redis,) = by_kind(objects, "Deployment", "ninserve-redis")["spec"]["template"]["spec"]["containers"]
    secret = {"secretKeyRef": {"name": "ninserve-redis", "key": "password"}}
    assert env_of(redis)["REDIS_PASSWORD"] == env_of(redis)["REDISCLI_AUTH"] == secret
    assert redis["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]
    for variant, (_, api) in api_pods().items():
        names = [e["name"] for e in api["env"]]
        assert env_of(api)["REDIS_PASSWORD"] == secret, variant
        # Kubernetes expands $(REDIS_PASSWORD) only from variables defined before it.
        assert names.index("REDIS_PASSWORD") < names.index("NINSERVE_RESULT_STORE"), variant
    assert "NINSERVE_RESULT_STORE" not in by_kind(objects, "ConfigMap", "ninserve")["data"]


def test_redis_image_is_an_exact_release_pinned_by_digest_in_kustomize_and_compose() -> None:
    (kustomization,) = load_yaml_documents(K8S / "shared" / "kustomization.yaml")
    (image,) = [i for i in kustomization["images"] if i["name"] == "redis"]
    assert re.fullmatch(r"\d+\.\d+\.\d+-alpine", image["newTag"])  # never a moving tag
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
    # Where it came from and that it is unchecked is said where it is set (deploy/README.md too).
    assert "NOT checked against the registry" in (K8S / "shared" / "kustomization.yaml").read_text()
    (compose,) = load_yaml_documents(ROOT / "docker-compose.yml")
    assert compose["services"]["redis"]["image"] == f"redis:{image['newTag']}@{image['digest']}"
    kubectl = tool("kubectl", "kubectl, for its built-in kustomize")
    rendered = run(kubectl, "kustomize", str(K8S / "shared"))
    assert f"image: redis:{image['newTag']}@{image['digest']}" in rendered.stdout


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_overlays_pin_an_immutable_ninserve_image(variant: str) -> None:
    """The release's tag (pyproject.toml's version) or a digest: never `cpu`, `gpu` or `latest`,
    which move, so a rescheduled pod could run another build than the one tested."""
    (kustomization,) = load_yaml_documents(K8S / variant / "kustomization.yaml")
    (image,) = [i for i in kustomization["images"] if i["name"] == "ninserve"]
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    target = "gpu" if variant == "gpu" else "cpu"
    if "digest" in image:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
    else:
        assert image["newTag"] == f"{version}-{target}"


def test_network_policies_admit_only_what_each_side_needs() -> None:
    objects = resources(K8S / "shared")
    api = by_kind(objects, "NetworkPolicy", "ninserve-api")["spec"]
    assert api["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ninserve",
        "app.kubernetes.io/component": "api",
    }
    assert set(api["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in api["ingress"] for p in rule["ports"]] == [8000, 8001]  # HTTP, gRPC
    egress_ports = sorted((p["port"], p["protocol"]) for rule in api["egress"] for p in rule["ports"])
    assert egress_ports == [(53, "TCP"), (53, "UDP"), (6379, "TCP")]
    redis = by_kind(objects, "NetworkPolicy", "ninserve-redis")["spec"]
    assert set(redis["policyTypes"]) == {"Ingress", "Egress"} and not redis.get("egress")
    for variant, (pod, container) in api_pods().items():
        if variant == "kserve":
            labels = pod["labels"]
        else:
            deployment = by_kind(resources(K8S / variant), "Deployment", "ninserve")
            labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert api["podSelector"]["matchLabels"].items() <= labels.items(), variant
        assert container["ports"][0]["containerPort"] == 8000


# ---- the components, rendered: API keys and monitoring ---------------------------------------------


def render_with_components(variant: str, tmp_path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of an overlay: the variant plus both components, as an operator adds them."""
    kubectl = tool("kubectl", "kubectl, for its built-in kustomize")
    yaml = pytest.importorskip("yaml")
    overlay = tmp_path / f"{variant}-overlay"
    overlay.mkdir()
    up = os.path.relpath(K8S, overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {up}/{variant}\n"
        f"components:\n  - {up}/components/api-keys\n  - {up}/components/monitoring\n"
    )
    rendered = run(kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay))
    assert rendered.returncode == 0, rendered.stderr
    return [o for o in yaml.safe_load_all(rendered.stdout) if o]


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_rendered_overlays_with_components_validate(variant: str, tmp_path: Path) -> None:
    """Every object of the rendered overlay, each against its schema: built-in kinds strict,
    KServe's against its CRD schema, the Prometheus Operator's against theirs."""
    objects = render_with_components(variant, tmp_path)
    yaml = pytest.importorskip("yaml")
    groups: dict[str, list[dict[str, Any]]] = {"builtin": [], "kserve": [], "operator": []}
    for o in objects:
        group = o["apiVersion"].split("/")[0]
        kind = {"serving.kserve.io": "kserve", "monitoring.coreos.com": "operator"}.get(group, "builtin")
        groups[kind].append(o)
    assert len(groups["operator"]) == 2
    validator = tool("kubernetes-validate", "pip install kubernetes-validate, scripts/ci-deps.sh")
    files = []
    for i, o in enumerate(groups["builtin"]):
        files.append(tmp_path / f"{i}-{o['kind']}.yaml")
        files[-1].write_text(yaml.safe_dump(o))
    result = run(validator, "--strict", "--quiet", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    if groups["kserve"]:
        checker = tool("check-jsonschema", "pip install check-jsonschema, the dev extra")
        for o in groups["kserve"]:
            schema = KSERVE_SCHEMAS[f"{o['kind'].lower()}.yaml"]
            path = tmp_path / f"{o['kind']}.json"
            path.write_text(json.dumps(o))
            result = run(checker, "--schemafile", str(schema), str(path))
            assert result.returncode == 0, result.stdout + result.stderr
    assert operator_validation(groups["operator"]) == [
        f"ok {o['kind']}/{o['metadata']['name']}" for o in groups["operator"]
    ]


def operator_validation(objects: list[dict[str, Any]]) -> list[str]:
    node = shutil.which("node")
    script = MONITORING / "schema" / "validate.mjs"
    if node is None or not (MONITORING / "schema" / "node_modules").is_dir():
        where = script.parent.relative_to(ROOT)
        pytest.skip(f"needs node and `npm ci --ignore-scripts --prefix {where}` (scripts/ci-deps.sh)")
    result = subprocess.run(
        [node, str(script)], input=json.dumps(objects), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_operator_schema_check_catches_a_wrong_type() -> None:
    """A scrape interval given as a number, or an alert without `expr`, must fail."""
    (monitor,) = load_yaml_documents(MONITORING / "podmonitor.yaml")
    (rule,) = load_yaml_documents(MONITORING / "prometheusrule.yaml")
    assert operator_validation([monitor, rule]) == ["ok PodMonitor/ninserve", "ok PrometheusRule/ninserve"]
    bad_monitor = copy.deepcopy(monitor)
    bad_monitor["spec"]["podMetricsEndpoints"][0]["interval"] = 15
    bad_rule = copy.deepcopy(rule)
    del bad_rule["spec"]["groups"][0]["rules"][0]["expr"]
    node = shutil.which("node")
    result = subprocess.run(
        [node, str(MONITORING / "schema" / "validate.mjs")],
        input=json.dumps([bad_monitor, bad_rule]), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "invalid PodMonitor/ninserve",
        "invalid PrometheusRule/ninserve",
    ]


@pytest.mark.parametrize("variant", [*VARIANTS, "kserve"])
def test_keys_component_reads_client_keys_and_accepts_the_scrape_token(variant: str, tmp_path: Path) -> None:
    objects = render_with_components(variant, tmp_path)
    if variant == "kserve":
        spec = by_kind(objects, "ServingRuntime", "ninserve")["spec"]
    else:
        spec = by_kind(objects, "Deployment", "ninserve")["spec"]["template"]["spec"]
    (api,) = spec["containers"]
    env = env_of(api)
    mount = next(m for m in api["volumeMounts"] if m["name"] == "api-keys")
    assert env["NINSERVE_API_KEYS_FILE"] == f"{mount['mountPath']}/keys" and mount["readOnly"]
    volume = next(v for v in spec["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == "ninserve-api-keys"
    assert volume["secret"]["defaultMode"] & 0o004  # readable by the image's non-root user
    token = env["NINSERVE_API_KEYS"]["secretKeyRef"]
    assert token["optional"] is True  # monitoring without keys needs no token Secret for the API
    monitor = by_kind(objects, "PodMonitor", "ninserve")["spec"]
    ports = {e["port"] for e in monitor["podMetricsEndpoints"]}
    assert api["ports"][0]["name"] in ports  # `http` on the Deployments, `http1` under KServe
    for endpoint in monitor["podMetricsEndpoints"]:
        assert endpoint["path"] == "/metrics"
        credentials = endpoint["authorization"]["credentials"]
        assert (credentials["name"], credentials["key"]) == (token["name"], token["key"])
    if variant == "kserve":
        labels = by_kind(objects, "InferenceService", "ninserve")["spec"]["predictor"]["labels"]
    else:
        labels = by_kind(objects, "Deployment", "ninserve")["spec"]["template"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()


def exported_metrics() -> set[str]:
    """Series names /metrics serves, from docs/api.md's metrics table (checked against the app by
    tests/app), with a histogram's _bucket/_sum/_count."""
    table = (ROOT / "docs" / "api.md").read_text()
    names = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", table, re.M))
    flat = {n for pair in names for n in pair if n}
    return flat | {f"{n}{s}" for n in flat for s in ("_bucket", "_sum", "_count")}


def test_alerts_cover_errors_latency_shedding_readiness_and_memory_on_real_series() -> None:
    (rule,) = load_yaml_documents(MONITORING / "prometheusrule.yaml")
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(rules) >= {
        "NinserveHighErrorRate", "NinserveHighLatencyP99", "NinserveShedding", "NinserveNotReady",
        "NinserveMemoryNearLimit", "NinserveTargetDown",
    }  # fmt: skip
    known = exported_metrics() | {
        "up",
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_limits",
    }
    functions = {"sum", "rate", "by", "histogram_quantile", "min", "max", "le", "namespace", "pod"}
    for name, r in rules.items():
        assert r["labels"]["severity"] in {"critical", "warning"} and r["annotations"]["summary"], name
        bare = re.sub(r"\{[^}]*\}|\bby\s*\([^)]*\)|\[[^\]]*\]", " ", r["expr"])  # selectors, by (...)
        series = {n for n in re.findall(r"\b([a-z_][a-z_0-9]*)\b(?!\s*\()", bare)} - functions
        assert series and series <= known, (name, series - known)
    assert "histogram_quantile(0.99" in rules["NinserveHighLatencyP99"]["expr"]
    assert 'status="503"' in rules["NinserveShedding"]["expr"]
    assert 'status!="503"' in rules["NinserveHighErrorRate"]["expr"]
