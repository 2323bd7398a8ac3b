"""Training throughput in the app's background learning loop vs the same loop headless.

The headless form is what `medlabeler learn` runs: the engine's learning loop (`learn`) in a
process of its own, no Qt. The GUI form is the app with the loop on (its worker thread, the Qt
event loop running, the window shown). Both run on copies of one demo project (the MNI152 brain
MRI in nilearn, validation slices and ``--labels`` training slices labeled with the reference
masks, no model yet) with the same run config, until the loop has decided on its first
candidate; a run's images/s is the engine's own figure (its "done" event: images seen / run
time). The two forms alternate ``--repeats`` times (other load on the machine drifts). Printed:
images/s of each run and the ratio GUI / headless of the medians (target >= 0.9).

Figures, not assertions. Run it under a display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/ui_throughput.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_heartbeat import private_home  # noqa: E402

HEADLESS = """
import json, sys
from medlabeler.engine.store import Project
from medlabeler.engine.workflows.learn_loop import learn
from medlabeler.engine.training.events import run_to_end
rates = []
def seen(event):
    run = getattr(event, "run_event", None)
    if run is not None and run.kind == "done" and event.kind == "train":
        rates.append(run.images_per_second)
with Project.open(sys.argv[1]) as project:
    run_to_end(learn(project, new_labels=int(sys.argv[3]), config=json.loads(sys.argv[2]), until_idle=True), seen)
print(json.dumps(rates))
"""


def prepare(root: Path, labels: int) -> None:
    from medlabeler.engine.workflows.demo import demo_truth
    from medlabeler.engine.workflows.demo_loop import open_or_create_demo

    truth = demo_truth()
    with open_or_create_demo(root) as project:
        for s in project.samples(split="val"):
            if truth[s.slice_index].any():
                project.save_label(s.id, truth[s.slice_index], author="oracle", origin="manual")
        train = [s for s in project.samples(split="train") if truth[s.slice_index].any()]
        for s in train[:: max(1, len(train) // labels)][:labels]:
            project.save_label(s.id, truth[s.slice_index], author="oracle", origin="manual")


def headless(root: Path, config: dict, new_labels: int) -> list[float]:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, "-c", HEADLESS, str(root), json.dumps(config), str(new_labels)],
                         capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"headless learn failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_the_app(root: Path, config: dict, new_labels: int) -> list[float]:
    os.environ["MEDLABELER_LEARN"] = "1"
    import napari
    from qtpy.QtWidgets import QApplication

    from medlabeler.ui.app import build_app, fit_window, new_viewer

    viewer = new_viewer("medlabeler throughput benchmark")
    app = QApplication.instance()
    widget = build_app(viewer)
    fit_window(viewer)
    session = widget.session
    loop = session.learning
    loop.config = dict(config)
    loop.new_labels = new_labels
    rates: list[float] = []
    session.training_event.connect(lambda run: rates.append(run.images_per_second) if run.kind == "done" else None)
    session.open_project(root)
    end = time.perf_counter() + 1800
    while not loop.decisions and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)
    loop.stop()
    while loop.running:
        app.processEvents()
        time.sleep(0.01)
    session.shutdown()
    viewer.close()
    app.processEvents()
    return rates


def main(argv=None) -> int:
    private_home()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--labels", type=int, default=6, help="training slices labeled before the loop starts")
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps of the candidate")
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args(argv)
    config = {"image_size": args.image_size, "features": [8, 16, 32, 64], "batch_size": 8,
              "unlabeled_batch_size": 8, "lr": 3e-3, "steps": args.steps, "steps_per_epoch": max(1, args.steps // 2)}

    tmp = tempfile.TemporaryDirectory(prefix="medlabeler-throughput-")
    base = Path(tmp.name) / "base"
    prepare(base, args.labels)
    gui, cli = [], []
    for k in range(args.repeats):
        for form, sink, run in (("headless", cli, headless), ("app", gui, in_the_app)):
            copy = Path(tmp.name) / f"{form}{k}"
            shutil.copytree(base, copy)
            rates = run(copy, config, args.labels)
            sink.extend(rates)
            print(f"{form:8s} run {k + 1}: " + ", ".join(f"{r:.1f}" for r in rates) + " images/s", flush=True)
    if gui and cli:
        ratio = float(np.median(gui) / np.median(cli))
        print(f"training throughput: app {np.median(gui):.1f} images/s, headless {np.median(cli):.1f} images/s "
              f"(medians of {len(gui)} and {len(cli)} runs of {args.steps} steps at {args.image_size} px): "
              f"app / headless = {ratio:.2f} (target >= 0.9)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
