"""The model repository: which NiNs and versions this process serves, and their life cycle.

    layout.py    DIR/<model>/<version>/model.onnx (Triton's layout) -> what is there, what is skipped
    config_file.py  a model's config.json: bounded in size and depth, re-read only when it changes
    artifact.py  an ONNX file parsed and priced before it loads (contract names, external data, size)
    policy.py    version policy (latest N / specific / all) and precision (auto / fp32 / int8)
    loading.py   one version: ONNX Runtime session, NiN contract check, warm-up (deadline, RSS
                 watchdog, cancellation), its batcher
    registry.py  name -> versions the request path reads; load, swap, unload, poll, the index

A loaded version is an app/core/served.py `Served` (in-flight count, drain, close); the serving
layer (app/serving/) holds one per request. docs/repository.md describes the layout, the policy,
the life cycle and the memory accounting. Nothing here imports the web framework or the serving
layer (`make lint` checks it): app/http/ maps its errors to HTTP.
"""
