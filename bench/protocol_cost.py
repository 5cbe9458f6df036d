"""CPU per request of the uvicorn protocol classes, in isolation: a keep-alive request fed to
the protocol over a fake transport, answered by a minimal ASGI app, in one event loop. Compares
uvicorn's own httptools protocol, this checkout's `GuardedHttpToolsProtocol` and, with --old, the
one in another checkout, interleaved, minimum over rounds (CPU µs per request).

    .venv/bin/python -m bench.protocol_cost --old /tmp/old-checkout --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.config import Settings
from app.http.server import ConnectionLimits, GuardedHttpToolsProtocol

REQUEST = (
    b"GET /v1/models?top_k=3 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\n"
    b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nAuthorization: Bearer 0123456789abcdef\r\n\r\n"
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


class FakeTransport:
    def __init__(self) -> None:
        self.written = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def per_request_us(cls: type, requests: int) -> float:
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    started = time.thread_time()  # CPU time: the machine may be shared
    for _ in range(requests):
        before = transport.written
        protocol.data_received(REQUEST)
        while transport.written < before + 2:  # the head and the body
            await asyncio.sleep(0)
    elapsed = time.thread_time() - started
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


def load_old(checkout: Path) -> type:
    spec = importlib.util.spec_from_file_location("old_server", checkout / "app" / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.GuardedHttpToolsProtocol.limits = module.ConnectionLimits(Settings())
    return module.GuardedHttpToolsProtocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, help="another checkout whose app/http/server.py is compared")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args(argv)
    GuardedHttpToolsProtocol.limits = ConnectionLimits(Settings())
    classes: dict[str, type] = {
        "uvicorn": HttpToolsProtocol,
        "guarded (this checkout)": GuardedHttpToolsProtocol,
    }
    if args.old:
        classes["guarded (--old)"] = load_old(args.old)
    best = {name: float("inf") for name in classes}
    for _ in range(args.rounds):
        for name, cls in classes.items():
            best[name] = min(best[name], asyncio.run(per_request_us(cls, args.requests)))
    for name, us in best.items():
        print(f"{name:26s} {us:7.2f} µs/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
