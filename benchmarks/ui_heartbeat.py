"""How responsive the app stays while a model trains, and how long a labeling round takes.

A QTimer ticks every 2 ms on the Qt event loop of a napari viewer holding the medlabeler dock,
while a training run goes on in its worker. Gaps between ticks are stalls of the UI. Printed:

- heartbeat gaps (p50 / p99 / max, ms) during the run, and with the app idle for comparison;
- training throughput (images/s) and the optimizer-step time;
- the time from pressing Retrain to the refreshed prediction overlay, and the share of it spent
  outside optimizer steps (worker start, imports, data, validation, saving, prediction, scoring).

Figures, not assertions. Runs on the bundled demo (the MNI152 brain MRI in nilearn), labeled by
its reference masks. Run it under a display, e.g.:

    xvfb-run -a python benchmarks/ui_heartbeat.py --epochs 2
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def private_home() -> None:
    """The app's recent-projects list (and demo copy) in a temporary home for this run, unless
    MEDLABELER_HOME names one: the benchmarks' temporary projects had shown up in the user's list."""
    if "MEDLABELER_HOME" not in os.environ:
        home = tempfile.mkdtemp(prefix="medlabeler-benchmark-home-")
        os.environ["MEDLABELER_HOME"] = home
        atexit.register(shutil.rmtree, home, ignore_errors=True)  # it had outlived every run


def percentiles(gaps_ms: list[float]) -> str:
    if not gaps_ms:
        return "no tick at all: the event loop was blocked throughout"
    a = np.asarray(gaps_ms)
    return f"p50 {np.percentile(a, 50):.1f} ms, p99 {np.percentile(a, 99):.1f} ms, max {a.max():.1f} ms ({a.size} ticks)"


#: the width of the app's dock at a 1600 px wide screen, kept empty in the `--bare` runs (plain
#: napari) so that napari's canvas has the app's size
DOCK_WIDTH = 400


def dock_placeholder(viewer) -> None:
    """An empty dock as wide as the app's, on the right of a plain napari viewer."""
    from qtpy.QtWidgets import QWidget

    placeholder = QWidget()
    placeholder.setFixedWidth(DOCK_WIDTH)
    viewer.window.add_dock_widget(placeholder, name="empty", area="right")


class Heartbeat:
    """Timestamps of a 2 ms QTimer; gaps between ticks are how long the event loop was blocked."""

    def __init__(self, interval_ms: int = 2):
        from qtpy.QtCore import Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        # The start counts as a tick: work the caller does right after (an open, a save, a key's
        # handler) blocks the loop before the timer's first tick, and was missed before 2026-12-07.
        self.ticks[:] = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        self.ticks.append(time.perf_counter())  # and so does the stop: the loop may be blocked since the last tick
        return [1000 * (b - a) for a, b in zip(self.ticks, self.ticks[1:])]


class StallSampler:
    """Where the main thread is while the heartbeat is late: a thread samples the main thread's
    Python stack every ``every_ms`` whenever the last tick is older than ``late_ms``, and counts the
    innermost frames of medlabeler / napari / vispy / Qt code seen (C++ time shows as the Python
    frame that called into it). Samples taken while the main thread sleeps in the benchmark's own
    pump are skipped."""

    def __init__(self, beat: Heartbeat, late_ms: float = 30.0, every_ms: float = 5.0, depth: int = 1):
        import threading

        self.depth = depth  # medlabeler frames shown per sample (the innermost ones)
        self.beat, self.late_s, self.every_s = beat, late_ms / 1000, every_ms / 1000
        self.counts: dict[str, int] = {}
        self.stalls: dict[float, dict[str, int]] = {}  # last tick before a stall -> where it was
        self.samples = 0
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)

    def start(self) -> StallSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import sys
        import traceback

        while not self._stop.wait(self.every_s):
            ticks = self.beat.ticks
            if not ticks or not self.beat.timer.isActive() or time.perf_counter() - ticks[-1] < self.late_s:
                continue
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            if stack and stack[-1].name in ("pump", "wait_for", "wait") and stack[-1].filename.endswith(
                    ("ui_heartbeat.py", "ui_loop_heartbeat.py", "next_sample.py", "ui_ct_scroll.py")):
                continue
            ours = [f for f in stack if "/medlabeler/" in f.filename and "/benchmarks/" not in f.filename]
            inner = stack[-1]
            where = f"{Path(inner.filename).name}:{inner.name}"
            if ours:
                chain = " > ".join(f"{Path(f.filename).name}:{f.name}" for f in ours[-self.depth:])
                where = f"{chain} > {where}"
            self.counts[where] = self.counts.get(where, 0) + 1
            self.samples += 1
            stall = self.stalls.setdefault(ticks[-1], {})  # one stall: the samples after the same tick
            stall[where] = stall.get(where, 0) + 1

    def report(self, top: int = 8) -> str:
        if not self.samples:
            return "  no stall sampled"
        rows = sorted(self.counts.items(), key=lambda kv: -kv[1])[:top]
        lines = [f"  {100 * n / self.samples:4.0f}%  {where}" for where, n in rows]
        longest = sorted(self.stalls.values(), key=lambda st: -sum(st.values()))[:3]
        for stall in longest:
            total = sum(stall.values())
            lines.append(f"  one stall of about {total * self.every_s * 1000 + self.late_s * 1000:.0f} ms:")
            lines += [f"    {n:3d} x {where}" for where, n in sorted(stall.items(), key=lambda kv: -kv[1])[:4]]
        return "\n".join(lines)


