"""uvicorn, hardened against slow and greedy clients: the connection-level limits of docs/security.md.

Follows uvicorn 0.54 (pyproject.toml allows >=0.54,<0.55). Its public extension point is the
protocol class (`Config(http=...)`, `--http`), used here; the rest is internal: the subclass of
`uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`, `uvicorn.server.ServerState`, the
overridden `_should_upgrade` and `_unset_keepalive_if_required`, `data_received` rewritten whole,
and the protocol's, cycle's and server state's attributes. On upgrade, re-read those in the new
httptools_impl.py and server.py; tests/app/http/test_uvicorn_contract.py names what moved.

uvicorn bounds idle time between requests (keep-alive) but not the time a client takes to send
one: its keep-alive timer is reset by every byte, so a client trickling a header line or a body
byte every 2 s holds a connection (and the memory of what it sent) for ever, and httptools
buffers headers of any size and count. `GuardedHttpToolsProtocol` extends uvicorn's httptools
protocol with what it lacks:

- header deadline: the request line and headers must arrive within header_timeout_s of the first
  byte (or of connecting): 408 and close otherwise, however steadily bytes trickle in;
- body deadline: the whole body within body_timeout_s of the end of the headers, else close;
- header limits: max_header_bytes for the request line and headers, max_headers lines: 431;
- large bodies in turns: a body over 64 KiB is read only while its connection holds one of a few
  reading turns (app/http/body_readers.py), so uploads cannot fill every loop iteration and a
  cheap request is not queued behind them; one answered before it was read (a 503 when the
  bytes in flight are full, a 413) is not read at all: `Connection: close`, FIN, linger;
- connection cap: at max_connections a new connection first takes the place of the oldest idle
  one: a keep-alive connection between requests, or one that has not sent a byte since it
  connected (nginx drains both kinds too), closed as the keep-alive or header timeout would close
  it, but with a FIN first; only when none is idle does it get 503 and is closed at once. So
  connections opened and left silent hold the cap only until newcomers need their places, not
  for header_timeout_s each. A connection with a request in progress is never closed for another;
- Upgrade: no other protocol is served (no websockets, no h2c), so `Connection: Upgrade` is
  ignored as RFC 9110 7.8 allows: the request, body included, is served as HTTP/1.1. httptools
  stops at the end of the headers of such a request and uvicorn then dropped its body and parsed
  the body's bytes as the next request (uvicorn issue 2722: request desync). CONNECT gets 400;
- Host (RFC 9112 3.2): an HTTP/1.1 request without one, or any request with two, gets 400;
- graceful stop: at shutdown an idle keep-alive connection is given DRAIN_S for a request that
  may already be on its way (it is answered, with `Connection: close`), then closed with a FIN
  first, instead of being closed at once, which reset connections whose next request was in flight.

    uvicorn.run(app, **uvicorn_options(settings))              # what `ninserve serve` does
    uvicorn --factory app.http.main:app_from_env --http app.http.server:GuardedHttpToolsProtocol

With the `--http` import string the limits come from NINSERVE_* in each worker's environment.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.config import Settings
from app.http.body_readers import LARGE_BODY_BYTES, BodyReaders, HeldFlow
from app.logs import uvicorn_log_config

logger = logging.getLogger("ninserve")


class ConnectionLimits:
    """The subset of Settings the protocol needs, read once per process."""

    def __init__(self, settings: Settings) -> None:
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self.keep_alive_timeout_s = settings.keep_alive_timeout_s
        self.max_connections = settings.max_connections
        self.max_header_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing; data_received answers `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
LINGER_S = 2.0  # how long a refused connection stays half-closed, so its answer can be read
DRAIN_S = 1.0  # at shutdown, how long an idle keep-alive connection may still start a request
# Framing headers replayed to the parser after an ignored Upgrade (see _serve_despite_upgrade).
_FRAMING = (b"content-length", b"transfer-encoding", b"connection")

# Idle keep-alive connections of each server, oldest first (a dict keeps insertion order).
_IDLE: weakref.WeakKeyDictionary[ServerState, dict[GuardedHttpToolsProtocol, None]]
_IDLE = weakref.WeakKeyDictionary()
# Reading turns for large request bodies, one scheduler per server.
_READERS: weakref.WeakKeyDictionary[ServerState, BodyReaders] = weakref.WeakKeyDictionary()
# Connections closing after a refused large body (_close_unread): not counted against the cap.
_REFUSED: weakref.WeakKeyDictionary[ServerState, set[GuardedHttpToolsProtocol]] = weakref.WeakKeyDictionary()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body deadlines, header limits and a connection cap."""

    limits: ClassVar[ConnectionLimits | None] = None  # set by `protocol_for`; else from the environment

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = ConnectionLimits(Settings())
        self.guard = cls.limits
        self.timeout_keep_alive = self.guard.keep_alive_timeout_s  # type: ignore[assignment]  # uvicorn says int; its timer takes seconds as a float
        # uvicorn answers 503 once connections or running requests reach this; the cap itself is
        # enforced in connection_made, so allow every connection under it one request.
        self.limit_concurrency = self.guard.max_connections + 1
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_headers = False
        self._header_bytes = self._header_count = 0
        self._rejected: _Rejected | None = None  # set by a callback that stops the parser
        self._lingering = False  # answered and half-closed: what still arrives is read and dropped
        self._host_count = 0
        self._body_skipped = False  # httptools skips the body of an Upgrade request: it is replayed
        self._draining = False  # shutting down: the next answer closes the connection
        self._drain: asyncio.TimerHandle | None = None
        self._idle = _IDLE.setdefault(self.server_state, {})  # this server's idle connections
        self._readers = _READERS.setdefault(self.server_state, BodyReaders())
        self._large_body = False  # the current request's body waits for or holds a reading turn
        self._closing_after_refusal = _REFUSED.setdefault(self.server_state, set())

    # --- connection ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = HeldFlow(transport)
        counted = len(self.connections) - len(self._closing_after_refusal)
        if counted > self.guard.max_connections and not self._evict_idle():
            self._answer_and_close(503, "too many open connections; retry later")
            return
        self._start_headers()  # a connection that never sends a request is closed too
        self._idle[self] = None  # until its first byte: room for a newcomer at the cap

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle.pop(self, None)
        self._closing_after_refusal.discard(self)
        self._end_large_body()
        self._disarm()
        if self._drain is not None:
            self._drain.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        if self._lingering:  # closed after an answer that came before its body (_close_unread)
            self.server_state.total_requests += 1
            return
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle until the next request or the timeout
            self._idle[self] = None

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this when bytes arrive, when a response completes and when the connection
        # is lost: the keep-alive timer runs exactly while the connection is idle.
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
            self._idle.pop(self, None)

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection (between requests, or silent since it connected) to
        make room for this one, if there is one."""
        if not self._idle:
            return False
        oldest = next(iter(self._idle))
        logger.debug("connection cap reached: closing the idle connection from %s", _peer(oldest.client))
        oldest._close_idle()
        return True

    def _close_idle(self) -> None:
        """Close a connection that has no request in progress: FIN first, then read and drop what
        still comes (a request that crossed the FIN) until the client closes or LINGER_S pass, so
        that the client reads an end of stream, not a reset."""
        self._drain = None
        self._unset_keepalive_if_required()
        self._idle.pop(self, None)
        self.connections.discard(self)  # it no longer counts against the cap
        if self.transport.is_closing():
            return
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._disarm()
        self._reading_headers = False
        self._lingering = True
        self.transport.write_eof()
        self._arm(LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus: a new request starts its header deadline, parser
        # callbacks can reject with a status of their own, and header bytes are counted as they
        # arrive (httptools would otherwise buffer one huge header before any callback sees it).
        if self._lingering:
            return
        self._unset_keepalive_if_required()
        self._idle.pop(self, None)  # a request is on its way (a first one: keep-alive's is popped above)
        if self._drain is not None:  # shutting down, and a request arrives: it is served
            self._drain.cancel()
            self._drain = None
        if self._deadline is None and not self._reading_headers:
            self._start_headers()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._serve_despite_upgrade(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError:
            rejected, self._rejected = self._rejected, None
            if rejected is not None:
                self._answer_and_close(rejected.status, rejected.message)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._reading_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.guard.max_header_bytes:
                self._answer_and_close(431, self._header_size_message())

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:
            self._start_headers()
        self._header_bytes = self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.guard.max_headers:
            self._reject(431, f"too many header fields; the limit is {self.guard.max_headers}")
        if len(name) == 4 and name.lower() == b"host":
            self._host_count += 1
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.guard.max_header_bytes:
            self._reject(431, self._header_size_message())
        if self._host_count != 1 and (self._host_count or self.parser.get_http_version() == "1.1"):
            self._reject(400, "an HTTP/1.1 request needs exactly one Host header (RFC 9112, 3.2)")
        self._host_count = 0
        if self.parser.should_upgrade():
            self._ignore_upgrade()
        self._reading_headers = False
        self._disarm()
        # uvicorn's own concurrency check counts every connection: not those closing after a refusal.
        self.limit_concurrency = self.guard.max_connections + 1 + len(self._closing_after_refusal)
        super().on_headers_complete()
        if self._draining:
            self.cycle.keep_alive = False
        self._arm(self.guard.body_timeout_s, self._body_timed_out)
        if self._declares_large_body():
            self._large_body = True
            self._watch_unread_body()
            self._readers.start(self)

    def on_message_complete(self) -> None:
        if self._body_skipped:  # the end httptools reports after an Upgrade's headers: not the end
            self._body_skipped = False
            return
        self._disarm()
        self._end_large_body()
        super().on_message_complete()

    def shutdown(self) -> None:
        self._draining = True
        if self._lingering:  # already answered: nothing left to wait for
            self._disarm()
            self.transport.close()
            return
        idle = self.timeout_keep_alive_task is not None or (self.cycle is None and not self._header_bytes)
        if not idle:  # a request in progress: uvicorn lets it finish and then closes
            super().shutdown()
            return
        # Idle: a request may be on its way (a keep-alive client sends its next one at any time).
        # Closing now would reset it; give it DRAIN_S to arrive, answer it with `Connection: close`.
        self._unset_keepalive_if_required()
        self._drain = self.loop.call_later(DRAIN_S, self._close_idle)

    # --- large bodies: read in turns (app/http/body_readers.py) ---

    def _declares_large_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return not value.isdigit() or len(value) > 18 or int(value) > LARGE_BODY_BYTES
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                return True
        return False

    def may_read(self) -> None:
        """This connection's turn to read its body."""
        if isinstance(self.flow, HeldFlow) and not self._lingering and not self.transport.is_closing():
            self.flow.release()

    def must_wait(self) -> None:
        """Others read first: its bytes wait in the kernel until its turn."""
        if isinstance(self.flow, HeldFlow):
            self.flow.hold()

    def _watch_unread_body(self) -> None:
        """An answer that starts before the large body is read (a 503 when the bytes in flight are
        full, a 413, a 415) says `Connection: close`, and the connection is then closed without
        reading the rest (_close_unread) instead of reading up to max_body_bytes only to drop
        them: under an upload flood, refused bodies were most of what the event loop read."""
        # Weak references only: a cycle that referred to itself (or to this protocol, which
        # refers to it) would keep its request, body included, until the garbage collector ran.
        cycle = weakref.ref(self.cycle)
        send = type(self.cycle).send

        async def send_then_close_if_unread(message: Any) -> None:
            current = cycle()
            if current is None:
                return
            if message["type"] == "http.response.start" and current.more_body:
                current.keep_alive = False
            await send(current, message)

        self.cycle.send = send_then_close_if_unread  # type: ignore[method-assign]
        self.cycle.transport = _CloseUnread(self)  # type: ignore[assignment]

    def _close_unread(self) -> None:
        """FIN after the answer, stop reading, close after LINGER_S: a client still sending gets
        a write error and then reads the answer (as curl and httpx do); closing at once would
        reset the connection, and the answer with it if it were still in flight."""
        unread = self.cycle is not None and self.cycle.more_body
        self._end_large_body()
        if not unread or self.transport.is_closing():
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self._idle.pop(self, None)
        # Answered and closing: it must not hold a place under the connection cap for LINGER_S,
        # or refusals at a few hundred a second would fill the cap and push idle clients out.
        # It stays in `connections`, so that a shutdown still closes it.
        self._closing_after_refusal.add(self)
        self._disarm()
        self._linger()

    def _end_large_body(self) -> None:
        if self._large_body:
            self._large_body = False
            self._readers.done(self)
            if (
                isinstance(self.flow, HeldFlow) and self.flow.held
            ):  # a pipelined request after it reads again (uvicorn resumes it)
                self.flow.held = False

    # --- Upgrade: ignored, the request is served as HTTP/1.1 ---

    def _should_upgrade(self) -> bool:
        return False  # no websockets are served, whatever uvicorn's --ws says

    def _ignore_upgrade(self) -> None:
        """In on_headers_complete of a request that asks to switch protocols: refuse CONNECT,
        else take Upgrade out of what the app sees (RFC 9110 7.8: as if it had not been sent);
        httptools will skip the body and stop parsing (see _serve_despite_upgrade)."""
        if self.parser.get_method() == b"CONNECT":
            self._reject(400, "CONNECT is not supported: this server is not a proxy")
        headers = []
        for name, value in self.headers:
            if name == b"upgrade":
                continue
            if name == b"connection":
                tokens = [t.strip() for t in value.split(b",") if t.strip().lower() != b"upgrade"]
                if not tokens:
                    continue
                value = b", ".join(tokens)
            headers.append((name, value))
        self.headers[:] = headers  # the list is the scope's
        self._body_skipped = True

    def _serve_despite_upgrade(self, rest: bytes) -> None:
        """httptools stopped after the headers of an Upgrade request, without its body. Parse on
        with a new parser primed with the request's own framing headers (so it reads the body
        exactly as the first parser would have), its callbacks going to this request's cycle;
        `rest` (the bytes after the headers) and what follows are parsed by it."""
        version = self.scope.get("http_version", "1.1").encode()
        head = [self.scope["method"].encode() + b" / HTTP/" + version + b"\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.headers if name in _FRAMING]
        self.parser = httptools.HttpRequestParser(_AfterIgnoredUpgrade(self))
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn's own
        self.parser.feed_data(b"".join(head) + b"\r\n")
        if rest:
            self.data_received(rest)

    def _reject(self, status: int, message: str) -> None:
        self._rejected = _Rejected(status, message)
        raise self._rejected  # httptools stops and raises HttpParserCallbackError from feed_data

    # --- deadlines ---

    def _start_headers(self) -> None:
        self._reading_headers = True
        self._arm(self.guard.header_timeout_s, self._headers_timed_out)

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_timed_out(self) -> None:
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined request's headers: the current response ends it
            return
        self._answer_and_close(
            408, f"the request headers did not arrive within {self.guard.header_timeout_s:g} s"
        )

    def _body_timed_out(self) -> None:
        self._deadline = None
        cycle = self.cycle
        message = f"the request body did not arrive within {self.guard.body_timeout_s:g} s"
        logger.info("closing a connection from %s: %s", _peer(self.client), message)
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        # The application may be waiting in receive(): it sees a disconnect and writes nothing.
        cycle.disconnected = True
        cycle.message_event.set()
        self._answer_and_close(408, message)

    # --- answers written by the protocol itself ---

    def _header_size_message(self) -> str:
        return f"the request line and headers are over the limit of {self.guard.max_header_bytes} bytes"

    def _answer_and_close(self, status: int, message: str) -> None:
        self._idle.pop(self, None)  # closing already: no place for a newcomer to take
        self._end_large_body()
        self._disarm()
        self._reading_headers = False
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\nx-content-type-options: nosniff\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        if status == 503:
            head.append(b"retry-after: 1\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self._linger()

    def _linger(self) -> None:
        """Close in stages (RFC 9112, 9.6): send FIN after the answer, stop reading (the client's
        further bytes wait in the kernel, costing nothing), and close after LINGER_S. Closing at
        once while a slow client is still sending makes the kernel answer its next bytes with a
        reset, which can destroy the 408 before the client has read it."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._lingering = True
        self.transport.write_eof()
        self.transport.pause_reading()
        self._arm(LINGER_S, self.transport.close)


class _CloseUnread:
    """The transport as a large-body request's cycle sees it: closing it closes the connection
    the way `_close_unread` does; the rest is the transport's."""

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._protocol = weakref.ref(protocol)
        self._transport = protocol.transport

    def close(self) -> None:
        protocol = self._protocol()
        if protocol is None:
            self._transport.close()
        else:
            protocol._close_unread()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _AfterIgnoredUpgrade:
    """Parser callbacks of a connection whose Upgrade was ignored: the replayed head of the
    current request is dropped (its cycle already runs), everything after it is the protocol's."""

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self.protocol = protocol
        self.replaying = True

    def on_message_begin(self) -> None:
        if not self.replaying:
            self.protocol.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.replaying:
            self.protocol.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.replaying:
            self.protocol.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.replaying:
            self.replaying = False
        else:
            self.protocol.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.protocol.on_body(body)

    def on_message_complete(self) -> None:
        self.protocol.on_message_complete()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"


def protocol_for(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """A protocol class bound to these settings (one process; workers use the import string)."""
    return type(
        "GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": ConnectionLimits(settings)}
    )


PROTOCOL_IMPORT = "app.http.server:GuardedHttpToolsProtocol"


def uvicorn_options(settings: Settings, *, in_process: bool = True) -> dict[str, Any]:
    """uvicorn.run / uvicorn.Config keyword arguments that apply these settings' connection limits.
    `in_process=False` (several workers) names the protocol by import string: each worker
    builds it from its own NINSERVE_* environment."""
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "ws": "none",
        "http": protocol_for(settings) if in_process else PROTOCOL_IMPORT,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "timeout_graceful_shutdown": settings.graceful_shutdown_s,
    }
    log_config = uvicorn_log_config(settings.log_format)
    if log_config is not None:  # otherwise uvicorn's own text lines, unchanged
        options["log_config"] = log_config
    return options
