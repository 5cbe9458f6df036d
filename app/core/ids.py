"""Prediction ids: 128 random bits as hex, from the OS's CSPRNG read in blocks.

`os.urandom` per id is a system call that releases the GIL: under load the event loop then
waits for another thread to hand the GIL back before it can answer the next request. One read
serves 256 ids; each byte is used once, and a forked child starts with a fresh block.
"""

from __future__ import annotations

import os
import threading

ID_BYTES = 16  # 128 bits: the id is a capability (whoever has it can read the result)
_BLOCK_IDS = 256


class RandomIds:
    """Thread-safe source of unique random hex ids."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def new(self) -> str:
        with self._lock:
            if self._at >= len(self._block):
                self._block, self._at = os.urandom(ID_BYTES * _BLOCK_IDS), 0
            start, self._at = self._at, self._at + ID_BYTES
            return self._block[start : start + ID_BYTES].hex()

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._block, self._at = b"", 0


new_id = RandomIds().new
