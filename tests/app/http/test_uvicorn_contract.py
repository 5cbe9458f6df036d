"""The uvicorn internals app/http/server.py extends, checked by name, so an upgrade that renames
or rewrites one fails here, naming it, instead of quietly disarming a limit. After re-reading
server.py against the new uvicorn (its header lists what to re-read), update FOLLOWED, the
digests below and the range in pyproject.toml together."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from app.http.server import GuardedHttpToolsProtocol

FOLLOWED = "0.54."  # the uvicorn release server.py follows (pyproject.toml: >=0.54,<0.55)
# HttpToolsProtocol methods server.py overrides (calling super()) or calls.
METHODS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_header",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
    "shutdown",
    "send_400_response",
    "_should_upgrade",
    "_unset_keepalive_if_required",
)
# Attributes of a protocol instance server.py reads or sets.
PROTOCOL_ATTRIBUTES = (
    "transport",
    "flow",
    "cycle",
    "parser",
    "headers",
    "scope",
    "client",
    "logger",
    "loop",
    "connections",
    "server_state",
    "limit_concurrency",
    "timeout_keep_alive",
    "timeout_keep_alive_task",
)
CYCLE_ATTRIBUTES = (
    "transport",
    "keep_alive",
    "disconnected",
    "more_body",
    "message_event",
    "response_started",
    "response_complete",
)
SERVER_STATE_ATTRIBUTES = ("default_headers", "total_requests", "connections", "tasks")
# sha256 (first 16 hex digits) of uvicorn methods server.py replaces without calling them:
# data_received is rewritten whole, the other two are overridden; a change to any of them must be
# carried over by hand.
REPLACED = {
    "data_received": "010a7ae59a5d3b1a",
    "_should_upgrade": "8fcad1ab8e096739",
    "_unset_keepalive_if_required": "00a6a4e47214e68e",
}


def test_the_installed_uvicorn_is_the_release_server_py_follows() -> None:
    assert uvicorn.__version__.startswith(FOLLOWED), (
        f"uvicorn {uvicorn.__version__} is installed; app/http/server.py follows {FOLLOWED}x: "
        "re-read what its header lists, then update this test and pyproject.toml's range"
    )


def test_the_protocol_methods_relied_on_exist() -> None:
    missing = [name for name in METHODS if not callable(getattr(HttpToolsProtocol, name, None))]
    assert not missing, f"uvicorn's HttpToolsProtocol no longer has {missing} (app/http/server.py uses them)"
    assert issubclass(GuardedHttpToolsProtocol, HttpToolsProtocol)


def test_the_replaced_methods_are_the_ones_read() -> None:
    changed = [
        name
        for name, digest in REPLACED.items()
        if hashlib.sha256(inspect.getsource(getattr(HttpToolsProtocol, name)).encode()).hexdigest()[:16]
        != digest
    ]
    assert not changed, (
        f"uvicorn changed HttpToolsProtocol.{changed}: carry the change into app/http/server.py"
    )


def test_the_attributes_relied_on_exist() -> None:
    async def app(scope, receive, send) -> None:  # never called: the protocol is only built
        raise AssertionError

    config = uvicorn.Config(app, http="httptools", log_config=None)
    config.load()

    async def build() -> HttpToolsProtocol:
        return HttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())

    protocol = asyncio.run(build())
    missing = [name for name in PROTOCOL_ATTRIBUTES if not hasattr(protocol, name)]
    assert not missing, f"uvicorn's HttpToolsProtocol instances no longer have {missing}"
    missing = [name for name in SERVER_STATE_ATTRIBUTES if not hasattr(ServerState(), name)]
    assert not missing, f"uvicorn's ServerState no longer has {missing}"
    assigned = set(re.findall(r"self\.(\w+) =", inspect.getsource(RequestResponseCycle.__init__)))
    missing = [name for name in CYCLE_ATTRIBUTES if name not in assigned]
    assert not missing, f"uvicorn's RequestResponseCycle no longer sets {missing}"
