"""The guard against PySide6's reference leak on emit (an abort after enough signals)."""

from __future__ import annotations

import sys

import pytest
from qtpy.QtCore import QObject, Signal

from medlabeler.ui import qt_fixes


class Pinger(QObject):
    ping = Signal()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="True/False/None are immortal from Python 3.12")
def test_many_emits_cannot_free_true_false_or_none(qapp):
    qt_fixes.guard_singletons()
    if not qt_fixes._GUARDED:
        assert not qt_fixes.emit_leaks_references()  # this PySide6 has no leak: nothing to guard
        return
    pinger = Pinger()
    for _ in range(20_000):  # unguarded, True's few thousand references would run out: an abort
        pinger.ping.emit()
    assert min(sys.getrefcount(v) for v in (True, False, None)) > qt_fixes.RESERVE // 2
    assert not qt_fixes.guard_singletons()  # once per process
