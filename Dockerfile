# ninserve images: the serving runtime (no torch) with the trained artifact baked in.
#
#   docker build --target cpu -t ninserve:cpu .     # onnxruntime on a Python slim base
#   docker build --target gpu -t ninserve:gpu .     # onnxruntime-gpu + CUDA 13 / cuDNN 9 wheels
#   docker run --rm -p 8000:8000 ninserve:cpu
#
# Both run `ninserve serve --host 0.0.0.0` as uid 10001 on port 8000 and take every setting from
# NINSERVE_* variables. The base image is a build argument so that an offline build can start
# from a locally made base (scripts/container-smoke.sh builds on a debootstrapped Debian); no
# `# syntax=` line either, since that pulls a frontend image.
# Both images start from the same base, which only needs python3 >= 3.11 with the venv module:
# the GPU image's CUDA 13 and cuDNN 9 libraries are hash-locked nvidia-* wheels
# (requirements/gpu.txt), and the host brings the NVIDIA driver (>= 580).
#
# Reproducible: the base is pinned by digest (the tag is for people; deploy/README.md says how
# its digest was obtained and how to bump it), and Python packages come from the hashed locks in
# requirements/ (`make lock`), never from a fresh resolution.

# python:3.11.16-slim-bookworm (= 3.11-slim-bookworm, multi-platform index, 2026-09/10)
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# ---- cpu: resolve dependencies into /opt/venv -------------------------------------------------
FROM ${BASE_IMAGE} AS cpu-build
LABEL org.opencontainers.image.title="ninserve"
# A CA bundle for pip behind a TLS-intercepting proxy: pass it as the build secret `ca_bundle`
# (docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt). Optional.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/cpu.txt requirements/cpu.txt
COPY requirements/build.txt requirements/build.txt
# Dependencies first, from the lock alone (exact versions, hash-checked), so code changes reuse
# this layer. pip, setuptools and wheel come from requirements/build.txt (hash-checked too) and
# build ninserve below without build isolation, so no step fetches an unpinned build backend.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --requirement requirements/build.txt \
    && /opt/venv/bin/pip install --require-hashes --requirement requirements/cpu.txt
# README is the package's long description; pyproject.toml again so the glob never matches nothing.
COPY pyproject.toml README* ./
COPY app ./app
COPY model ./model
# The artifact is package data of `model`; fail here, not at start, when it was never exported.
# Test suites and ONNX Runtime's offline optimisation tools are never used by the server.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && test -s model/artifacts/nin-cifar10.onnx \
    && /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && rm -rf /opt/venv/lib/python3*/site-packages/*/tests \
              /opt/venv/lib/python3*/site-packages/*/*/tests \
              /opt/venv/lib/python3*/site-packages/onnxruntime/transformers \
              /opt/venv/lib/python3*/site-packages/onnxruntime/quantization \
    && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

# ---- cpu: the image ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS cpu
LABEL org.opencontainers.image.title="ninserve" \
      org.opencontainers.image.description="Network-in-Network CIFAR-10 classifier API (CPU)"
# uid and gid 10001, both named: `id`, ps and file listings show ninserve, not a bare number.
RUN groupadd --system --gid 10001 ninserve \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ninserve
COPY --from=cpu-build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/ninserve/healthcheck.py
# Bytecode was compiled at install and the root filesystem may be read-only: write nothing.
# ONNX Runtime's usage telemetry is off: a server has no business reporting to a third party.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    NINSERVE_PORT=8000 \
    NINSERVE_GRPC_PORT=8001 \
    NINSERVE_DEVICE=cpu
WORKDIR /opt/ninserve
USER 10001:10001
# 8001: the Open Inference Protocol over gRPC (docs/api.md#grpc)
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/ninserve/healthcheck.py"]
ENTRYPOINT ["ninserve"]
CMD ["serve", "--host", "0.0.0.0"]

# ---- gpu: the same base, with CUDA, cuBLAS and cuDNN from hash-locked wheels ---------------------
FROM ${BASE_IMAGE} AS gpu-build
LABEL org.opencontainers.image.title="ninserve"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/gpu.txt requirements/gpu.txt
COPY requirements/build.txt requirements/build.txt
# onnxruntime-gpu[cuda,cudnn]: the nvidia-* wheels (cudart, cuBLAS, cuFFT, cuRAND, nvrtc,
# nvJitLink, cuDNN 9) are in the lock with their hashes, so this builds wherever the CPU image
# does, with no CUDA base image and no NVIDIA registry; the host brings only the driver.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --requirement requirements/build.txt \
    && /opt/venv/bin/pip install --require-hashes --requirement requirements/gpu.txt
COPY pyproject.toml README* ./
COPY app ./app
COPY model ./model
COPY deploy/docker/cuda_check.py /opt/ninserve/cuda_check.py
# As in `cpu-build`: the artifact must be there; tests and offline tools are dropped. Then the
# CUDA check: the provider is listed and every CUDA library loads (no GPU needed for that).
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && test -s model/artifacts/nin-cifar10.onnx \
    && /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && rm -rf /opt/venv/lib/python3*/site-packages/*/tests \
              /opt/venv/lib/python3*/site-packages/*/*/tests \
              /opt/venv/lib/python3*/site-packages/onnxruntime/transformers \
              /opt/venv/lib/python3*/site-packages/onnxruntime/quantization \
    && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    && /opt/venv/bin/python /opt/ninserve/cuda_check.py

# ---- gpu: the image ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS gpu
LABEL org.opencontainers.image.title="ninserve" \
      org.opencontainers.image.description="Network-in-Network CIFAR-10 classifier API (CUDA)"
# uid and gid 10001, both named: `id`, ps and file listings show ninserve, not a bare number.
RUN groupadd --system --gid 10001 ninserve \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ninserve
COPY --from=gpu-build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py deploy/docker/cuda_check.py /opt/ninserve/
# As in `cpu`; NVIDIA_* tell the container toolkit to mount the driver's compute libraries.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    NINSERVE_PORT=8000 \
    NINSERVE_GRPC_PORT=8001 \
    NINSERVE_DEVICE=cuda \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /opt/ninserve
USER 10001:10001
# 8001: the Open Inference Protocol over gRPC (docs/api.md#grpc)
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "/opt/ninserve/healthcheck.py"]
ENTRYPOINT ["ninserve"]
CMD ["serve", "--host", "0.0.0.0"]

# ---- default: a plain `docker build .` gives the CPU image -----------------------------------
FROM cpu AS default
