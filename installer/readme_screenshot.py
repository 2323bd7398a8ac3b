"""Make the README screenshot from the real app: the demo project, the top queued slice, and the
active model's prediction overlaid. Run under a display: xvfb-run -a -s "-screen 0 1600x1000x24" python installer/readme_screenshot.py PROJECT OUT.png
"""

import sys
import time

import numpy as np


def main(project: str, out: str) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from medlabeler.ui.app import build_app, fit_window

    viewer = napari.Viewer(title="medlabeler", show=True)
    widget = build_app(viewer, project)
    fit_window(viewer)  # as the app starts: the screen filled (run under a 1600x1000 screen)
    session = widget.session
    brain_slice = next(s for s in session.project.samples() if s.slice_index == 100)
    session.open_sample(brain_slice.id)
    deadline = time.monotonic() + 180
    while session.current_prediction is None and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    QApplication.processEvents()  # the uncertainty map starts hidden: the prediction itself shows
    image = viewer.screenshot(canvas_only=False, flash=False)
    if float(np.asarray(image)[..., :3].std()) < 10:
        raise SystemExit("the screenshot came out blank")
    from PIL import Image

    Image.fromarray(np.asarray(image)).save(out)
    print(f"wrote {out} {image.shape}; prediction shown: {session.current_prediction is not None}")
    session.shutdown()
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
