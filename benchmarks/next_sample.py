"""How long `n` takes: from the key press to the next sample on screen, and to its prediction shown.

On the bundled demo (the MNI152 brain MRI in nilearn). Each round paints the open slice with its
reference mask (a stand-in for a clinician), presses `n` as napari's canvas dispatches it, and
records two times: until the next sample is shown (the key handler returned and the canvas
repainted), and until the active model's prediction of it is overlaid (predicted on a worker).
Printed as p50 / max over the rounds; the target is <= 150 ms to the prediction. Also printed:
how long the key handler held the main thread, what one repaint of the unchanged window costs
(the floor of "shown": under Xvfb the canvas is drawn by software OpenGL), and how often the
app had ranked the queue and predicted the next sample ahead (while the clinician painted).

Between two presses the clinician takes ``--think-ms`` (default 1000 ms; painting a slice takes
longer) and the benchmark lets the app's background work settle; ``--think-ms 0`` presses again
as soon as the prediction is shown. ``--loop on`` runs with the learning loop on, as the app
opens by default (it trains whenever 3 new labels arrived, so the figures include a CPU that
trains); ``off`` (default) measures labeling alone. Figures, not assertions. Run it under a
display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/next_sample.py --rounds 20

Without --project, a demo project is made in a temporary folder with a small model trained on
a few reference slices (a minute on a 2-core CPU); with --project, its active model is used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_heartbeat import private_home  # noqa: E402

SMALL_MODEL = {"image_size": 96, "batch_size": 8, "steps": 30, "features": [8, 16, 32, 64]}


def prepare(root: Path) -> Path:
    """A demo project with 6 train and 2 validation reference labels, a small model, its scores."""
    from medlabeler.engine.workflows.active_loop import score_project
    from medlabeler.engine.workflows.demo import label_like_a_clinician
    from medlabeler.engine.workflows.demo_loop import open_or_create_demo
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.training import run_to_end

    with open_or_create_demo(root) as project:
        if project.active_model() is None:
            label_like_a_clinician(project, 6)
            label_like_a_clinician(project, 2, split="val")
            run_to_end(train_project(project, method="supervised", config=SMALL_MODEL))
            run_to_end(score_project(project))
    return root


def wait(predicate, timeout_s: float = 30.0) -> bool:
    from qtpy.QtWidgets import QApplication

    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        QApplication.processEvents()
        time.sleep(0.0005)
    return True


def stats(values_ms: list[float]) -> str:
    a = np.asarray(values_ms)
    return f"p50 {np.percentile(a, 50):.0f} ms, max {a.max():.0f} ms (n={a.size})"


def main() -> None:
    private_home()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", help="a demo project with an active model (default: make one)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--think-ms", type=float, default=1000.0, help="the clinician's time between two presses")
    parser.add_argument("--loop", choices=("on", "off"), default="off", help="the learning loop on while labeling")
    args = parser.parse_args()

    import os

    os.environ["MEDLABELER_LEARN"] = "1" if args.loop == "on" else "0"
    from qtpy.QtWidgets import QApplication

    from medlabeler.engine.workflows.demo import demo_truth
    from medlabeler.ui.app import build_app, fit_window, new_viewer

    root = Path(args.project) if args.project else prepare(Path(tempfile.mkdtemp()) / "demo")
    truth = demo_truth()
    viewer = new_viewer()
    widget = build_app(viewer, root)
    fit_window(viewer)
    session = widget.session
    canvas = viewer.window._qt_viewer.canvas
    handler = viewer.window._qt_viewer._key_map_handler
    wait(lambda: session.current_prediction is not None and session.jobs.inference_idle, 120)

    saving_ms: list[float] = []
    save = session.save_current

    def timed_save():  # the label written durably (fsync) before the queue re-ranks
        start = time.perf_counter()
        try:
            return save()
        finally:
            saving_ms.append(1000 * (time.perf_counter() - start))

    session.save_current = timed_save
    floor_ms = []
    for _ in range(5):
        QApplication.processEvents()
        start = time.perf_counter()
        canvas.native.repaint()
        floor_ms.append(1000 * (time.perf_counter() - start))
    shown_ms, predicted_ms, saved_ms, handler_ms, missing = [], [], [], [], 0
    ahead = {"ranked": 0, "predicted": 0}
    ranked_on_main = []
    rank_now = session.rankings.rank_now

    def counted_rank_now(project, key):
        known = session.rankings.get(key) is not None
        ranked_on_main.append(not known)
        return rank_now(project, key)

    session.rankings.rank_now = counted_rank_now
    for _ in range(args.rounds):
        think_until = time.perf_counter() + args.think_ms / 1000
        wait(lambda: time.perf_counter() >= think_until and session.jobs.inference_idle and not session.rankings.busy, 120)
        sample = session.sample
        session.view.set_current_mask(truth[sample.slice_index])
        start = time.perf_counter()
        saving_ms.clear()
        ranked_on_main.clear()
        handler.press_key("n")
        handler.release_key("n")
        handler_ms.append(1000 * (time.perf_counter() - start))
        canvas.native.repaint()  # the new slice drawn before the clock stops
        shown_ms.append(1000 * (time.perf_counter() - start))
        saved_ms.append(sum(saving_ms))
        ahead["ranked"] += not any(ranked_on_main)
        ahead["predicted"] += session.view.prediction_on_screen == session.sample.id
        opened = session.sample.id
        if session.current_prediction is not None and session.view.prediction_on_screen == opened:
            predicted_ms.append(shown_ms[-1])  # made ahead: drawn in the same repaint as the slice
        elif wait(lambda: session.current_prediction is not None and session.view.prediction_on_screen == opened):
            QApplication.processEvents()
            canvas.native.repaint()
            predicted_ms.append(1000 * (time.perf_counter() - start))
        else:
            missing += 1

    session.flush_saves()
    print(f"demo project {root}, model v{session.project.active_model().version}, {args.rounds} rounds of paint + n, "
          f"think {args.think_ms:.0f} ms, learning loop {args.loop}")
    print(f"repaint of the unchanged window:  {stats(floor_ms)}  (the floor of 'shown' on this display)")
    print(f"n -> next sample shown:           {stats(shown_ms)}")
    print(f"  key handler (main thread held): {stats(handler_ms)}")
    print(f"  of which saving the label:      {stats(saved_ms)}  (handed to the label writer thread)")
    print(f"  queue ranked ahead: {ahead['ranked']}/{args.rounds}, prediction made ahead: "
          f"{ahead['predicted']}/{args.rounds}")
    if predicted_ms:
        print(f"n -> its prediction overlaid:     {stats(predicted_ms)}  (target <= 150 ms)")
    if missing:
        print(f"{missing} rounds got no prediction within 30 s")
    session.shutdown()
    viewer.close()


if __name__ == "__main__":
    main()
