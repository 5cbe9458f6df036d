"""The gRPC listener: grpc.aio in the HTTP server's event loop, on NINSERVE_GRPC_PORT, serving
`inference.GRPCInferenceService` (app/grpc/service.py) on the same models, admission and budget.

    frontend = GrpcFrontend(serving, metrics, version="0.1.0")
    await frontend.start()          # in create_app's lifespan, beside uvicorn
    await frontend.stop()           # at shutdown: new calls UNAVAILABLE, those running get the grace

Limits mirror HTTP's (docs/security.md), priced in the same settings. gRPC's core reads each open
stream's message before a handler (or the call limit) sees it, so the bytes it can hold at once are
bounded by construction: connections x streams per connection x one message, held twice while it is
converted, fits in max_body_bytes_in_flight.

    one message            max_body_bytes_in_flight / (2 x grpc_max_connections x 2 x
                           grpc_max_streams_per_connection): 128 MiB / (2 x 16 x 16) = 256 KiB by default,
                           at most max_body_bytes (RESOURCE_EXHAUSTED beyond, from gRPC itself)
    metadata               max_header_bytes
    connections            grpc_max_connections (past it closed at once: UNAVAILABLE, reconnect)
    streams per connection 2 x grpc_max_streams_per_connection (the calls it carries, and room for
                           those being torn down), also before the client has acknowledged
                           the setting (past it REFUSED_STREAM / ENHANCE_YOUR_CALM: never started)
    flow control           fixed 64 KiB windows (no BDP growth): a stream holds its one message,
                           whatever else a client sends on it waits
    calls at once          grpc_max_concurrent_rpcs (RESOURCE_EXHAUSTED beyond, before a handler runs)
    the HTTP/2 handshake   header_timeout_s
    a connection           grpc_max_connection_age_s, then body_timeout_s to finish its calls

API keys (NINSERVE_API_KEYS) are checked from the `authorization: Bearer <key>` metadata before
the request message is parsed; ServerLive and ServerReady stay open, as HTTP's probes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from app.config import Settings
from app.grpc.service import SERVICE, Service, handlers
from app.http.metrics import Metrics
from app.http.middleware.auth import CHALLENGE, bearer_token, key_matches
from app.serving.state import ServingState

logger = logging.getLogger("ninserve")

OPEN_METHODS = frozenset({f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady"})  # probes carry no secrets
HELD_COPIES = 2  # a message as parsed, and the raw contents converted from it
LOOKAHEAD_BYTES = 64 * 1024  # a stream's flow-control window before its message is read
IDLE_CONNECTION_S = 300  # a connection without calls for this long is closed; clients reconnect
# Streams a connection may have open, per call it is meant to carry: gRPC's core counts a stream
# until its call is torn down, after the client has its answer, so with no slack a client keeping
# 7 calls in flight under a limit of 8 had one call in seven refused (REFUSED_STREAM); with twice
# the calls, 8 in flight were refused none in 480 (and 16 under 16, one in three).
STREAM_SLACK = 2


def streams_per_connection(s: Settings) -> int:
    """HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS: room for the calls a connection carries, and for
    those still being torn down."""
    return STREAM_SLACK * s.grpc_max_streams_per_connection


def streams_at_once(s: Settings) -> int:
    """The most streams gRPC's core can hold open at once, each with one message read."""
    return s.grpc_max_connections * streams_per_connection(s)


