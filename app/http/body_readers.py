"""Which connections may read a large request body now: bytes in flight taken in turns, so that a
cheap request is never queued behind large uploads.

One event-loop iteration reads every readable socket once (up to 256 KiB each). With 48 clients
uploading 6-8 MB bodies, an iteration could copy ~12 MB before the loop came back to a 3 KB
request, and that request needs a dozen iterations (headers, admission, decode hand-off, batch,
answer): docs/reliability.md has the probe's latency before and after. Here a body over `LARGE_BODY_BYTES`
(declared by Content-Length, or chunked) is read only while its connection holds one of `slots`
reading turns; the others are paused, their bytes waiting in the kernel's buffers at no cost to
the process. A turn lasts `slice_s` while others wait, then passes to the longest waiting (round
robin), so a client that trickles its body cannot hold a turn for long. Bodies under the limit
(nearly every image request) are read as they arrive.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Protocol

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl

# uvicorn's own flow-control mark: a body under it arrives in one or two reads and is never paused.
LARGE_BODY_BYTES = HIGH_WATER_LIMIT
# Sockets read per loop iteration for large bodies: at most 4 x 256 KiB of copying per
# iteration, against 48 x 256 KiB under the upload flood of docs/reliability.md.
READING_SLOTS = 4
SLICE_S = 0.02  # how long a turn lasts while others wait


class Reader(Protocol):
    """A connection as the scheduler sees it (GuardedHttpToolsProtocol)."""

    def may_read(self) -> None: ...

    def must_wait(self) -> None: ...


class HeldFlow(FlowControl):
    """uvicorn's flow control, plus a hold that the application's reads do not lift: uvicorn
    resumes reading whenever the app awaits the body, which would end a connection's wait."""

    held = False

    def resume_reading(self) -> None:
        if not self.held:
            super().resume_reading()

    def hold(self) -> None:
        self.held = True
        self.pause_reading()

    def release(self) -> None:
        self.held = False
        super().resume_reading()


class BodyReaders:
    """Reading turns for large bodies: at most `slots` connections read at once, the rest wait in
    arrival order; a turn is given up after `slice_s` when someone waits."""

    def __init__(self, slots: int = READING_SLOTS, slice_s: float = SLICE_S) -> None:
        self.slots, self.slice_s = slots, slice_s
        self.reading: dict[Reader, asyncio.TimerHandle | None] = {}
        self.waiting: OrderedDict[Reader, None] = OrderedDict()
        self.turns_passed = 0  # turns handed on after a slice (a counter, for tests and metrics)

    def start(self, reader: Reader) -> None:
        """A large body begins: read it now, or wait for a turn."""
        if reader in self.reading or reader in self.waiting:
            return
        if len(self.reading) < self.slots and not self.waiting:
            self._give(reader)
        else:
            self.waiting[reader] = None
            reader.must_wait()

    def done(self, reader: Reader) -> None:
        """The body is read (or the connection is gone): its turn passes on."""
        self.waiting.pop(reader, None)
        if reader in self.reading:
            timer = self.reading.pop(reader)
            if timer is not None:
                timer.cancel()
            self._fill()

    def _give(self, reader: Reader) -> None:
        self.reading[reader] = asyncio.get_running_loop().call_later(self.slice_s, self._slice_over, reader)
        reader.may_read()

    def _fill(self) -> None:
        while self.waiting and len(self.reading) < self.slots:
            reader, _ = self.waiting.popitem(last=False)
            self._give(reader)

    def _slice_over(self, reader: Reader) -> None:
        if reader not in self.reading:
            return
        if not self.waiting:
            self.reading[reader] = asyncio.get_running_loop().call_later(
                self.slice_s, self._slice_over, reader
            )
            return
        del self.reading[reader]
        self.turns_passed += 1
        self.waiting[reader] = None  # to the back of the line
        reader.must_wait()
        self._fill()
