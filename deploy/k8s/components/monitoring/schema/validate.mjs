// Validate Prometheus Operator objects against the operator's CRD schemas, offline.
//
//   npm ci --ignore-scripts --prefix deploy/k8s/components/monitoring/schema    # once (package-lock.json)
//   python -c '...yaml to a JSON list...' | node deploy/k8s/components/monitoring/schema/validate.mjs
//
// Reads a JSON array of objects on stdin; prints one line per object ("ok Kind/name" or the
// errors) and exits 1 if any is invalid. The validators are those @kubernetes-models generates
// from the operator's CRDs (types, enums, patterns, required fields). Like the API server's
// structural pruning, they do not reject unknown fields; tests/deploy/test_k8s.py checks names.
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const KINDS = { PodMonitor, PrometheusRule, ServiceMonitor };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const object of JSON.parse(input)) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = KINDS[object.kind];
  if (!Model || object.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`unknown ${object.apiVersion} ${name}`);
    failed++;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`invalid ${name}: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
