"""A guard against a reference-count bug of PySide6 that aborts the app after enough signals.

PySide6 6.12.0 (the newest on PyPI in Dec 2026) takes one reference too few when a Python call
of ``signal.emit()`` returns its bool: every emit lowers the reference count of ``True`` by one
(measured: 50 emits, -50). On Python 3.11, where ``True``, ``False`` and ``None`` are ordinary
objects, the count reaches zero after some thousands of emits (napari and superqt emit from
Python too) and CPython aborts the process: "Fatal Python error: bool_dealloc" (or
"none_dealloc"), seen in benchmarks/next_sample.py with the learning loop on, on main as well.
From Python 3.12 these objects are immortal and the bug is harmless.

:func:`guard_singletons` checks for the leak once (a few emits of a private signal) and, where it
exists, gives the three singletons a reference count so large that no session could exhaust it:
they are never freed anyway. Nothing else changes.
"""

from __future__ import annotations

import ctypes
import sys

#: References added to True, False and None where the leak exists (2**40: about 10**12 emits).
RESERVE = 1 << 40
_GUARDED = False


def emit_leaks_references(emits: int = 16) -> bool:
    """Whether emitting a signal from Python lowers the reference count of True (the PySide6 bug)."""
    from qtpy.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(emits):
        probe.ping.emit()
    leaked = sys.getrefcount(True) - before <= -emits // 2
    probe.deleteLater()
    return leaked


def guard_singletons() -> bool:
    """Protect True, False and None from the leak, once per process; True if a guard was needed."""
    global _GUARDED
    if _GUARDED or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if not emit_leaks_references():
        return False
    for singleton in (True, False, None):  # ob_refcnt is the first field of every CPython object
        ctypes.c_ssize_t.from_address(id(singleton)).value += RESERVE
    _GUARDED = True
    return True
