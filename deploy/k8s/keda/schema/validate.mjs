// Validate KEDA objects against KEDA's CRD schemas, offline.
//
//   npm ci --ignore-scripts --prefix deploy/k8s/keda/schema     # once (package-lock.json)
//   python -c '...yaml to a JSON list...' | node deploy/k8s/keda/schema/validate.mjs
//
// Reads a JSON array of objects on stdin; prints one line per object ("ok Kind/name" or the
// errors) and exits 1 if any is invalid. The validators are those @kubernetes-models generates
// from KEDA's CRDs (types, enums, required fields; trigger metadata must be strings). They do not
// reject unknown fields; tests/deploy/test_scaling.py checks the names.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";

const KINDS = { ScaledObject };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const object of JSON.parse(input)) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = KINDS[object.kind];
  if (!Model || object.apiVersion !== "keda.sh/v1alpha1") {
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
