"""Write strict JSON Schemas of KServe's InferenceService and ServingRuntime next to this file, for
validating deploy/k8s/kserve/ offline (tests/deploy/test_k8s.py, check-jsonschema).

    pip download --no-deps kserve==0.21.0 -d /tmp/kserve
    python deploy/k8s/kserve/schema/generate.py /tmp/kserve/kserve-0.21.0-py3-none-any.whl

KServe's own CRD (config/crd/full/serving.kserve.io_inferenceservices.yaml) is ~1 MB and is not
shipped in any package a registry here serves. The KServe Python SDK is: its models
(kserve/models/v1beta1_*.py) are generated from the same Go API types as the CRD, with every field
name (`attribute_map`), type (`openapi_types`) and required field. This turns them into JSON Schema,
taking the Kubernetes types they embed (Container, PodSecurityContext, Toleration, ...) from
kubernetes-validate's strict schemas. Strict like the API server's structural pruning would be:
unknown fields are errors. `status` is left open (the controller writes it).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from pathlib import Path

import kubernetes_validate

HERE = Path(__file__).parent
# file -> (apiVersion, kind, the SDK model of its spec)
KINDS = {
    "inferenceservice-v1beta1.json": (
        "serving.kserve.io/v1beta1",
        "InferenceService",
        "V1beta1InferenceServiceSpec",
    ),
    "servingruntime-v1alpha1.json": (
        "serving.kserve.io/v1alpha1",
        "ServingRuntime",
        "V1alpha1ServingRuntimeSpec",
    ),
}
# Enumerations the CRD declares (kubebuilder markers) but the SDK only names in its docstrings.
ENUMS = {"scaleMetric": ["cpu", "memory", "concurrency", "rps"]}
K8S_VERSION = "1.37.0"  # the newest schema kubernetes-validate ships: KServe 0.21 embeds 1.3x types
K8S_DEFS = Path(kubernetes_validate.__file__).parent / f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
SCALARS = {"int": {"type": "integer"}, "str": {"type": "string"}, "bool": {"type": "boolean"}}
SCALARS |= {"float": {"type": "number"}, "object": {}, "datetime": {"type": "string"}}
# SDK names of Kubernetes types that are not core/v1 or meta/v1.
K8S_NAMES = {
    "K8sIoApiAppsV1DeploymentStrategy": "io.k8s.api.apps.v1.DeploymentStrategy",
    "K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior": (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
    ),
    "ResourceQuantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "V1beta1MetricQuantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
}


def sdk_models(wheel: Path) -> dict[str, tuple[dict[str, str], dict[str, str], list[str]]]:
    """{class: (openapi_types, attribute_map, required)} of every generated KServe model."""
    models = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not re.fullmatch(r"kserve/models/v1(alpha|beta)1_\w+\.py", name):
                continue
            source = archive.read(name).decode()
            cls = re.search(r"^class (\w+)", source, re.M)
            types = re.search(r"openapi_types = (\{.*?\n    \})", source, re.S)
            names = re.search(r"attribute_map = (\{.*?\n    \})", source, re.S)
            if cls and types and names:
                required = re.findall(r"client_side_validation and (\w+) is None", source)
                models[cls.group(1)] = (
                    ast.literal_eval(types.group(1)),
                    ast.literal_eval(names.group(1)),
                    required,
                )
    return models


class Builder:
    def __init__(self, models: dict, k8s: dict) -> None:
        self.models, self.k8s, self.defs = models, k8s, {}

    def type(self, spec: str) -> dict:
        if spec in SCALARS:
            return SCALARS[spec]
        if m := re.fullmatch(r"list\[(.+)\]", spec):
            return {"type": "array", "items": self.type(m.group(1))}
        if m := re.fullmatch(r"dict\(str, (.+)\)", spec):
            return {"type": "object", "additionalProperties": self.type(m.group(1))}
        if spec in self.models:
            return self.model(spec)
        if re.fullmatch(
            r"V1(alpha|beta)1\w+", spec
        ):  # referred to but not shipped (0.21: V1alpha1WorkerSpec)
            return {"type": "object", "$comment": f"{spec}: not in the SDK, left open"}
        return self.kubernetes(spec)

    def field(self, name: str, spec: str) -> dict:
        return {"enum": ENUMS[name]} if name in ENUMS else self.type(spec)

    def model(self, cls: str) -> dict:
        if cls not in self.defs:
            self.defs[cls] = {}  # placeholder: models refer to each other
            types, names, required = self.models[cls]
            schema = {
                "type": "object",
                "properties": {names[attr]: self.field(names[attr], kind) for attr, kind in types.items()},
                "additionalProperties": False,
            }
            if required:
                schema["required"] = [names[attr] for attr in required]
            self.defs[cls] = schema
        return {"$ref": f"#/$defs/{cls}"}

    def kubernetes(self, sdk_name: str) -> dict:
        name = K8S_NAMES.get(sdk_name)
        if name is None and (m := re.fullmatch(r"V1(\w+)", sdk_name)):
            core, meta = (
                f"io.k8s.api.core.v1.{m.group(1)}",
                f"io.k8s.apimachinery.pkg.apis.meta.v1.{m.group(1)}",
            )
            name = core if core in self.k8s else meta
        if name not in self.k8s:
            raise SystemExit(f"no Kubernetes schema for {sdk_name} ({name})")
        self.copy(name)
        return {"$ref": f"#/$defs/{name}"}

    def copy(self, name: str) -> None:
        """Copy a Kubernetes definition and everything it refers to, with refs made local."""
        if name in self.defs:
            return
        text = json.dumps(self.k8s[name]).replace("/api/_definitions.json#/$defs/", "#/$defs/")
        self.defs[name] = json.loads(text)
        for ref in set(re.findall(r'"#/\$defs/([^"]+)"', text)):
            self.copy(ref)


def main(wheel: Path) -> int:
    version = re.search(r"kserve-([^-]+)-", wheel.name).group(1)
    k8s = json.loads((K8S_DEFS / "_definitions.json").read_text())["$defs"]
    models = sdk_models(wheel)
    for name, (api_version, kind, spec_model) in KINDS.items():
        builder = Builder(models, k8s)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": (
                f"{api_version} {kind}, from the KServe {version} SDK models (pypi.org/project/kserve/"
                f"{version}) and the Kubernetes {K8S_VERSION} schemas of kubernetes-validate; made by "
                "deploy/k8s/kserve/schema/generate.py"
            ),
            "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": api_version},
                "kind": {"const": kind},
                "metadata": builder.kubernetes("V1ObjectMeta"),
                "spec": builder.model(spec_model),
                "status": {"type": "object"},
            },
            "additionalProperties": False,
        }
        schema["$defs"] = dict(sorted(builder.defs.items()))
        out = HERE / name
        out.write_text(json.dumps(schema, indent=1) + "\n")
        print(f"wrote {out} ({out.stat().st_size // 1024} KiB, {len(builder.defs)} definitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