def message_limit(s: Settings) -> int:
    """The largest request message: gRPC's core receives every open stream's whole message before
    any handler can price it, so all the streams it may hold, each message twice while converted,
    must fit in max_body_bytes_in_flight, as HTTP's bodies do (one connection sending 400 messages
    of 1.9 MB at once peaked at 857 MB RSS when only the calls at once were bounded)."""
    return min(s.max_body_bytes, s.max_body_bytes_in_flight // (HELD_COPIES * streams_at_once(s)))


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for a call without a valid bearer key, before its message is parsed."""

    def __init__(self, keys: tuple[str, ...], metrics: Metrics) -> None:
        self.keys = tuple(k.encode() for k in keys)
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method in OPEN_METHODS:
            return await continuation(details)
        sent = next((v for k, v in details.invocation_metadata or () if k == "authorization"), None)
        raw = sent.encode() if isinstance(sent, str) else sent
        token = bearer_token(raw) if raw is not None else None
        if token is not None and key_matches(token, self.keys):
            return await continuation(details)
        detail = (
            "an API key is required: send the metadata `authorization: Bearer <key>`"
            if sent is None
            else "the API key is not valid"
        )
        return self._refusal(details.method, detail)

    def _refusal(self, method: str, detail: str) -> grpc.RpcMethodHandler:
        metrics = self.metrics

        async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> None:
            metrics.observe_grpc(method, "UNAUTHENTICATED", "unauthorized", 0.0)
            context.set_trailing_metadata((("www-authenticate", CHALLENGE),))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, detail)

        # No deserializer: the message stays bytes, never parsed for a caller without a key.
        return grpc.unary_unary_rpc_method_handler(refuse)


class GrpcFrontend:
    def __init__(self, serving: ServingState, metrics: Metrics, *, version: str) -> None:
        self.serving, self.metrics, self.version = serving, metrics, version
        self.port: int | None = None  # the bound port, once started (grpc_port 0 picks one)
        self._server: grpc.aio.Server | None = None

    def options(self) -> list[tuple[str, Any]]:
        s = self.serving.settings
        return [
            ("grpc.max_receive_message_length", message_limit(s)),
            ("grpc.max_send_message_length", -1),  # answers are ours: maps at most ~5 MB a request
            ("grpc.max_metadata_size", s.max_header_bytes),
            # Streams a connection may have open, each holding one message; gRPC's core allows no
            # more before the client has acknowledged the setting either (it resets the rest).
            ("grpc.max_concurrent_streams", streams_per_connection(s)),
            ("grpc.max_allowed_incoming_connections", s.grpc_max_connections),
            # Windows stay at HTTP/2's 64 KiB rather than growing with the measured bandwidth:
            # gRPC opens a stream's window to its whole message when a handler reads it, and
            # anything more a client sends on a stream waits in its own buffers, not ours.
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", LOOKAHEAD_BYTES),
            ("grpc.server_handshake_timeout_ms", int(s.header_timeout_s * 1000)),
            ("grpc.max_connection_idle_ms", IDLE_CONNECTION_S * 1000),
            ("grpc.max_connection_age_ms", int(s.grpc_max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(s.body_timeout_s * 1000)),
            # Several worker processes share the port (the kernel spreads connections); one
            # process alone must not silently share it with a second server started by mistake.
            ("grpc.so_reuseport", 1 if s.workers > 1 else 0),
        ]

    async def start(self) -> int:
        s = self.serving.settings
        keys = s.api_key_list
        interceptors = [ApiKeyInterceptor(keys, self.metrics)] if keys else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=self.options(),
            maximum_concurrent_rpcs=s.grpc_max_concurrent_rpcs,
        )
        server.add_generic_rpc_handlers((handlers(Service(self.serving, self.metrics, self.version)),))
        host = f"[{s.host}]" if ":" in s.host else s.host
        assert s.grpc_port is not None
        self.port = server.add_insecure_port(f"{host}:{s.grpc_port}")  # RuntimeError if it cannot bind
        await server.start()
        self._server = server
        logger.info("gRPC (KServe V2 / Open Inference Protocol) on %s:%d", s.host, self.port)
        return self.port

    async def stop(self) -> None:
        """New calls are refused (UNAVAILABLE) at once; those running get graceful_shutdown_s."""
        if self._server is not None:
            await self._server.stop(self.serving.settings.graceful_shutdown_s)
            self._server = None
