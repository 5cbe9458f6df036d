// Validate Prometheus Operator objects against the operator's CRD schemas, offline.
//
//   npm ci --ignore-scripts --prefix deploy/k8s/components/monitoring/schema    # once (package-lock.json)
//   python -c '...yaml to a JSON list...' | node deploy/k8s/components/monitoring/schema/validate.mjs
//
// Reads a JSON array of objects on stdin and prints one line per object (the loop is
// deploy/k8s/validate-objects.mjs). The validators are those @kubernetes-models generates
// from the operator's CRDs (types, enums, patterns, required fields). Like the API server's
// structural pruning, they do not reject unknown fields; tests/deploy/test_k8s.py checks names.
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { validateStdin } from "../../../validate-objects.mjs";

await validateStdin({ PodMonitor, PrometheusRule, ServiceMonitor }, "monitoring.coreos.com/v1");
