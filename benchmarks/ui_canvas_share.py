"""How much of the window the scan gets: the widths of napari's docks, the medlabeler dock and
the canvas, in Qt's logical pixels, as `medlabeler app` lays the demo out on this screen.

Run it on screens of the sizes and scalings clinicians have (the virtual screen's size and
``QT_SCALE_FACTOR`` set the logical width), e.g.:

    QT_SCALE_FACTOR=1.25 xvfb-run -a -s "-screen 0 1366x768x24" python benchmarks/ui_canvas_share.py
    xvfb-run -a -s "-screen 0 1366x768x24" python benchmarks/ui_canvas_share.py --screenshot shot.png

Figures, not assertions. The demo project is made in a temporary folder (learning off).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", help="save a screenshot of the screen (ImageMagick's import)")
    args = parser.parse_args()
    os.environ["MEDLABELER_LEARN"] = "0"
    os.environ.setdefault("MEDLABELER_HOME", tempfile.mkdtemp(prefix="medlabeler-home-"))
    from qtpy.QtWidgets import QApplication, QDockWidget

    from medlabeler.engine.workflows.demo_loop import prepare_demo
    from medlabeler.ui.app import build_app, fit_window, new_viewer

    root = prepare_demo(Path(tempfile.mkdtemp(prefix="medlabeler-canvas-")) / "demo")
    viewer = new_viewer()
    build_app(viewer, str(root))
    fit_window(viewer)
    end = time.monotonic() + 4  # the window maximized, the first slice shown
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)
    window = viewer.window._qt_window
    width = window.width()
    print(f"window {width} x {window.height()} (Qt pixels; scale {os.environ.get('QT_SCALE_FACTOR', '1')})")
    for dock in window.findChildren(QDockWidget):
        if dock.isVisible():
            print(f"  {dock.windowTitle():<26} {dock.width():>5}  (its minimum {dock.minimumSizeHint().width()})")
    canvas = viewer.window._qt_viewer.canvas.native.width()
    print(f"  {'canvas':<26} {canvas:>5}  = {100 * canvas / width:.0f}% of the width")
    if args.screenshot:
        os.system(f"import -window root {args.screenshot}")
    viewer.close()


if __name__ == "__main__":
    main()
