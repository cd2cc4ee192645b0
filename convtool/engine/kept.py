"""What recent engine calls worked out, kept for the calls like them (a frame loop, a
batch's images of one size, a chain's steps): their checked arguments and plans
(:mod:`convtool.engine.api`) and their prepared band methods
(:mod:`convtool.engine.methods`)."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """The values of the last ``limit`` keys put, the oldest dropped first; safe to share
    between threads (a Dask worker's threads call the engine at once)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if key not in self._values and len(self._values) >= self.limit:
                self._values.pop(next(iter(self._values)))
            self._values[key] = value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
