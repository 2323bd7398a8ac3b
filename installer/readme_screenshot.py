"""Make the README screenshot from the real app: the demo project, the top queued slice, and the
active model's prediction overlaid. Run under a display: xvfb-run -a python installer/readme_screenshot.py PROJECT OUT.png
"""

import sys
import time

import numpy as np


def main(project: str, out: str) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from medlabeler.ui.app import build_app

    viewer = napari.Viewer(title="medlabeler", show=True)
    viewer.window.resize(1500, 900)
    widget = build_app(viewer, project)
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
    for layer in viewer.layers:  # show the predicted segmentation itself
        if "uncertainty" in layer.name:
            layer.visible = False
    QApplication.processEvents()
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
