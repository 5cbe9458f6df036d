#!/usr/bin/env bash
# GPU benchmark for one NVIDIA GPU: ONNX Runtime CUDA EP with IOBinding, batch 1..1024, fp32 and
# fp16, then ninserve end to end (`--device cuda`) loaded by many client processes. Prints the
# tables and writes $OUT/gpu.json (OUT defaults to scratch/bench/gpu). About 4 minutes on one
# H200; the benchmark itself is capped at 7.5 minutes.
#
#   bash bench/gpu.sh fetch   # where PyPI is reachable: wheels for CPython 3.12 into .whl/
#   bash bench/gpu.sh         # on the GPU machine, from the repository root (no internet needed)
#
# The GPU machine needs python3 with numpy, onnx and Pillow, and the CUDA 13 + cuDNN 9 runtime
# as nvidia-* wheels (PyTorch's CUDA 13 build brings them; onnxruntime.preload_dlls finds them).
# `fetch` puts the server's pure-Python dependencies in .whl/gpu/ and onnxruntime-gpu (~255 MB,
# built for CUDA 13) split into 40 MiB parts in .whl/ortgpu/, so that a transfer limited in size
# can bring it over in several trips; this script rebuilds the wheel from the parts it finds in
# .whl/ortgpu/ and $ORTGPU_PARTS, checks its SHA-256, and installs everything into a private
# target directory. If the machine's `onnxruntime` already has the CUDA EP, that one is used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/scratch/bench/gpu}"
SITE="${BENCH_GPU_SITE:-/tmp/ninbench-site}"
PARTS_DIR="${ORTGPU_PARTS:-/tmp/ninbench-ortgpu-parts}"
ORT_GPU="onnxruntime-gpu==1.31.1"  # newest onnxruntime-gpu on PyPI; CUDA 13, cuDNN 9
# ninserve's serving dependencies that a CUDA image does not usually have (same pins as .venv).
SERVER_WHEELS=(fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 pydantic==2.14.4
  pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 orjson==3.13.0
  python-multipart==0.0.34 annotated-types==0.8.0 typing-inspection==0.4.5 annotated-doc==0.0.7)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

fetch() {
  mkdir -p .whl/gpu .whl/ortgpu-full .whl/ortgpu
  # unhashed: a benchmark's wheels for a GPU machine without an index, never shipped; the pins
  # above are requirements/gpu.txt's, and the onnxruntime-gpu wheel's SHA256 travels with its parts.
  local dl=(-m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
    "${PLATFORMS[@]}")
  nice -n 19 "$PY" "${dl[@]}" -d .whl/gpu "${SERVER_WHEELS[@]}"
  nice -n 19 "$PY" "${dl[@]}" -d .whl/ortgpu-full "$ORT_GPU"
  local wheel
  wheel="$(ls .whl/ortgpu-full/onnxruntime_gpu-*.whl)"
  rm -f .whl/ortgpu/*
  split -b 40M -d "$wheel" ".whl/ortgpu/$(basename "$wheel").part-"
  (cd .whl/ortgpu-full && sha256sum "$(basename "$wheel")") >.whl/ortgpu/SHA256
  ls -la .whl/gpu .whl/ortgpu
}

has_cuda_ep() {
  PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c \
    'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' \
    2>/dev/null
}

install() {
  mkdir -p "$SITE"
  local wheels=(.whl/gpu/*.whl)
  if ! has_cuda_ep; then
    local sums name whl=/tmp/ninbench-wheel
    sums="$( (ls .whl/ortgpu/SHA256 "$PARTS_DIR/SHA256" 2>/dev/null || true) | head -1)"
    [[ -n "$sums" ]] || { echo "no onnxruntime-gpu: run 'bash bench/gpu.sh fetch' and bring .whl/" >&2; exit 1; }
    sums="$(realpath "$sums")"
    name="$(awk '{print $2}' "$sums")"
    mkdir -p "$whl" && : >"$whl/$name"
    # Parts may lie in .whl/ortgpu/ or in $ORTGPU_PARTS (left by earlier trips); each once, in order.
    for part in $( (ls .whl/ortgpu/ "$PARTS_DIR"/ 2>/dev/null || true) | grep -F "$name.part-" | sort -u); do
      if [[ -f ".whl/ortgpu/$part" ]]; then cat ".whl/ortgpu/$part"; else cat "$PARTS_DIR/$part"; fi >>"$whl/$name"
    done
    (cd "$whl" && sha256sum -c --quiet "$sums") ||
      { echo "onnxruntime-gpu wheel incomplete or corrupt (a part missing?)" >&2; exit 1; }
    wheels+=("$whl/$name")
  fi
  # unhashed: only the local wheels `fetch` brought (--no-index), the ORT one checked against SHA256.
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "${wheels[@]}"
}

main() {
  if [[ "${1:-}" == "fetch" ]]; then fetch; return; fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  install
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  mkdir -p "$OUT"
  timeout 450 "$PY" -m bench.gpu_bench --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu.log"
}

main "$@"
