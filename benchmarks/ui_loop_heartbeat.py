"""The app with its learning loop on, driven by a simulated clinician: is the UI smooth, does it learn?

The GUI form of `medlabeler benchmark learning-loop`. A napari viewer with the medlabeler dock
opens the bundled demo (the MNI152 brain MRI in nilearn) with the loop on, as a user gets it.
Validation and test slices are labeled with the reference masks first; then, each round, the
clinician opens the queue's next sample (the app's `n`), paints the reference mask into the
labels layer and saves, three times, and waits until the loop decided on a candidate and
re-scored the pool. A 2 ms QTimer measures the Qt event loop throughout: gaps between ticks are
stalls of the UI. Printed: heartbeat p50/p99/max while the loop trains, scores and the clinician
labels; per round the labels, the decision, the wall time; afterwards the test Dice of the model
that was active after each round (measured at the end, off the clock).

Figures, not assertions. Run it under a display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/ui_loop_heartbeat.py --rounds 4

`--bare` measures the floor of the clinician's phase instead: plain napari (no medlabeler, no
learning; an empty dock as wide as the app's) shows the demo volume in an image and a labels layer,
and the same clinician paints the reference mask of a training slice, refreshes the layer and
moves to the next slice, as many times and with the same pauses. What the app adds is the difference from its own clinician phase.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_heartbeat import Heartbeat, StallSampler, dock_placeholder, percentiles, private_home  # noqa: E402  (the same 2 ms timer)


def _time_main_thread_work(sink: dict) -> None:
    """Wrap (at class level, before the app is built) the slots that run on the main thread while
    the loop works, to find what stalls the UI."""
    import functools

    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

    from medlabeler.ui.learning import LearningLoop
    from medlabeler.ui.session import Session
    from medlabeler.ui.widgets.metrics import MetricsWidget
    from medlabeler.ui.widgets.queue import QueueWidget
    from medlabeler.ui.widgets.train import LossPlot, TrainWidget

    def wrap(owner, name: str) -> None:
        original = getattr(owner, name)
        label = f"{owner.__name__}.{name}"

        @functools.wraps(original)
        def timed(*a, **kw):
            start = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                sink.setdefault(label, []).append(time.perf_counter() - start)

        setattr(owner, name, timed)

    for owner, names in ((QueueWidget, ("refresh",)), (TrainWidget, ("refresh_models", "_loop_status", "_on_event")),
                         (MetricsWidget, ("refresh",)), (Session, ("_apply_prediction", "model_promoted")),
                         (LearningLoop, ("_on_event",)), (LossPlot, ("_draw",)), (FigureCanvasQTAgg, ("paintEvent",))):
        for name in names:
            wrap(owner, name)


def pump_until(app, condition, timeout_s: float) -> bool:
    """Run the Qt event loop until `condition()` holds or `timeout_s` passes; whether it held."""
    end = time.perf_counter() + timeout_s
    while time.perf_counter() < end:
        if condition():
            return True
        app.processEvents()
        time.sleep(0.001)
    return False


def bare_clinician(args) -> int:
    """The clinician's phase in plain napari: paint a slice's reference mask, refresh, next slice."""
    import napari
    from qtpy.QtWidgets import QApplication

    from medlabeler.engine.io import read_image
    from medlabeler.engine.io.image import display_orientation
    from medlabeler.engine.workflows.demo import demo_truth
    from medlabeler.engine.workflows.demo_loop import open_or_create_demo

    truth = demo_truth()
    tmp = tempfile.TemporaryDirectory(prefix="medlabeler-bare-bench-")
    with open_or_create_demo(Path(tmp.name) / "demo") as project:
        train = [s.slice_index for s in project.samples(split="train") if truth[s.slice_index].any()]
        image = read_image(project.samples()[0].path)
    volume = np.asarray(image.array, np.float32)
    from medlabeler.ui.app import fit_window, new_viewer

    viewer = new_viewer("bare napari, the clinician's phase", show=not args.hidden)
    dock_placeholder(viewer)
    if not args.hidden:
        fit_window(viewer)  # the window the app's users get (the canvas was 343x559 px before)
    app = QApplication.instance()
    viewer.add_image(volume, contrast_limits=(float(volume.min()), float(volume.max())), name="image")
    labels = viewer.add_labels(np.zeros(volume.shape, np.uint8), name="labels")
    labels.mode = "paint"
    viewer.scene.camera.orientation2d = display_orientation(image.affine)
    viewer.reset_view()
    picks = [train[k] for k in np.random.default_rng(0).permutation(len(train))[: args.rounds * args.per_round + 1]]
    viewer.dims.set_current_step(0, picks[0])
    pump_until(app, lambda: False, 2.0)
    beat, action_ms = Heartbeat(), []
    beat.start()
    for here, following in zip(picks, picks[1:]):
        labels.data[here] = truth[here]
        labels.refresh()
        acted = time.perf_counter()  # the app's `n` would save here; plain napari only moves on
        viewer.dims.set_current_step(0, following)
        action_ms.append(1000 * (time.perf_counter() - acted))
        pump_until(app, lambda: False, 0.3)
    gaps = beat.stop()
    print(f"bare napari, {len(action_ms)} slices painted and left, canvas "
          f"{viewer.window._qt_viewer.canvas.native.width()}x{viewer.window._qt_viewer.canvas.native.height()} px")
    print(f"heartbeat while the clinician paints and moves on (no learning): {percentiles(gaps)}")
    print(f"  of which moving to the next slice (main thread): p50 {np.percentile(action_ms, 50):.0f} ms, "
          f"max {max(action_ms):.0f} ms")
    viewer.close()
    tmp.cleanup()
    return 0


def main(argv=None) -> int:
    private_home()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--warm-share", type=float, default=None,
                        help="share of --steps a warm-started candidate trains (default: the app's, 1/3, at "
                             "least 100 steps)")
    parser.add_argument("--steps", type=int, default=60,
                        help="optimizer steps of a model from scratch (a candidate warm-started from the active "
                             "model trains a third, at least 100, as in the app)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--hidden", action="store_true", help="do not show the window")
    parser.add_argument("--profile", action="store_true", help="time the main-thread work of each widget")
    parser.add_argument("--bare", action="store_true", help="the clinician's phase in plain napari (no app, no learning)")
    args = parser.parse_args(argv)
    if args.bare:
        return bare_clinician(args)

    import os

    os.environ["MEDLABELER_LEARN"] = "1"
    import napari
    from qtpy.QtWidgets import QApplication

    from medlabeler.engine.workflows.demo import demo_truth
    from medlabeler.engine.workflows.demo_loop import open_or_create_demo
    from medlabeler.engine.workflows.evaluate import evaluate_project
    from medlabeler.engine.store import Project
    from medlabeler.ui.app import build_app, fit_window, new_viewer

    truth = demo_truth()
    tmp = tempfile.TemporaryDirectory(prefix="medlabeler-loop-bench-")
    root = Path(tmp.name) / "demo"
    with open_or_create_demo(root) as project:
        for split in ("val", "test"):
            for s in project.samples(split=split):
                if truth[s.slice_index].any():
                    project.save_label(s.id, truth[s.slice_index], author="oracle", origin="manual")
        n_val = len(project.samples(split="val", labeled=True))

    slow_calls: dict[str, list[float]] = {}
    if args.profile:
        _time_main_thread_work(slow_calls)
    viewer = new_viewer("medlabeler loop benchmark", show=not args.hidden)
    app = QApplication.instance()
    widget = build_app(viewer)
    if not args.hidden:
        fit_window(viewer)  # maximized, as `medlabeler app` starts (the canvas was 343x559 px before)
    session = widget.session
    loop = session.learning
    if args.warm_share is not None:
        loop.options["warm_share"] = args.warm_share
    # Every round's active model is measured on test at the end, so none of their weights may go:
    # the loop's removal of old weights (milliseconds a round) is off in this benchmark.
    from medlabeler.engine.workflows import learn_loop

    learn_loop.remove_old_weights = lambda project: ([], 0)
    loop.config = {"image_size": args.image_size, "features": [8, 16, 32, 64], "batch_size": 8,
                   "unlabeled_batch_size": 8, "lr": 3e-3, "steps": args.steps,
                   "steps_per_epoch": max(1, args.steps // 2)}
    loop.new_labels = args.per_round

    def wait_for(condition, timeout_s: float) -> bool:
        return pump_until(app, condition, timeout_s)

    pump_until(app, lambda: False, 3.0)  # the clinician picks the project: the window's first frames go by
    session.open_project(root)
    print(f"demo: {len(session.project.samples())} slices, {n_val} validation slices labeled; loop running: "
          f"{loop.running}; {args.steps} steps from scratch, warm-started share "
          f"{'default' if args.warm_share is None else args.warm_share}, at {args.image_size} px")
    beat = Heartbeat()
    sampler = StallSampler(beat, depth=3).start() if args.profile else None
    rows, labeling_gaps, loop_gaps, action_ms = [], [], [], []
    for rnd in range(1, args.rounds + 1):
        beat.start()
        wait_for(lambda: "waiting for labels" in loop.now and session.sample is not None, 600)
        if rnd == 1:  # the clinician starts once the first slice is on screen, its layers shown
            wait_for(lambda: False, 1.0)
        loop_gaps += beat.stop()
        before = len(loop.decisions)
        beat.start()
        saved_at = time.perf_counter()
        for _ in range(args.per_round):
            if session.sample is None or session.sample.split != "train" or session.project.label(session.sample.id):
                session.open_next()
                pump_until(app, lambda: False, 0.3)  # the clinician looks at it before painting
            sample = session.sample
            layer = session.view.labels_layer
            layer.data[sample.slice_index] = truth[sample.slice_index]
            layer.refresh()
            acted = time.perf_counter()  # the clinician's save + next (the `n` key's work)
            session.save_current()
            session.open_next()
            action_ms.append(1000 * (time.perf_counter() - acted))
            pump_until(app, lambda: False, 0.3)  # a clinician's pause between slices
        labeling_gaps += beat.stop()
        beat.start()
        decided = wait_for(lambda: len(loop.decisions) > before, 900)
        wait_for(lambda: "waiting for labels" in loop.now, 600)
        loop_gaps += beat.stop()
        round_s = time.perf_counter() - saved_at
        if not decided:
            print(f"round {rnd}: no decision within 900 s")
            break
        decision = loop.decisions[-1]
        active = session.project.active_model().version
        rows.append((rnd, session.project.status()["per_split"]["train"]["labeled"], active, round_s, decision.message))
        print(f"round {rnd}: {rows[-1][1]} train labels, active v{active}, {round_s:.1f} s: {decision.message}",
              flush=True)
    print(f"heartbeat (2 ms timer) while the loop trains, validates, scores: {percentiles(loop_gaps)}")
    canvas = viewer.window._qt_viewer.canvas.native
    print(f"heartbeat while the clinician opens, paints and saves (loop running; canvas {canvas.width()}x"
          f"{canvas.height()} px): {percentiles(labeling_gaps)}")
    print(f"  of which the clinician's own actions (save + open next, main thread): "
          f"p50 {np.percentile(action_ms, 50):.0f} ms, max {max(action_ms):.0f} ms ({len(action_ms)} actions)")
    per_round = [action_ms[k:k + args.per_round] for k in range(0, len(action_ms), args.per_round)]
    print("  each action (ms), round by round: " + " | ".join(" ".join(f"{a:.0f}" for a in r) for r in per_round))
    slow = sorted(loop_gaps)[-5:]
    print("five longest stalls while the loop works (ms): " + ", ".join(f"{g:.0f}" for g in slow))
    for name, times in sorted(slow_calls.items(), key=lambda kv: -max(kv[1])):
        print(f"  main thread {name}: {len(times)} calls, max {1000 * max(times):.0f} ms, "
              f"total {1000 * sum(times):.0f} ms")
    if sampler is not None:
        sampler.stop()
        print(f"where the main thread was while the heartbeat was over 30 ms late ({sampler.samples} samples):")
        print(sampler.report(top=14))
    session.learning.stop()
    wait_for(lambda: not loop.running, 60)
    session.shutdown()
    viewer.close()
    with Project.open(root, readonly=True) as project:
        for rnd, labels, version, seconds, message in rows:
            dice = evaluate_project(project, "test", version)["dice"]
            print(f"round {rnd}: {labels} labels, active v{version}: test Dice {dice:.4f}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
