// Validate KEDA objects against KEDA's CRD schemas, offline.
//
//   npm ci --ignore-scripts --prefix deploy/k8s/keda/schema     # once (package-lock.json)
//   python -c '...yaml to a JSON list...' | node deploy/k8s/keda/schema/validate.mjs
//
// Reads a JSON array of objects on stdin and prints one line per object (the loop is
// deploy/k8s/validate-objects.mjs). The validators are those @kubernetes-models generates
// from KEDA's CRDs (types, enums, required fields; trigger metadata must be strings). They do not
// reject unknown fields; tests/deploy/test_scaling.py checks the names.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { validateStdin } from "../../validate-objects.mjs";

await validateStdin({ ScaledObject }, "keda.sh/v1alpha1");
