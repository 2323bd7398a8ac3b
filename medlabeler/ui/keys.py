"""Keyboard: 'n' opens the next sample of the queue, 's' saves the labels, 1-9 pick a class.

Bound on the viewer (and, for the class keys, on the image layer too: napari gives the active
layer's own keys priority, and an Image layer uses 1 and 2 for its modes).
"""

from __future__ import annotations

import weakref

NEXT_KEY = "n"
SAVE_KEY = "s"


def install_viewer_keys(viewer, session) -> None:
    ref = weakref.ref(session)

    def next_sample(_viewer):
        s = ref()
        if s is not None:
            s.open_next()

    def save(_viewer):
        s = ref()
        if s is not None:
            saved = s.save_current()
            if s.viewer is not None and not saved:
                s.viewer.status = "nothing to save"

    viewer.bind_key(NEXT_KEY, next_sample, overwrite=True)
    viewer.bind_key(SAVE_KEY, save, overwrite=True)
    for digit in range(1, 10):
        viewer.bind_key(str(digit), _class_key(ref, digit - 1), overwrite=True)


def install_layer_class_keys(layer, session) -> None:
    """Class keys on the image layer of a classification project (beats its mode keys 1, 2)."""
    ref = weakref.ref(session)
    for digit in range(1, 10):
        layer.bind_key(str(digit), _class_key(ref, digit - 1), overwrite=True)


def _class_key(ref, value: int):
    def label(_target):
        s = ref()
        if s is None or s.project is None or s.project.task.kind != "classification":
            return
        if value < len(s.project.task.names):
            s.label_class(value)

    return label
