"""ninserve: a Network-in-Network CIFAR-10 classifier served over HTTP and gRPC.

Layers, each importing only those below it (`make lint` checks it: [tool.importlinter] in
pyproject.toml):

    app/cli/, app/client/  the `ninserve` command and the Python client, on top
    app/http/, app/grpc/   frontends: wire protocol, limits, routes -> a call into app/serving/
    app/serving/           one request against a held model version: admit -> decode -> submit
    app/repository/        which models and versions exist, loading, swapping, the version policy
    app/core/              bytes -> pixels -> batch -> ONNX Runtime -> scores + maps; errors
    app/config.py          settings (with app/budget.py, app/layout_rules.py): imports nothing above

One POST /v1/classify, crossing from the frontend into serving once and back once:

    app/http/server.py           uvicorn protocol: connection cap, header and body deadlines
    app/http/middleware/         API keys, body limits, CORS, security headers, shutdown guard
    app/http/routes/fast_classify.py -> routes/v1.py classify_response
    app/http/lead_in.py          look the version up (404/503), deadline, read the body, hold it
    app/serving/pipeline.py      classify -> run_images, on the held version
      app/core/admission.py      price from the header, admit or refuse before any decode
      app/core/decode.py         bytes -> pixels, in the shared pool or the large-decode lane
      app/core/batcher.py        micro-batches bounded in images and in pixels -> engine.py (ORT)
      app/core/store.py          the result, by id
    app/http/problems.py         domain errors (app/core/errors.py) -> HTTP statuses

The version a request holds comes from app/repository/registry.py (a dict lookup through
ServingState.model) and is an app/core/served.py `Served`; model/ (training, export) imports
app.core and app.config only.
"""
