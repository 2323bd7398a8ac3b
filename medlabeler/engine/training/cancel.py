"""A thread-safe cancel flag that the UI sets and the training loop checks before every batch."""

from __future__ import annotations

import threading


class CancelToken:
    """`cancel()` from any thread; the run stops before its next batch (within one batch)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    set = cancel

    def is_set(self) -> bool:
        return self._event.is_set()

    cancelled = property(is_set)

    def reset(self) -> None:
        self._event.clear()
