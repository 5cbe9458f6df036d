"""`ninserve serve` and `ninserve predict`.

    ninserve serve --port 8000 --model model/artifacts/nin-cifar10.onnx
    ninserve predict cat.jpg --top-k 3 --maps maps/

Flags override NINSERVE_* environment variables, which override the defaults in app/config.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the serving subcommands to the `ninserve` parser."""
    p = sub.add_parser(
        "serve",
        help="serve the model over HTTP (FastAPI + uvicorn)",
        description="Every setting is also read from NINSERVE_* (see docs/api.md).",
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1; NINSERVE_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default 8000; NINSERVE_PORT)")
    p.add_argument("--model", type=Path, dest="model_path", help="ONNX artifact (NINSERVE_MODEL_PATH)")
    p.add_argument("--workers", type=int, help="processes (default 1; NINSERVE_WORKERS)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], help="execution provider (NINSERVE_DEVICE)")
    p.add_argument(
        "--precision", choices=["fp32", "int8"], help="bundled artifact to serve (NINSERVE_PRECISION)"
    )
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(handler=_serve)

    p = sub.add_parser("predict", help="classify images with a running server")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--maps", type=Path, metavar="DIR", help="save the grid and top-k overlay PNGs here")
    p.add_argument("--json", action="store_true", help="print each raw JSON result on one line")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.set_defaults(handler=_predict)


SERVE_FLAGS = ("host", "port", "model_path", "workers", "device", "precision", "log_level")
# The process cannot serve (the requested device is unusable, or the model cannot load): exit with
# this so that a restart policy or a rollout sees the failure instead of an unhealthy process.
EXIT_CANNOT_SERVE = 3


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from app.api.auth import check_keys
    from app.config import Settings
    from app.main import configure_logging, create_app

    given = {name: getattr(args, name) for name in SERVE_FLAGS if getattr(args, name) is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        print(f"ninserve serve: invalid settings\n{exc}", file=sys.stderr)
        return 2
    try:
        check_keys(settings.api_key_list)
    except ValueError as exc:
        print(f"ninserve serve: invalid settings\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from app.engine import DeviceUnavailable, require_device

    try:
        require_device(settings.device)
    except DeviceUnavailable as exc:
        print(f"ninserve serve: {exc}", file=sys.stderr)
        return EXIT_CANNOT_SERVE

    import uvicorn

    from app.server import uvicorn_options

    if settings.workers == 1:
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
        app.state.runtime.on_failure.append(lambda _: setattr(server, "should_exit", True))
        server.run()
        if app.state.runtime.error is not None:
            print(f"ninserve serve: model failed to load: {app.state.runtime.error}", file=sys.stderr)
            return EXIT_CANNOT_SERVE
    else:
        # Worker processes build their own Settings (and connection limits, app/server.py) from
        # the environment: pass the flags there.
        for name, value in given.items():
            os.environ[f"NINSERVE_{name.upper()}"] = str(value)
        options = uvicorn_options(settings, in_process=False)
        uvicorn.run("app.main:app_from_env", factory=True, workers=settings.workers, **options)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from app.client import predict

    if args.top_k < 1:
        print("ninserve predict: --top-k must be >= 1", file=sys.stderr)
        return 2
    return predict(
        args.images,
        url=args.url,
        top_k=args.top_k,
        maps_dir=args.maps,
        as_json=args.json,
        timeout=args.timeout,
    )
