#!/usr/bin/env bash
# Build the CPU image with podman, check it refuses CUDA fast, run it, classify an image through it,
# fetch a map, stop it.
#
#   scripts/container-smoke.sh            # as root, with podman + runc (+ debootstrap the first time)
#
# No registry is reachable from the build machines, so the base image is made locally: a minimal
# Debian bookworm (python3 3.11) from debootstrap, imported into podman as localhost/ninserve-base
# and passed as BASE_IMAGE. The base is cached twice: as a podman image and as a tarball under
# $NINSERVE_SMOKE_CACHE (default scratch/container/), so only the first run ever downloads it.
# Prints one JSON line prefixed `SMOKE ` with image size, time to ready and durations.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${NINSERVE_SMOKE_CACHE:-$ROOT/scratch/container}
SUITE=${NINSERVE_SMOKE_SUITE:-bookworm}
MIRROR=${NINSERVE_SMOKE_MIRROR:-http://deb.debian.org/debian}
BASE=localhost/ninserve-base:$SUITE
IMAGE=${NINSERVE_SMOKE_IMAGE:-localhost/ninserve:cpu-smoke}
NAME=ninserve-smoke-$$
# runc rejects the VM's unlimited defaults; conmon and the server need far less than this.
LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
PY=${PYTHON:-python3}
T0=$(date +%s)

log() { printf '[smoke %3ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

cleanup() {
    if podman container exists "$NAME" 2>/dev/null; then
        log "container logs (tail):"
        podman logs --tail 40 "$NAME" >&2 2>&1 || true
        podman rm --force --time 5 "$NAME" >/dev/null 2>>"$CACHE/podman.log" || true
    fi
}
trap cleanup EXIT
mkdir -p "$CACHE"

command -v podman >/dev/null || die "podman is not installed"
command -v runc >/dev/null || die "runc is not installed"
[ -s "$ROOT/model/artifacts/nin-cifar10.onnx" ] || die "model/artifacts/nin-cifar10.onnx is missing"

# ---- 1. the local Debian base -------------------------------------------------------------------
make_base() {
    local tarball=$CACHE/base-$SUITE.tar
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || die "debootstrap is not installed"
        local rootfs=$CACHE/rootfs-$SUITE
        rm -rf "$rootfs" && mkdir -p "$CACHE"
        log "debootstrap $SUITE from $MIRROR (once; cached in $tarball)"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
        # What an image never needs: downloaded packages, indexes, docs, translations.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
            "$rootfs"/usr/share/info/*
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    log "import $tarball as $BASE"
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        "$tarball" "$BASE" >/dev/null
}
if podman image exists "$BASE"; then log "base $BASE present"; else make_base; fi

# ---- 2. build the cpu target --------------------------------------------------------------------
# Docker image format: the OCI format has no HEALTHCHECK, and the image's own must be tested.
build_args=(--build-arg "BASE_IMAGE=$BASE" --format docker --pull=never --runtime runc "${LIMITS[@]}"
    --file "$ROOT/Dockerfile")
# Builds behind a TLS-intercepting proxy need its CA for pip; the Dockerfile reads it as a secret.
for ca in "${NINSERVE_SMOKE_CA_BUNDLE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$ca" ] && [ -s "$ca" ]; then build_args+=(--secret "id=ca_bundle,src=$ca"); break; fi
done
log "podman build --target cpu"
t_build=$(date +%s)
# The build stage is tagged too: it keeps the dependency layer alive as cache through the prune
# below, which drops earlier builds' images (they carry the image's title label) and nothing else.
: >"$CACHE/build.log"
for target in cpu-build cpu; do
    tag=$IMAGE; [ "$target" = cpu ] || tag=$IMAGE-build
    podman build "${build_args[@]}" --target "$target" --tag "$tag" "$ROOT" >>"$CACHE/build.log" 2>&1 \
        || { tail -40 "$CACHE/build.log" >&2; die "podman build --target $target failed ($CACHE/build.log)"; }
done
build_s=$(($(date +%s) - t_build))
podman image prune --force --filter label=org.opencontainers.image.title=ninserve >/dev/null 2>&1 || true
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "built $IMAGE in ${build_s}s: $((size / 1000000)) MB"

# The image must not carry torch, and must run as the non-root user, whose group has a name.
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || die "image user is '$user', want 10001:10001"
if podman run --rm --runtime runc "${LIMITS[@]}" --no-healthcheck --entrypoint python3 "$IMAGE" \
    -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)'; then
    die "torch is importable in the image"
fi
ids=$(podman run --rm --runtime runc "${LIMITS[@]}" --no-healthcheck --entrypoint python3 "$IMAGE" \
    -c 'import grp, os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name)')
[ "$ids" = "ninserve ninserve" ] || die "uid/gid 10001 resolve to '$ids', want 'ninserve ninserve'"

# ---- 2b. fail fast: CUDA asked of the CPU image must end the process, not leave it unhealthy -------
log "fail-fast: NINSERVE_DEVICE=cuda on the CPU image"
t_fail=$(date +%s)
set +e
refused=$(timeout 60 podman run --rm --runtime runc "${LIMITS[@]}" --no-healthcheck --read-only --tmpfs /tmp \
    --cap-drop ALL --env NINSERVE_DEVICE=cuda "$IMAGE" 2>&1)
cuda_exit=$?
set -e
fail_s=$(($(date +%s) - t_fail))
[ "$cuda_exit" -ne 0 ] && [ "$cuda_exit" -ne 124 ] \
    || die "NINSERVE_DEVICE=cuda on the CPU image: exit $cuda_exit, want a prompt non-zero exit"
grep -q "NINSERVE_DEVICE=cuda but" <<<"$refused" || die "no fail-fast message; output: $refused"
log "refused CUDA with exit $cuda_exit in ${fail_s}s: $(grep -m1 'NINSERVE_DEVICE=cuda but' <<<"$refused")"

# ---- 3. run it the way production does: read-only root, no capabilities ---------------------------
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "podman run on 127.0.0.1:$port"
started=$("$PY" -c 'import time; print(time.time())')
# Without systemd, podman logs errors about HEALTHCHECK timers; the smoke runs the check by hand.
podman run --detach --name "$NAME" --runtime runc "${LIMITS[@]}" \
    --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
    --publish "127.0.0.1:$port:8000" --env NINSERVE_LOG_LEVEL=info --env NINSERVE_INTRA_OP_THREADS=1 \
    "$IMAGE" >/dev/null 2>>"$CACHE/podman.log"

# ---- 4. readiness, a classification and a map through the published port -------------------------
deadline=$((SECONDS + 180))
until "$PY" -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=1)' \
    "http://127.0.0.1:$port/readyz" 2>/dev/null; do
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || die "the server exited before ready"
    [ "$SECONDS" -lt "$deadline" ] || die "not ready after 180 s"
    sleep 0.2
done
result=$("$PY" "$ROOT/scripts/smoke_client.py" "http://127.0.0.1:$port" --since "$started") \
    || die "client check failed"
log "client: $result"
podman healthcheck run "$NAME" >/dev/null || die "the image's HEALTHCHECK reports unhealthy"
mem=$(podman stats --no-stream --format '{{.MemUsage}}' "$NAME" 2>/dev/null | cut -d/ -f1 | tr -d ' ' || true)

# ---- 5. stop: SIGTERM must end it cleanly --------------------------------------------------------
t_stop=$(date +%s)
podman stop --time 20 "$NAME" >/dev/null 2>>"$CACHE/podman.log"
stop_s=$(($(date +%s) - t_stop))
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || die "server exited with $code after SIGTERM"
podman rm "$NAME" >/dev/null 2>>"$CACHE/podman.log"

"$PY" - "$result" "$size" "$build_s" "$stop_s" "$(($(date +%s) - T0))" "${mem:-?}" "$cuda_exit" "$fail_s" <<'EOF'
import json, sys
client = json.loads(sys.argv[1])
size, build_s, stop_s, total_s, mem, cuda_exit, fail_s = sys.argv[2:9]
print("SMOKE " + json.dumps({
    "image_mb": round(int(size) / 1e6, 1), "build_s": int(build_s), "ready_s": client["ready_s"],
    "classify_ms": client["classify_ms"], "top": client["top"], "map_bytes": client["map_bytes"],
    "mem_after_classify": mem, "stop_s": int(stop_s), "total_s": int(total_s),
    "cuda_refused_exit": int(cuda_exit), "cuda_refused_s": int(fail_s),
}))
EOF
