"""Run an engine generator on a worker thread; its events come back to the main thread.

The engine computes in generators that yield ``Event`` records and return a result (the
stardist-napari pattern). :class:`EngineJob` drives one such generator on a superqt/napari
``GeneratorWorker`` and re-emits what happens as Qt signals, which Qt delivers on the main
thread (queued connections): the worker thread never touches a layer or a widget.

It adds what a clinician needs around a long run: a napari progress bar, a cancel that sets the
engine's cancel token, errors shown in plain words, and a cap on torch threads so the UI keeps a
core. Step events are thinned to a few per second so a fast loop cannot flood the event loop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from functools import wraps
from typing import Any

from qtpy.QtCore import QCoreApplication, QObject, QThread, Signal

log = logging.getLogger(__name__)

# --- the main-thread rule, checked in debug mode ------------------------------------------------

#: When true, every function decorated with :func:`main_thread_only` checks it runs on the Qt main
#: thread. On by default under tests (MEDLABELER_DEBUG_THREADS=1) and cheap enough to leave on.
DEBUG_THREADS = os.environ.get("MEDLABELER_DEBUG_THREADS", "0") not in ("", "0")
#: How many checked calls ran, and which ran on the wrong thread (names), for tests to read.
THREAD_CHECKS = {"calls": 0, "violations": []}


class WrongThreadError(AssertionError):
    """A function that touches widgets or layers ran outside the Qt main thread."""


def on_main_thread() -> bool:
    """Whether the caller runs on the thread that owns the QApplication."""
    app = QCoreApplication.instance()
    return app is None or QThread.currentThread() is app.thread()


def main_thread_only(func: Callable) -> Callable:
    """Mark a function that touches widgets or layers; in debug mode, raise if called off the main thread."""

    @wraps(func)
    def checked(*args, **kwargs):
        if DEBUG_THREADS:
            THREAD_CHECKS["calls"] += 1
            if not on_main_thread():
                THREAD_CHECKS["violations"].append(func.__qualname__)
                raise WrongThreadError(f"{func.__qualname__} ran on a worker thread")
        return func(*args, **kwargs)

    return checked


# --- plain words for errors ---------------------------------------------------------------------


class JobFailed(Exception):
    """Carries an engine exception across the thread.

    Deliberately not a RuntimeError: superqt treats a RuntimeError from a worker as "the worker was
    deleted" and drops it silently, and torch raises RuntimeError (out of memory, shape errors).
    """

    def __init__(self, original: BaseException):
        self.original = original
        super().__init__(str(original))


def plain_words(action: str, exc: BaseException) -> str:
    """One sentence a clinician can read: what stopped, and why."""
    from medlabeler.engine.errors import MedlabelerError, error_text

    if isinstance(exc, JobFailed):
        exc = exc.original
    text = str(exc).strip()
    if isinstance(exc, MedlabelerError):
        text = error_text(exc).strip()  # the file's name and the problem before its folder
        return f"{action} stopped: {text}" if text else f"{action} stopped."
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return f"{action} ran out of memory. Try fewer images per batch or a smaller image size."
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return f"{action} stopped: cannot use the file {getattr(exc, 'filename', '') or text}."
    first_line = text.splitlines()[0] if text else ""
    return f"{action} stopped because of an internal error ({type(exc).__name__}{': ' + first_line if first_line else ''})."


def show_error_message(message: str) -> None:
    """Show an error in the viewer's notification area (logged at debug level only: messages
    name files, and file names may identify patients)."""
    from napari.utils.notifications import show_error

    log.debug(message)
    show_error(message)


# --- cancel token -------------------------------------------------------------------------------


def make_cancel_token():
    """The engine's cancel token; its module imports no torch, so the window never waits on it."""
    from medlabeler.engine.training.cancel import CancelToken

    return CancelToken()