def record_step_times(calls_module, sink: list[float]):
    """Wrap the UI's training entry so the worker records how long each optimizer step took."""
    original = calls_module.training_run

    def training_run(project, **kwargs):
        start = original(project, **kwargs)

        def timed(token):
            gen = start(token)
            last = time.perf_counter()
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    return stop.value
                now = time.perf_counter()
                if getattr(event, "kind", "") == "step":
                    sink.append(now - last)
                yield event
                last = time.perf_counter()

        return timed

    calls_module.training_run = training_run


def main(argv=None) -> int:
    private_home()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", help="existing demo project folder (default: a fresh one in a temp dir)")
    parser.add_argument("--labels", type=int, default=8, help="slices labeled before training")
    parser.add_argument("--method", default="supervised")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--napari-progress", choices=["auto", "on", "off"], default="auto",
                        help="napari's activity progress bar (auto: off under software OpenGL)")
    parser.add_argument("--hidden", action="store_true", help="do not show the window")
    parser.add_argument("--baseline", action="store_true",
                        help="first run the same training with no window, for the throughput without a GUI")
    args = parser.parse_args(argv)
    # This measures one manual Retrain: keep the background learning loop from taking the training slot.
    os.environ.setdefault("MEDLABELER_LEARN", "0")

    import napari
    from qtpy.QtWidgets import QApplication

    from medlabeler.engine.workflows.demo import label_like_a_clinician
    from medlabeler.engine.workflows.demo_loop import open_or_create_demo
    from medlabeler.ui import engine_calls, workers
    from medlabeler.ui.app import build_app, new_viewer

    tmp = tempfile.TemporaryDirectory(prefix="medlabeler-bench-")
    root = Path(args.project) if args.project else Path(tmp.name) / "demo"
    started = time.perf_counter()
    with open_or_create_demo(root) as project:
        status = project.status()
        if status["labeled"] < args.labels:
            label_like_a_clinician(project, args.labels - status["labeled"])
            label_like_a_clinician(project, 3, split="val")
        status = project.status()
    print(f"demo project: {status['samples']} slices of the MNI152 brain MRI, {status['labeled']} labeled "
          f"({time.perf_counter() - started:.1f} s to prepare)")

    config = {"image_size": args.image_size, "batch_size": args.batch_size,
              "unlabeled_batch_size": args.batch_size, "steps_per_epoch": args.steps_per_epoch}
    if args.baseline:
        from medlabeler.engine.workflows.train import train_project
        from medlabeler.engine.store import Project
        from medlabeler.engine.training.loop import run_to_end

        with Project.open(root) as project:
            base = run_to_end(train_project(project, method=args.method, epochs=args.epochs, config=config))
        print(f"baseline without a window: {base.images_per_second:.1f} images/s over the loop ({base.seconds:.1f} s)")

    if args.napari_progress != "auto":
        os.environ["MEDLABELER_NAPARI_PROGRESS"] = "1" if args.napari_progress == "on" else "0"
    step_times: list[float] = []
    record_step_times(engine_calls, step_times)

    viewer = new_viewer("medlabeler benchmark", show=not args.hidden)
    app = QApplication.instance()
    widget = build_app(viewer, root)
    session = widget.session

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)

    beat = Heartbeat()
    beat.start()
    opened = time.perf_counter()
    from medlabeler.ui import session as session_module

    warm = session_module._WARM_THREAD
    while (warm is not None and warm.is_alive()) or time.perf_counter() - opened < 1.0:
        pump(0.05)
    warming = beat.stop()
    warm_seconds = time.perf_counter() - opened
    beat.start()
    pump(3.0)
    idle = beat.stop()

    beat.start()
    pressed = time.perf_counter()
    if not session.start_training(args.method, init=None, epochs=args.epochs, config=config):
        print("training did not start")
        return 1
    job = session.last_training
    events = []
    job.event.connect(lambda e: events.append((time.perf_counter(), e)))
    session.prediction_changed.connect(lambda p: session.timings.setdefault("overlay_seen", time.perf_counter()) if p else None)
    while job.running:
        app.processEvents()
        time.sleep(0.0005)
    trained = time.perf_counter()
    during_training = beat.stop()
    beat.start()
    while session.jobs.busy or "overlay_seen" not in session.timings:
        app.processEvents()
        time.sleep(0.0005)
        if time.perf_counter() - trained > 300:
            break
    refreshed = session.timings.get("overlay_seen", time.perf_counter())
    during_refresh = beat.stop()
    rescored = session.timings.get("rescored_at")

    result = job.result
    if job.outcome != "done":
        print(f"training {job.outcome}: {job.error}")
        return 1
    total = refreshed - pressed
    in_steps = float(sum(step_times))
    print(f"heartbeat (2 ms timer), idle:              {percentiles(idle)}")
    print(f"heartbeat while torch loads in the background after opening ({warm_seconds:.1f} s): {percentiles(warming)}")
    print(f"heartbeat while training in the worker:   {percentiles(during_training)}")
    print(f"heartbeat while predicting and scoring:   {percentiles(during_refresh)}")
    print(f"training: {result.steps} steps of {args.batch_size} images at {args.image_size} px, "
          f"{result.images_per_second:.1f} images/s over the loop ({result.seconds:.1f} s); "
          f"median optimizer step {1000 * np.median(step_times):.0f} ms")
    print(f"Retrain pressed -> new model stored: {trained - pressed:.1f} s; -> overlay refreshed: {total:.1f} s"
          + (f"; -> queue re-ranked: {rescored - pressed:.1f} s" if rescored else ""))
    print(f"share of Retrain->overlay outside optimizer steps: {100 * (1 - in_steps / total):.0f}% "
          f"({in_steps:.1f} s in {len(step_times)} steps)")
    print(f"main-thread events handled: {len(events)} training events shown; napari progress bar "
          f"{'on' if workers.napari_progress_wanted() else 'off'}; software OpenGL: {workers.software_opengl()}")
    session.shutdown()
    viewer.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
