#!/usr/bin/env bash
# Build the benchmark's tools and one virtual environment per peer server, then smoke each peer.
#
#   bash bench/setup_peers.sh                  # wrk + hey, every peer, smoke every peer
#   bash bench/setup_peers.sh litserve ray     # only these peers
#   BENCH_SKIP_SMOKE=1 bash bench/setup_peers.sh
#
# Each peer gets its own venv under scratch/bench/venvs/<peer> (git-ignored) so that no
# framework's dependency pins leak into another's, or into the project's .venv. Every version is
# pinned, and so is the inference stack they share (onnxruntime, numpy, Pillow), so the servers
# differ only in the framework around the same session. Idempotent: a venv whose pinned
# requirement list has not changed is left alone. Installs run under `nice -n 19`.
# The smoke (bench/run.py smoke) starts each peer, waits until it classifies one image, checks the
# scores against in-process ONNX Runtime, and writes scratch/bench/smoke/<peer>.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRATCH="${BENCH_SCRATCH:-$ROOT/scratch/bench}"
VENVS="$SCRATCH/venvs"
PYTHON="${PYTHON:-python3}"            # the interpreter each venv is made from (3.11 here)
MAIN_PY="$ROOT/.venv/bin/python"       # runs the harness itself (ninserve's venv)

# The inference stack every peer shares: the versions ninserve's lock installs, read from
# requirements/cpu.txt so that they cannot drift from it. A peer that names its own numpy gets
# that one instead (PyTriton 0.7 requires numpy<2).
lock_pin() { awk -v name="$1" 'index($1, name "==") == 1 { print $1; exit }' "$ROOT/requirements/cpu.txt"; }
SHARED="$(lock_pin onnxruntime) $(lock_pin pillow)"
NUMPY="$(lock_pin numpy)"
[[ "$SHARED" == onnxruntime==*" "pillow==* && "$NUMPY" == numpy==* ]] ||
  { echo "cannot read onnxruntime, pillow and numpy from requirements/cpu.txt" >&2; exit 1; }
declare -A REQS=(
  [fastapi]="fastapi==0.165.0 uvicorn[standard]==0.54.0 python-multipart==0.0.34"
  [litserve]="litserve==0.2.19 python-multipart==0.0.34"
  [bentoml]="bentoml==1.4.40"
  # TorchServe's Python worker imports torch unconditionally (ts/protocol/otf_message_handler.py).
  # It must be the CPU build: PyPI's default torch wheel for Linux pulls gigabytes of CUDA.
  [torchserve]="torchserve==0.12.0 torch-model-archiver==0.12.0 pyyaml==6.0.3 torch==2.13.0"
  [pytriton]="nvidia-pytriton==0.7.0 numpy==1.26.4"
  [ray]="ray[serve]==2.60.0 python-multipart==0.0.34"
)
ALL=(fastapi litserve bentoml torchserve pytriton ray)

install_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v hey >/dev/null || missing+=(hey)
  if ((${#missing[@]})); then
    echo "== apt: ${missing[*]}"
    nice -n 19 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive nice -n 19 apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# pip, niced, without the per-package notes that an unreachable extra index prints.
quiet_pip() {
  local venv="$1"; shift
  nice -n 19 "$venv/bin/python" -m pip -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

install_peer() {
  local peer="$1" venv="$VENVS/$1" reqs="${REQS[$1]} $SHARED"
  [[ "$reqs" == *numpy==* ]] || reqs="$reqs $NUMPY"
  if [[ -f "$venv/.bench-reqs" && "$(cat "$venv/.bench-reqs")" == "$reqs" ]]; then
    echo "== $peer: up to date ($venv)"
    return 0
  fi
  echo "== $peer: installing $reqs"
  # `|| return`: errexit is off inside a function called from `||`, so each step says it.
  rm -rf "$venv"
  nice -n 19 "$PYTHON" -m venv "$venv" || return
  quiet_pip "$venv" install --require-hashes -r "$ROOT/requirements/build.txt" || return
  # unhashed: the peers are benchmark comparisons, never shipped or served; each framework's own
  # dependency tree is resolved by pip under its pinned top-level version (a hashed lock per peer
  # would pin six foreign trees for a measurement), and the stack they share is the lock's.
  # shellcheck disable=SC2086  # word splitting of the requirement list is intended
  quiet_pip "$venv" install $reqs || return
  "$venv/bin/python" -m pip freeze >"$venv/.bench-freeze" || return
  echo "$reqs" >"$venv/.bench-reqs"
}

main() {
  local peers=("$@")
  ((${#peers[@]})) || peers=("${ALL[@]}")
  mkdir -p "$VENVS"
  install_tools
  local failed=()
  for peer in "${peers[@]}"; do
    [[ -n "${REQS[$peer]:-}" ]] || { echo "unknown peer: $peer (one of ${ALL[*]})" >&2; exit 2; }
    install_peer "$peer" || { echo "== $peer: INSTALL FAILED" >&2; failed+=("$peer"); }
  done
  if [[ -z "${BENCH_SKIP_SMOKE:-}" ]]; then
    (cd "$ROOT" && "$MAIN_PY" -m bench.run smoke --servers "$(IFS=,; echo "${peers[*]}")") || true
  fi
  ((${#failed[@]} == 0)) || { echo "install failed: ${failed[*]}" >&2; exit 1; }
}

main "$@"