def keep_torch_clear_of_gl_llvm() -> None:
    """Stop torch from loading triton once an OpenGL driver has loaded its own LLVM (Linux, Mesa).

    Mesa's software and AMD/Intel drivers load libLLVM with global symbols; triton's libtriton
    bundles another LLVM, and loading it afterwards crashes the process (seen under Xvfb when
    torch's optimizer first imports torch._dynamo). Triton is only needed by torch.compile, which
    the engine does not use, so the GUI process simply does without it. Call on the main thread
    before any worker imports torch._dynamo; it does nothing when triton is already loaded (it
    came first, which is safe) or no LLVM is mapped.
    """
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/maps") as maps:
            llvm_loaded = any("libLLVM" in line for line in maps)
    except OSError:
        return
    if llvm_loaded:
        log.info("an OpenGL driver loaded LLVM: triton disabled in this process")
        sys.modules["triton"] = None  # `import triton` now raises ImportError: torch runs without it


_opengl_driver_software: bool | None = None  # None until an OpenGL driver is mapped

#: Parts of the mapped file names of OpenGL drivers: Mesa's (software or hardware) and NVIDIA's
#: (its GL libraries only: CUDA's, which torch maps, say nothing about the window).
_OPENGL_DRIVERS = ("_dri.so", "llvmpipe", "libgallium", "libGLX_nvidia", "libnvidia-glcore")


def software_opengl() -> bool:
    """Whether the window is drawn by Mesa's software OpenGL (llvmpipe: VMs, remote desktops, Xvfb).

    Decided once a driver is mapped (it is never unloaded): every job's start asks, and reading the
    process's thousands of mappings took the main thread up to 5 ms at each `n`."""
    global _opengl_driver_software
    if _opengl_driver_software is not None or not sys.platform.startswith("linux"):
        return bool(_opengl_driver_software)
    try:
        with open("/proc/self/maps") as maps:
            drivers = [line for line in maps if any(part in line for part in _OPENGL_DRIVERS)]
    except OSError:
        return False
    if drivers:
        _opengl_driver_software = any("swrast" in line or "llvmpipe" in line for line in drivers)
    return bool(_opengl_driver_software)


def napari_progress_wanted() -> bool:
    """Show napari's activity progress bar? Not under software OpenGL, unless asked for.

    Its animated "in progress" indicator makes Qt recompose the whole OpenGL window many times a
    second; drawn in software that took over half the CPU and slowed training 2.6x in
    benchmarks/ui_heartbeat.py. The Train dock keeps its own (still) progress bar either way.
    MEDLABELER_NAPARI_PROGRESS=1 or 0 overrides.
    """
    choice = os.environ.get("MEDLABELER_NAPARI_PROGRESS")
    if choice is not None:
        return choice not in ("", "0")
    return not software_opengl()


#: Nice value of the threads that run background jobs (Linux): the scheduler then gives the main
#: thread and the software renderer's threads the CPU first whenever they want it, and the jobs
#: the rest. 0 leaves them at the UI's priority; MEDLABELER_BACKGROUND_NICE overrides.
BACKGROUND_NICE = 10


def background_nice() -> int:
    """BACKGROUND_NICE, or MEDLABELER_BACKGROUND_NICE when that is a whole number 0-19 (anything
    else is logged and ignored: a typo must not stop every background job)."""
    text = os.environ.get("MEDLABELER_BACKGROUND_NICE", "").strip()
    if not text:
        return BACKGROUND_NICE
    if text.isdigit() and int(text) <= 19:
        return int(text)
    log.warning("MEDLABELER_BACKGROUND_NICE=%r is not a whole number from 0 to 19; using %d", text,
                BACKGROUND_NICE)
    return BACKGROUND_NICE


def prepare_worker_thread() -> None:
    """On the worker thread, before a job: leave one core to the UI (the engine's cap_threads)
    and yield the CPU to it (lower_thread_priority)."""
    from medlabeler.engine.training.device import cap_threads

    cap_threads(leave_one=True)
    lower_thread_priority(background_nice())


