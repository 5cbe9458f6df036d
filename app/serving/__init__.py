"""The serving layer: one request run against a held model version, for every frontend.

    state.py     ServingState: the process's moving parts (pool, store, memory plan, admission, the
                 registry) and their life cycle; `model(name, version)` finds the version to hold
    pipeline.py  run_images: admit -> decode -> deadline -> submit, for v1 and V2 (HTTP and gRPC);
                 classify / classify_batch add the v1 result and store it

It imports the repository and the core, never a frontend: HTTP and gRPC map its domain errors.
"""
