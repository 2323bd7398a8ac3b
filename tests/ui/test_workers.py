"""The worker plumbing: events reach the main thread, cancel, errors in plain words, one run at a time."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import pytest
from qtpy.QtCore import QCoreApplication, QThread

from medlabeler.ui import workers
from medlabeler.ui.workers import EngineJob, JobSlots

pytestmark = pytest.mark.gui


@dataclass
class Ev:
    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None


@dataclass
class Result:
    steps: int
    cancelled: bool = False


def counting(n, delay=0.0):
    def make(token):
        def gen():
            for i in range(1, n + 1):
                if token.cancelled:
                    return Result(i - 1, cancelled=True)
                time.sleep(delay)
                yield Ev("step", i, n, loss=1.0 / i)
            yield Ev("epoch", n, n, epoch=1, loss=0.5)
            return Result(n)

        return gen()

    return make


def run(qtbot, job, timeout=10_000):
    with qtbot.waitSignal(job.ended, timeout=timeout):
        job.start()
    return job


def test_events_arrive_on_main_thread_and_result_returns(qtbot):
    threads, events, results = [], [], []
    job = EngineJob("Test run", counting(5, delay=0.01))
    job.event.connect(lambda e: (events.append(e), threads.append(QThread.currentThread())))
    job.done.connect(results.append)
    run(qtbot, job)
    assert job.outcome == "done"
    assert results and results[0].steps == 5
    assert events[-1].kind == "epoch"
    main = QCoreApplication.instance().thread()
    assert threads and all(t is main for t in threads)
    assert workers.THREAD_CHECKS["calls"] > 0  # the handlers were checked


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
def test_background_jobs_run_at_a_lower_priority_than_the_ui(qtbot, monkeypatch):
    import os

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if main_before >= workers.BACKGROUND_NICE:
        pytest.skip("the tests already run at the background priority: nothing to lower")
    monkeypatch.delenv("MEDLABELER_BACKGROUND_NICE", raising=False)

    def priority_of_the_job_thread(token):
        def gen():
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            yield  # a generator

        return gen()

    results = []
    job = EngineJob("Test run", priority_of_the_job_thread)
    job.done.connect(results.append)
    run(qtbot, job)
    assert results == [workers.BACKGROUND_NICE]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before  # the UI keeps its own
    assert workers.lower_thread_priority(0) is False  # 0: left alone


def test_the_background_priority_setting_never_stops_a_job(monkeypatch, caplog):
    for text, nice in (("0", 0), (" 5 ", 5), ("", workers.BACKGROUND_NICE)):
        monkeypatch.setenv("MEDLABELER_BACKGROUND_NICE", text)
        assert workers.background_nice() == nice
    for typo in ("abc", "10.5", "-3", "40"):
        monkeypatch.setenv("MEDLABELER_BACKGROUND_NICE", typo)
        assert workers.background_nice() == workers.BACKGROUND_NICE
        assert typo in caplog.text


@pytest.mark.parametrize("driver, software", [("/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so", True),
                                              ("/usr/lib/x86_64-linux-gnu/dri/iris_dri.so", False)])
def test_software_opengl_reads_the_mappings_until_a_driver_is_there(monkeypatch, driver, software):
    """Every job's start asks: the process's mappings are read until an OpenGL driver shows up,
    then never again (it is never unloaded), whether it draws in software or not."""
    import io

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps")
    reads, maps = [], ["7f00 r-xp libc.so.6\n", "7f08 r-xp site-packages/nvidia/cudnn/lib/libcudnn.so.9\n"]  # CUDA

    def fake_open(path, *args, **kwargs):
        reads.append(path)
        return io.StringIO("".join(maps))

    monkeypatch.setattr(workers, "_opengl_driver_software", None)
    monkeypatch.setattr(workers, "open", fake_open, raising=False)
    assert not workers.software_opengl() and not workers.software_opengl()
    maps.append(f"7f10 r-xp {driver}\n")  # the window's OpenGL came up
    assert workers.software_opengl() == software and workers.software_opengl() == software
    assert reads == ["/proc/self/maps"] * 3


def test_fast_step_events_are_thinned_but_the_last_arrives(qtbot):
    events = []
    job = EngineJob("Fast run", counting(5000))
    job.event.connect(events.append)
    run(qtbot, job)
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) < 500  # a 5000-step loop must not flood the event loop
    assert events[-1].step == 5000  # the end always arrives (here on the epoch event)


def test_cancel_sets_the_engine_token(qtbot):
    job = EngineJob("Slow run", counting(10_000, delay=0.005))
    cancelled, done = [], []
    job.cancelled.connect(lambda: cancelled.append(True))
    job.done.connect(done.append)
    job.event.connect(lambda e: job.cancel() if e.step >= 3 else None)
    run(qtbot, job)
    assert job.token.cancelled
    assert job.outcome == "cancelled" and cancelled and not done
    assert job.result.steps < 10_000


def test_a_generator_that_ignores_cancel_is_closed_after_a_grace(qtbot, monkeypatch):
    monkeypatch.setattr(workers, "CANCEL_GRACE_S", 0.05)
    closed = []

    def stubborn(token):
        def gen():
            try:
                while True:
                    time.sleep(0.005)
                    yield Ev("log")
            finally:
                closed.append(True)

        return gen()

    job = EngineJob("Stubborn run", stubborn)
    job.event.connect(lambda e: job.cancel())
    run(qtbot, job)
    assert job.outcome == "cancelled" and closed


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "ran out of memory"),
        (ValueError("bad shape"), "internal error (ValueError: bad shape)"),
    ],
)
def test_errors_are_shown_in_plain_words(qtbot, monkeypatch, error, words):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)

    def failing(token):
        def gen():
            yield Ev("step", 1, 2)
            raise error

        return gen()

    job = EngineJob("Training", failing)
    failed = []
    job.failed.connect(failed.append)
    run(qtbot, job)
    assert job.outcome == "failed"
    assert failed and words in failed[0] and failed[0].startswith("Training")
    assert shown == failed


def test_engine_errors_keep_their_file_and_problem(qtbot, monkeypatch):
    from medlabeler.engine.errors import InputError

    monkeypatch.setattr("napari.utils.notifications.show_error", lambda m: None)

    def failing(token):
        raise InputError("/data/ct/slice7.dcm", "pixel data is truncated")
        yield  # pragma: no cover - makes this a generator

    job = run(qtbot, EngineJob("Training", failing))
    # the file's name and the problem before the folder: a notification shows its first line only
    assert job.error == "Training stopped: slice7.dcm: pixel data is truncated (in /data/ct)"


def test_only_one_training_run_at_a_time(qtbot, monkeypatch):
    monkeypatch.setattr("napari.utils.notifications.show_info", lambda m: None)
    slots = JobSlots()
    first = EngineJob("First", counting(10_000, delay=0.002))
    second = EngineJob("Second", counting(3))
    assert slots.start_training(first)
    assert not slots.start_training(second)
    assert slots.training is first and second.worker is None
    with qtbot.waitSignal(first.ended, timeout=10_000):
        first.cancel()
    assert slots.start_training(second)
    assert slots.wait_idle(10)


def test_a_newer_background_job_replaces_the_running_one(qtbot):
    slots = JobSlots()
    old = EngineJob("Old scores", counting(10_000, delay=0.002))
    new = EngineJob("New scores", counting(3))
    slots.start_inference(old)
    slots.start_inference(new)
    assert slots.wait_idle(10)
    assert old.outcome == "cancelled" and new.outcome == "done"


def test_the_thread_check_catches_a_worker_thread():
    calls = []

    @workers.main_thread_only
    def touch_widget():
        calls.append(True)

    caught = []

    def from_thread():
        try:
            touch_widget()
        except workers.WrongThreadError as exc:
            caught.append(exc)

    from qtpy.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join()
    assert caught and not calls
    assert workers.THREAD_CHECKS["violations"] == ["test_the_thread_check_catches_a_worker_thread.<locals>.touch_widget"]
    workers.THREAD_CHECKS["violations"].clear()  # expected here; the fixture checks the rest
    touch_widget()
    assert calls == [True]


def test_napari_progress_bar_follows_the_run(qtbot):
    from napari.utils import progress

    seen = []
    job = EngineJob("Bar run", counting(20, delay=0.01), show_progress=True)
    job.event.connect(lambda e: seen.append({p.total for p in progress._all_instances if p.desc.startswith("Bar run")}))
    run(qtbot, job)
    assert {20} in seen  # the bar took the run's total number of steps
    assert not [p for p in progress._all_instances if p.desc.startswith("Bar run")]  # closed at the end