def lower_thread_priority(nice: int) -> bool:
    """Raise the calling thread's nice value to at least ``nice`` (Linux, where a thread is a task
    of its own; elsewhere, or when refused, nothing changes). Threads it starts inherit it. A
    thread cannot get its priority back without privileges, so a pool thread stays lowered for
    whatever it runs next: Qt's global pool runs background work only (ours, napari's, plugins').
    Returns whether the thread now runs at ``nice`` or a lower priority."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False
    return True


# --- the job ------------------------------------------------------------------------------------

#: Step events closer together than this are thinned out (the last one of a run always passes).
STEP_INTERVAL_S = 0.1
#: After a cancel, how long the engine may keep going before the generator is closed for it.
CANCEL_GRACE_S = 3.0


def _drive(make_gen: Callable[[Any], Iterator], token, cap_threads: bool) -> Generator:
    """Runs on the worker thread: iterate the engine generator, thin step events, return its result."""
    try:
        if cap_threads:
            prepare_worker_thread()
        gen = make_gen(token)
        last_sent = 0.0
        held = None
        cancel_seen = None
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                if held is not None:
                    yield held
                return stop.value
            if token.cancelled:
                cancel_seen = cancel_seen or time.monotonic()
                if time.monotonic() - cancel_seen > CANCEL_GRACE_S:
                    gen.close()
                    return None
            now = time.monotonic()
            if getattr(event, "kind", None) == "step" and now - last_sent < STEP_INTERVAL_S:
                held = event
                continue
            held = None
            last_sent = now
            yield event
    except Exception as exc:  # noqa: BLE001 - every failure must reach the main thread
        raise JobFailed(exc) from exc


def process_events_until(done: Callable[[], bool], timeout_s: float, sleep_s: float) -> bool:
    """Let Qt deliver events until ``done()`` or the timeout (scripts, tests, closing the app);
    returns ``done()``."""
    deadline = time.monotonic() + timeout_s
    app = QCoreApplication.instance()
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(sleep_s)
    app.processEvents()
    return done()


class EngineJob(QObject):
    """One engine generator on a worker thread, with progress, cancel and error reporting.

    ``make_gen(token)`` builds the engine generator (it is called on the worker thread);
    ``show_progress``: napari's progress bar (None: see :func:`napari_progress_wanted`). Signals,
    all delivered on the main thread: ``event(Event)``, ``done(result)`` when it ran to its end,
    ``cancelled()``, ``failed(message)`` (already shown to the user), then ``ended()`` always.
    """

    event = Signal(object)
    done = Signal(object)
    cancelled = Signal()
    failed = Signal(str)
    ended = Signal()

    def __init__(
        self,
        action: str,
        make_gen: Callable[[Any], Iterator],
        *,
        show_progress: bool | None = None,
        cap_threads: bool = True,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.action = action
        self.token = make_cancel_token()
        self._make_gen = make_gen
        self._show_progress = show_progress
        self._cap_threads = cap_threads
        self._pbar = None
        self.worker = None
        self.running = False
        self.outcome: str | None = None  # "done" | "cancelled" | "failed"
        self.result: Any = None
        self.error: str | None = None
        self.events_seen = 0

    # main thread -------------------------------------------------------------------------------
    @main_thread_only
    def start(self) -> EngineJob:
        from superqt.utils import create_worker

        keep_torch_clear_of_gl_llvm()
        self.worker = create_worker(
            _drive,
            self._make_gen,
            self.token,
            self._cap_threads,
            _start_thread=False,
            _ignore_errors=True,
        )
        self.worker.yielded.connect(self._on_event)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_errored)
        self.worker.finished.connect(self._on_finished)
        show = napari_progress_wanted() if self._show_progress is None else self._show_progress
        if show:
            from napari.utils import progress

            self._pbar = progress(total=0, desc=self.action)
        self.running = True
        self.worker.start()
        return self

    @main_thread_only
    def cancel(self) -> None:
        """Ask the engine to stop at its next check; the previous model stays active."""
        if self.running and not self.token.cancelled:
            self.token.cancel()
            pbar = self._pbar
            if pbar is not None:
                pbar.set_description(f"{self.action}: cancelling")

    @property
    def cancel_requested(self) -> bool:
        return self.token.cancelled

    @main_thread_only
    def _on_event(self, event) -> None:
        if event is None:  # a keep-alive: the worker thread looked for a quit request
            return
        self.events_seen += 1
        self._update_progress(event)
        self.event.emit(event)

    def _update_progress(self, event) -> None:
        pbar = self._pbar  # a local: napari's bar may process events, and the job may end meanwhile
        if pbar is None:
            return
        total = getattr(event, "total_steps", None) or getattr(event, "total", None)
        if total and pbar.total != total:
            pbar.total = int(total)
        step = getattr(event, "step", None)
        if step is None:
            step = getattr(event, "done", None)
        if isinstance(step, int) and step > pbar.n:
            pbar.update(step - pbar.n)
        if getattr(event, "kind", None) in ("epoch", "step"):
            loss = getattr(event, "loss", None)
            epoch = getattr(event, "epoch", None)
            parts = [self.action]
            if epoch is not None:
                parts.append(f"epoch {epoch}")
            if isinstance(loss, float):
                parts.append(f"loss {loss:.3f}")
            pbar.set_description(", ".join(parts))

    @main_thread_only
    def _on_returned(self, result) -> None:
        self.result = result
        if self.cancel_requested or getattr(result, "cancelled", False):
            self.outcome = "cancelled"
        else:
            self.outcome = "done"

    @main_thread_only
    def _on_errored(self, exc: BaseException) -> None:
        original = exc.original if isinstance(exc, JobFailed) else exc
        if self.cancel_requested:
            self.outcome = "cancelled"
            return
        log.debug("%s failed", self.action, exc_info=(type(original), original, original.__traceback__))
        self.outcome = "failed"
        self.error = plain_words(self.action, original)

    @main_thread_only
    def _on_finished(self) -> None:
        self.running = False
        pbar, self._pbar = self._pbar, None
        if pbar is not None:
            pbar.close()
        if self.outcome == "done":
            self.done.emit(self.result)
        elif self.outcome == "cancelled":
            self.cancelled.emit()
        else:
            if self.outcome is None:  # finished without returning: aborted from outside (napari's quit)
                self.token.cancel()
                self.outcome = "cancelled"
                self.cancelled.emit()
            else:
                show_error_message(self.error or f"{self.action} failed.")
                self.failed.emit(self.error or "")
        self.ended.emit()

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Process events until the job ended (scripts and benchmarks); True if it did."""
        return process_events_until(lambda: not self.running, timeout_s, 0.002)


