"""Label saves off the caller's thread: one writer thread per project, first in, first out.

Saving a mask means encoding it, checksumming it, writing and fsyncing the file and its folder,
and committing its row with ``synchronous = FULL``: a few milliseconds on a local SSD, hundreds
on a network share or a busy disk. The app's main thread hands the save to a :class:`LabelWriter`
and goes on at once.

What a clinician can rely on (the store's rule, unchanged: a saved label survives a crash at any
moment):

- A label is *saved* when ``Project.save_label`` returned on the writer thread, exactly as before
  (file durable, then the row committed). Until then it is *pending*: the app shows it as being
  saved, never as saved, and the queue ranks it as labeled (``next_samples(assume_labeled=...)``),
  so moving on does not wait for the disk.
- Saves land in the order they were submitted (one thread, one FIFO): a newer version of a mask
  never lands before an older one, and label versions number in submission order.
- ``flush`` waits until everything submitted has landed; ``close`` flushes, then stops the thread.
  Closing the project in the app closes its writer first, and an interpreter that exits normally
  (window closed, quit, an exception that ends the program, SIGINT) flushes every writer still
  open (an ``atexit`` hook). What a hard kill (SIGKILL, power loss) can take is only the saves still
  pending, which the app never showed as saved: the same as a synchronous save interrupted midway.
- A save that fails (disk full, a read-only project) is reported through its
  :class:`PendingSave` and ``on_landed``; the saves after it still go ahead.

Qt-free: ``on_landed`` is called on the writer thread; a UI relays it to its own thread.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_OPEN_WRITERS: weakref.WeakSet = weakref.WeakSet()


@dataclass(eq=False)
class PendingSave:
    """One submitted save: what it writes, then (once ``landed``) the stored version or the error."""

    sample_id: int
    value: Any  # a class index, or a mask the writer owns (a copy of what was submitted)
    author: str
    origin: str
    label: Any = None  # the LabelVersion once saved
    error: BaseException | None = None
    _landed: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def landed(self) -> bool:
        """Saved or failed: the writer is done with it."""
        return self._landed.is_set()

    @property
    def saved(self) -> bool:
        return self.landed and self.error is None

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._landed.wait(timeout_s)


class LabelWriter:
    """Saves labels of one project on one background thread, in submission order.

    ``on_landed(pending)`` runs on the writer thread after each save, saved or failed.
    """

    def __init__(self, project, on_landed: Callable[[PendingSave], None] | None = None):
        self.project = project
        self.on_landed = on_landed
        self._queue: collections.deque[PendingSave | None] = collections.deque()
        self._in_flight: list[PendingSave] = []  # submitted, not landed, oldest first
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        _OPEN_WRITERS.add(self)

    # --- any thread -----------------------------------------------------------------------------
    def submit(self, sample_id: int, value: Any, *, author: str = "", origin: str = "manual") -> PendingSave:
        """Queue one save; returns at once. ``value``: a class index or a mask (copied here)."""
        if isinstance(value, np.ndarray):
            value = value.copy()
        pending = PendingSave(int(sample_id), value, str(author), str(origin))
        with self._cond:
            if self._closed:
                raise RuntimeError("this label writer is closed")
            self._in_flight.append(pending)
            self._queue.append(pending)
            self._start_thread()
            self._cond.notify_all()
        return pending

    def pending(self) -> dict[int, Any]:
        """Sample id -> the newest value submitted and not yet landed (oldest sample first)."""
        with self._cond:
            out: dict[int, Any] = {}
            for p in self._in_flight:
                out.pop(p.sample_id, None)
                out[p.sample_id] = p.value
            return out

    def pending_ids(self) -> frozenset[int]:
        with self._cond:
            return frozenset(p.sample_id for p in self._in_flight)

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._in_flight)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every save submitted so far has landed; True if they all did in time."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._in_flight, timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush, then stop the thread; later submits raise. Safe to call twice."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._queue.append(None)  # the thread's signal to stop, after what is queued
                self._cond.notify_all()
            thread = self._thread
        landed = self.flush(timeout_s)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        _OPEN_WRITERS.discard(self)
        return landed

    # --- the writer thread ----------------------------------------------------------------------
    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="medlabeler-label-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                pending = self._queue.popleft()
            if pending is None:
                return
            self._save(pending)

    def _save(self, pending: PendingSave) -> None:
        try:
            pending.label = self.project.save_label(pending.sample_id, pending.value, author=pending.author,
                                                    origin=pending.origin)
        except BaseException as exc:  # noqa: BLE001 - reported to the submitter, the next saves go on
            pending.error = exc
        with self._cond:
            self._in_flight.remove(pending)
            pending._landed.set()
            self._cond.notify_all()
        if self.on_landed is not None:
            try:
                self.on_landed(pending)
            except Exception:  # noqa: BLE001 - a failing listener must not stop the saves
                log.exception("label writer: on_landed failed")


def flush_open_writers(timeout_s: float | None = 60.0) -> None:
    """Let every open writer land its pending saves (run at interpreter exit)."""
    for writer in list(_OPEN_WRITERS):
        if not writer.flush(timeout_s):
            log.error("label writer: saves still pending after %s s at exit", timeout_s)


atexit.register(flush_open_writers)
