#!/usr/bin/env bash
# Build the GPU image with podman on the CPU image's base and check what can be checked without a
# GPU: ONNX Runtime lists the CUDA provider, every CUDA library loads (deploy/docker/cuda_check.py,
# which the build runs too), and without a driver `ninserve serve` exits 3 at once with its reason.
#
#   scripts/gpu-image-check.sh        # as root, with podman + runc; ~2.8 GB image, ~1.4 GB download
#
# Uses the local Debian base scripts/container-smoke.sh makes (run that first: no registry is
# reachable from the build machines). Prints one JSON line prefixed `GPU ` with the image size,
# the build time, the CUDA check's report and the refusal's exit status, time and message.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=localhost/ninserve-base:${NINSERVE_SMOKE_SUITE:-bookworm}
IMAGE=${NINSERVE_GPU_IMAGE:-localhost/ninserve:gpu-check}
LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
PY=${PYTHON:-python3}

die() { echo "gpu-image-check: FAIL: $*" >&2; exit 1; }
podman image exists "$BASE" || die "no $BASE: run scripts/container-smoke.sh first, which makes it"

build_args=(--build-arg "BASE_IMAGE=$BASE" --format docker --pull=never --runtime runc "${LIMITS[@]}"
    --file "$ROOT/Dockerfile" --target gpu --tag "$IMAGE")
for ca in "${NINSERVE_SMOKE_CA_BUNDLE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$ca" ] && [ -s "$ca" ]; then build_args+=(--secret "id=ca_bundle,src=$ca"); break; fi
done
t0=$(date +%s)
podman build "${build_args[@]}" "$ROOT" >&2 || die "podman build --target gpu failed"
build_s=$(($(date +%s) - t0))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")

check=$(podman run --rm --runtime runc "${LIMITS[@]}" --no-healthcheck --entrypoint python3 "$IMAGE" \
    /opt/ninserve/cuda_check.py) || die "cuda_check failed in the image: $check"

# No GPU and no driver here: the image's NINSERVE_DEVICE=cuda must end the process at once.
t1=$("$PY" -c 'import time; print(time.time())')
set +e
refused=$(timeout 60 podman run --rm --runtime runc "${LIMITS[@]}" --no-healthcheck --read-only \
    --tmpfs /tmp --cap-drop ALL "$IMAGE" 2>&1)
code=$?
set -e
refused_s=$("$PY" -c 'import sys, time; print(round(time.time() - float(sys.argv[1]), 2))' "$t1")
line=$(grep -m1 '^ninserve serve:' <<<"$refused" || true)
[ "$code" = 3 ] && [ -n "$line" ] || die "without a driver: exit $code, want 3 with its reason; output: $refused"

"$PY" - "$size" "$build_s" "$check" "$code" "$refused_s" "$line" <<'PYEOF'
import json, sys
size, build_s, check, code, seconds, line = sys.argv[1:7]
print("GPU " + json.dumps({
    "image_mb": round(int(size) / 1e6, 1), "build_s": int(build_s), "cuda_check": json.loads(check),
    "no_driver_exit": int(code), "no_driver_s": float(seconds), "no_driver_message": line,
}))
PYEOF
