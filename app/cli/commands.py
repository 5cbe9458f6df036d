"""`ninserve serve` and `ninserve predict`.

    ninserve serve --port 8000 --model model/artifacts/nin-cifar10.onnx
    ninserve predict app/web/samples/cat.jpg --top-k 3 --maps maps/
    ninserve predict photos/ --out results.csv
    ninserve predict photo.jpg --model shapes:2
    ninserve models

Flags override NINSERVE_* environment variables, which override the defaults in app/config.py;
`predict` reads the server's URL from NINSERVE_URL.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from model.help import DefaultsHelp

if TYPE_CHECKING:
    from app.config import Settings

DEFAULT_URL = "http://127.0.0.1:8000"  # `ninserve serve`'s default host and port


def register(sub: argparse._SubParsersAction) -> None:
    """Add the serving subcommands to the `ninserve` parser."""
    p = sub.add_parser(
        "serve",
        help="serve the model over HTTP (FastAPI + uvicorn)",
        description="Every setting is also read from NINSERVE_* (see docs/api.md).",
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1; NINSERVE_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default 8000; NINSERVE_PORT)")
    p.add_argument(
        "--grpc-port",
        type=int,
        help="also serve the KServe V2 protocol over gRPC on this port (off by default; NINSERVE_GRPC_PORT)",
    )
    p.add_argument("--model", type=Path, dest="model_path", help="ONNX artifact (NINSERVE_MODEL_PATH)")
    p.add_argument(
        "--repository",
        type=Path,
        dest="model_repository",
        help="DIR/<model>/<version>/model.onnx (NINSERVE_MODEL_REPOSITORY; docs/repository.md)",
    )
    p.add_argument("--model-name", help="the default model's name (NINSERVE_MODEL_NAME)")
    p.add_argument("--workers", type=int, help="processes (default 1; NINSERVE_WORKERS)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], help="execution provider (NINSERVE_DEVICE)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "int8"],
        help="variant to serve where a model has both (default auto: int8 on CPU; NINSERVE_PRECISION)",
    )
    p.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level of the server and its access log (default info; NINSERVE_LOG_LEVEL)",
    )
    p.set_defaults(handler=_serve)

    p = sub.add_parser(
        "predict",
        help="classify images or folders of images with a running server",
        description="One image goes to POST /v1/classify; several, or folders (searched recursively), "
        "to POST /v1/classify/batch in chunks the server accepts.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE_OR_DIR")
    p.add_argument(
        "--url",
        default=os.environ.get("NINSERVE_URL") or DEFAULT_URL,
        help="server base URL (environment: NINSERVE_URL)",
    )
    p.add_argument("--top-k", type=int, default=5, help="classes per image")
    p.add_argument("--maps", type=Path, metavar="DIR", help="save each image's grid and top-k overlays here")
    p.add_argument(
        "--out", type=Path, metavar="FILE", help="write a table of all results: FILE.csv or FILE.json"
    )
    p.add_argument("--json", action="store_true", help="print each result as one line of JSON")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument(
        "--model",
        metavar="NAME[:VERSION]",
        help="a model of the server's repository, optionally one version (`ninserve models` lists "
        "them); without it, the server's default model",
    )
    p.set_defaults(handler=_predict)

    p = sub.add_parser(
        "models",
        help="list the models and versions a running server has loaded",
        description="GET /v1/models: one line per loaded version (name, version, precision, classes, "
        "validation top-1, whether it is the default model and the latest version).",
        formatter_class=DefaultsHelp,
    )
    p.add_argument(
        "--url",
        default=os.environ.get("NINSERVE_URL") or DEFAULT_URL,
        help="server base URL (environment: NINSERVE_URL)",
    )
    p.add_argument("--json", action="store_true", help="print the server's JSON instead of a table")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    p.set_defaults(handler=_models)


SERVE_FLAGS = (
    "host",
    "port",
    "grpc_port",
    "model_path",
    "model_repository",
    "model_name",
    "workers",
    "device",
    "precision",
    "log_level",
)
# The process cannot serve (the requested device is unusable, or the model cannot load): exit with
# this so that a restart policy or a rollout sees the failure instead of an unhealthy process.
EXIT_CANNOT_SERVE = 3  # uvicorn's STARTUP_FAILURE: its worker supervisor does not restart such a worker
EXIT_CANNOT_BIND = 4  # the address is taken or not this machine's


def _serve(args: argparse.Namespace) -> int:
    from app.config import Settings, settings_error
    from app.core.engine import DeviceUnavailable, require_device
    from app.http.main import configure_logging, create_app
    from app.http.middleware.auth import check_keys
    from app.logs import console

    given = {name: getattr(args, name) for name in SERVE_FLAGS if getattr(args, name) is not None}
    try:
        settings = Settings(**given)
        check_keys(settings.api_key_list)  # outside Settings, so that no message quotes a key
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        console(f"ninserve serve: invalid settings: {settings_error(exc)}", level="error")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        require_device(settings.device)
    except DeviceUnavailable as exc:
        console(f"ninserve serve: {exc}", settings.log_format, level="error")
        return EXIT_CANNOT_SERVE
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        console(
            f"ninserve serve: {bind_error(settings.host, settings.port, exc)}",
            settings.log_format,
            level="error",
        )
        return EXIT_CANNOT_BIND
    if settings.grpc_port:  # free now, or say so in one line before the model loads
        try:
            bind(settings.host, settings.grpc_port).close()
        except OSError as exc:
            sock.close()
            message = bind_error(settings.host, settings.grpc_port, exc).replace(
                "PORT= (make serve) or NINSERVE_PORT / --port", "NINSERVE_GRPC_PORT / --grpc-port"
            )
            console(f"ninserve serve: gRPC: {message}", settings.log_format, level="error")
            return EXIT_CANNOT_BIND
    banner = serve_banner(settings.host, settings.port, serving(settings), grpc_port=settings.grpc_port)
    console(banner, settings.log_format)

    import uvicorn

    from app.http.server import uvicorn_options

    if settings.workers == 1:
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
        app.state.serving.on_failure.append(lambda _: setattr(server, "should_exit", True))
        server.run(sockets=[sock])
        if app.state.serving.error is not None:
            console(
                f"ninserve serve: model failed to load: {app.state.serving.error}",
                settings.log_format,
                level="error",
            )
            return EXIT_CANNOT_SERVE
        return 0
    from uvicorn.supervisors import Multiprocess

    # Worker processes build their own Settings (and connection limits, app/http/server.py) from
    # the environment: pass the flags there.
    for name, value in given.items():
        os.environ[f"NINSERVE_{name.upper()}"] = str(value)
    options = uvicorn_options(settings, in_process=False)
    config = uvicorn.Config("app.http.main:app_from_env", factory=True, workers=settings.workers, **options)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    # A worker whose model cannot load exits with EXIT_CANNOT_SERVE (app/http/main.py), and the
    # supervisor then stops the others: the failure is the whole server's, as with one worker.
    if any(worker.exitcode == EXIT_CANNOT_SERVE for worker in supervisor.processes):
        console(
            "ninserve serve: a worker could not load the model (the reason is logged above)",
            settings.log_format,
            level="error",
        )
        return EXIT_CANNOT_SERVE
    return 0


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts (model, banner, workers), as uvicorn
    would bind it: a taken port then fails in one line instead of after a start-up's output."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)  # worker processes accept on it
    except OSError:
        sock.close()
        raise
    return sock


def bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is taken; choose another with PORT= (make serve) "
            "or NINSERVE_PORT / --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind to {host}: no such address on this machine (NINSERVE_HOST / --host)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def serving(settings: Settings) -> str:
    """What the server will serve, in a few words, for the banner."""
    if settings.model_repository is not None:
        return f"the models in {settings.model_repository}"
    if settings.model_path is not None:
        return settings.model_path.name
    return f"{settings.model_name or 'nin-cifar10'} (bundled, precision {settings.precision})"


def serve_banner(host: str, port: int, model: Path | str, *, grpc_port: int | None = None) -> str:
    """Where to look once the server is up: the page, the API docs and the API itself."""
    model = model.name if isinstance(model, Path) else model
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # reachable from this machine
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    lines = [
        f"ninserve: starting {model} on {host}:{port}; once ready:",
        f"  page      {base}/",
        f"  API docs  {base}/docs",
        f"  API       {base}/v1/classify  {base}/v1/models  {base}/v2 (KServe V2)",
        f"  try       curl -F file=@app/web/samples/cat.jpg {base}/v1/classify",
    ]
    if grpc_port:
        where = f"[{shown}]:{grpc_port}" if ":" in shown else f"{shown}:{grpc_port}"
        lines.insert(
            4, f"  gRPC      {where} (KServe V2 / Open Inference Protocol, inference.GRPCInferenceService)"
        )
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from app.cli.predict import predict
    from app.cli.reach import parse_model

    if args.top_k < 1:
        print("ninserve predict: --top-k must be >= 1", file=sys.stderr)
        return 2
    try:
        model, version = parse_model(args.model)
    except ValueError as exc:
        print(f"ninserve predict: {exc}", file=sys.stderr)
        return 2
    return predict(
        args.images,
        url=args.url,
        top_k=args.top_k,
        maps_dir=args.maps,
        out_path=args.out,
        as_json=args.json,
        timeout=args.timeout,
        model=model,
        version=version,
    )


def _models(args: argparse.Namespace) -> int:
    import orjson

    from app.cli.reach import Unreachable, models_table, preflight
    from app.client.v1 import ApiError, Client

    if not args.url.lower().startswith(("http://", "https://")):
        print(f"ninserve models: the URL {args.url} lacks http:// (e.g. http://{args.url})", file=sys.stderr)
        return 2
    with Client(args.url, timeout=args.timeout) as client:
        try:
            models = preflight(client, args.url)
        except Unreachable as exc:
            print(f"ninserve models: {exc}", file=sys.stderr)
            return 2
        except ApiError as exc:
            print(f"ninserve models: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(orjson.dumps({"models": models}, option=orjson.OPT_INDENT_2).decode())
    else:
        print(models_table(models))
    return 0
