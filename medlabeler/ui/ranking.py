"""The "to label" queue, ranked off the main thread and kept per label state (one instant "next").

A ranking (the engine's ``next_samples``) reads every sample, the active model's scores and
embeddings and picks diverse rounds: tens of ms on the demo, hundreds on a large pool. It is a
pure function of (the labeled samples, what the store holds besides labels, the strategy), so
each ranking is kept under that :class:`QueueKey`. The app asks for the rankings it will need
before it needs them, on one background thread: the current state's, and the state after the
open sample is saved (so `n` finds its ranking waiting). Whatever is not ranked when it is needed
is ranked on the spot by the same function: the queue is the same either way.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from qtpy.QtCore import QObject, Signal

from medlabeler.ui import engine_calls as calls

log = logging.getLogger(__name__)

#: Rankings kept (the current state, the one after the next save, a few older ones).
KEPT = 8


@dataclass(frozen=True)
class QueueKey:
    """What a ranking depends on: labeled samples (stored, being saved, or assumed), the store's
    ranking revision (scores, embeddings, models, samples), and the strategy."""

    labeled: frozenset[int]
    revision: int
    strategy: str


def queue_key(project, strategy: str, *, pending: Iterable[int] = (), assume: Iterable[int] = ()) -> QueueKey:
    """The key of the queue as it stands, with ``pending`` saves and ``assume``d labels counted."""
    labeled = project.labeled_ids() | frozenset(int(i) for i in pending) | frozenset(int(i) for i in assume)
    return QueueKey(labeled, project.ranking_revision, strategy)


def rank(project, key: QueueKey) -> list[calls.QueueRow]:
    """The queue of ``key`` (QUEUE_DEPTH rows): exactly ``next_samples`` with those labels."""
    return calls.queue_rows(project, view="to label", n=calls.QUEUE_DEPTH, strategy=key.strategy,
                            assume_labeled=key.labeled)


def still_valid(project, key: QueueKey) -> bool:
    """Whether a ranking of ``key`` just made saw exactly the state ``key`` names: nothing but
    labels changed in the store (the revision), and every stored label is in ``key.labeled``
    (labels are only ever added, so what the ranking read lies between the two)."""
    return project.ranking_revision == key.revision and project.labeled_ids() <= key.labeled


class Rankings(QObject):
    """Rankings by key, and a background thread that makes the ones asked for ahead of time.

    ``ranked(key)`` is emitted on the main thread when a background ranking was stored;
    ``overtaken(key)`` when one was dropped because the store moved on while it was made (it
    ranked a state that no longer is: whoever waits for the queue asks again).
    """

    ranked = Signal(object)
    overtaken = Signal(object)
    _arrived = Signal(object, object, object)  # project, key, rows (from the ranking thread)
    _dropped = Signal(object, object)  # project, key (from the ranking thread)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._rows: OrderedDict[QueueKey, list] = OrderedDict()
        self._todo: list[tuple[object, QueueKey]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._project = None  # rankings belong to this project; another one clears them
        self._arrived.connect(self._store_arrived)
        self._dropped.connect(self._overtaken)

    # --- main thread ----------------------------------------------------------------------------
    def get(self, key: QueueKey) -> list | None:
        rows = self._rows.get(key)
        if rows is not None:
            self._rows.move_to_end(key)
        return rows

    def rank_now(self, project, key: QueueKey) -> list:
        """Rank ``key`` here and now (what nobody ranked ahead); kept when the store did not move."""
        rows = self.get(key) if project is self._project else None
        if rows is None:
            rows = rank(project, key)
            if still_valid(project, key):
                self._keep(project, key, rows)
        return rows

    def request(self, project, keys: Iterable[QueueKey]) -> None:
        """Rank these on the background thread (those not kept yet), newest request first served;
        requests not started yet are dropped (the state moved on)."""
        wanted = [(project, k) for k in dict.fromkeys(keys) if not (project is self._project and k in self._rows)]
        with self._cond:
            self._todo = wanted
            if wanted and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="medlabeler-queue-ranking", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def forget(self) -> None:
        """Drop every ranking and request, and wait for the one being made (a project closes)."""
        with self._cond:
            self._todo = []
            self._cond.wait_for(lambda: not self._busy, 30)
        self._rows.clear()
        self._project = None

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy or bool(self._todo)

    def _keep(self, project, key: QueueKey, rows: list) -> None:
        if project is not self._project:
            self._rows.clear()
            self._project = project
        self._rows[key] = rows
        self._rows.move_to_end(key)
        while len(self._rows) > KEPT:
            self._rows.popitem(last=False)

    def _store_arrived(self, project, key, rows) -> None:
        if project.closed or (self._project is not None and project is not self._project):
            return
        self._keep(project, key, rows)
        self.ranked.emit(key)

    def _overtaken(self, project, key) -> None:
        if not project.closed and (self._project is None or project is self._project):
            self.overtaken.emit(key)

    # --- the ranking thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._todo))
                project, key = self._todo.pop(0)
                self._busy = True
            try:
                if not project.closed:
                    rows = rank(project, key) if still_valid(project, key) else None
                    if rows is not None and still_valid(project, key):
                        self._arrived.emit(project, key, rows)
                    else:  # the state it names is gone: whoever waits for it asks again
                        self._dropped.emit(project, key)
            except Exception as exc:  # noqa: BLE001 - ranked again on the spot, where errors are shown
                log.debug("background ranking failed: %s", exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
