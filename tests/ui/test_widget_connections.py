"""The dock's connections to the session: held weakly, and a burst of signals calls once, later."""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QWidget

from medlabeler.ui.widgets._common import _alive, connect


class Signals(QObject):
    saved = Signal(object)
    opened = Signal(object)


def test_signals_connected_together_call_once_for_a_burst_on_a_later_turn(qtbot):
    """A save and the open after it emit several signals in one turn: the queue refreshes once,
    on a later turn, with the last arguments (it had refreshed once per signal)."""
    signals, widget, calls = Signals(), QWidget(), []
    connect(widget, (signals.saved, signals.opened), calls.append, later=True)
    signals.saved.emit(1)
    signals.opened.emit(2)
    signals.saved.emit(3)
    assert calls == []  # not now: the sender's own work goes first
    qtbot.waitUntil(lambda: bool(calls), timeout=2_000)
    qtbot.wait(20)
    assert calls == [3]
    signals.opened.emit(4)
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=2_000)
    assert calls == [3, 4]


def test_a_connection_goes_quiet_when_its_widget_is_gone(qtbot):
    signals, widget, calls = Signals(), QWidget(), []
    connect(widget, signals.saved, calls.append)
    signals.saved.emit(1)
    widget.deleteLater()
    qtbot.waitUntil(lambda: not _alive(widget), timeout=2_000)
    signals.saved.emit(2)
    assert calls == [1]