class JobSlots(QObject):
    """The app's workers: one training run at a time; prediction/scoring in their own slot.

    A new background (inference) request while one runs cancels the running one and starts
    when it ended, so the overlay and queue always follow the newest model.
    """

    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.training: EngineJob | None = None
        self.inference: EngineJob | None = None
        self._pending_inference: EngineJob | None = None

    @property
    def training_running(self) -> bool:
        return self.training is not None and self.training.running

    @property
    def inference_running(self) -> bool:
        return self.inference is not None and self.inference.running

    @property
    def busy(self) -> bool:
        return self.training_running or self.inference_running or self._pending_inference is not None

    @property
    def inference_idle(self) -> bool:
        """No prediction or scoring runs or waits."""
        return not self.inference_running and self._pending_inference is None

    @main_thread_only
    def start_training(self, job: EngineJob) -> bool:
        """Start a training run unless one is running (returns whether it started)."""
        if self.training_running:
            from napari.utils.notifications import show_info

            show_info("A training run is already going on; cancel it first.")
            return False
        self.training = job
        job.ended.connect(self.changed.emit)
        job.start()
        self.changed.emit()
        return True

    @main_thread_only
    def start_inference(self, job: EngineJob, *, preempt: bool = True) -> None:
        """Start prediction/scoring now, or right after the running one ends.

        ``preempt`` cancels the running one (a newer model makes it moot); without it the new job
        waits its turn (a prediction of another sample must not stop the re-scoring of the pool).
        """
        if self.inference_running:
            if self._pending_inference is not None and self._pending_inference is not job:
                self._pending_inference.deleteLater()
            self._pending_inference = job
            if preempt:
                self.inference.cancel()
            return
        self._launch_inference(job)

    def _launch_inference(self, job: EngineJob) -> None:
        self.inference = job
        job.ended.connect(self._inference_ended)
        job.start()
        self.changed.emit()

    @main_thread_only
    def _inference_ended(self) -> None:
        pending, self._pending_inference = self._pending_inference, None
        if pending is not None:
            self._launch_inference(pending)
        else:
            self.changed.emit()

    @main_thread_only
    def cancel_all(self) -> None:
        self._pending_inference = None
        for job in (self.training, self.inference):
            if job is not None and job.running:
                job.cancel()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Process events until no job runs (for closing the app, scripts and tests)."""
        return process_events_until(lambda: not self.busy, timeout_s, 0.005)
