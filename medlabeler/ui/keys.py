"""Keyboard: one scheme for the whole app, shown in the Label tab and the README ("Keys").

medlabeler's own keys: ``n`` saves and opens the next sample of the queue, ``s`` saves, ``a``
accepts the model's prediction as the label and opens the next (reviewing predictions from the
keyboard), ``u`` and ``g`` show or hide the uncertainty map and Grad-CAM, ``w`` steps through the
CT windows, and the
digits 1-9 pick a label: the class of the image (classification: saved at once, the next sample
opens) or, in segmentation, the label to paint with the brush.

The digits are bound on the viewer and on the open image and labels layers: napari gives the
active layer's own keys priority, and its Labels layer uses 1-7 for its modes (1 eraser, 2 paint,
3 polygon, 4 fill, 5 picker, 6 pan/zoom, 7 transform), an Image layer 1-2. medlabeler takes the
digits on purpose, says so in the keys help, and leaves napari's letter keys for the same modes
alone: E eraser, P paint, F fill, L picker, Z pan/zoom, [ and ] brush size, M a new label.
"""

from __future__ import annotations

import inspect
import weakref

NEXT_KEY = "n"
SAVE_KEY = "s"
ACCEPT_KEY = "a"  # free on napari's Labels and Image layers (Points and Shapes select all with it)
ACCEPT_HELP = "accept the model's prediction as the label and open the next (not over a label of your own)"
UNCERTAINTY_KEY = "u"
GRADCAM_KEY = "g"
WINDOW_KEY = "w"
WINDOW_HELP = "the next CT window: brain, soft tissue, lung, bone, the file's own (kept for the next scans)"

#: (key, what it does), shown in the dock's keys help and written in README.md.
SEGMENTATION_KEYS = (
    ("1-9", "pick label 1-9 and the brush (replaces napari's digit mode keys)"),
    ("E", "eraser (napari)"),
    ("F", "fill an area closed by your strokes (napari; it fills your labels, not the image)"),
    ("P", "brush (napari)"),
    ("[ ]", "smaller / larger brush (napari)"),
    ("Z", "pan and zoom (napari; hold Space for a moment)"),
    ("Ctrl+Z", "undo (napari)"),
    (SAVE_KEY, "save the labels (nothing painted on a new sample: saved as all background; twice on a "
               "validation or test sample)"),
    (NEXT_KEY, "save and open the next sample of the queue (one left unlabeled is skipped: asked for after "
               "the rest)"),
    (ACCEPT_KEY, ACCEPT_HELP),
    (UNCERTAINTY_KEY, "show / hide the uncertainty map"),
    (WINDOW_KEY, WINDOW_HELP),
)
CLASSIFICATION_KEYS = (
    ("1-9", "label the image as class 1-9 and open the next"),
    (NEXT_KEY, "open the next sample of the queue (this one, unlabeled, is skipped: asked for after the rest)"),
    (ACCEPT_KEY, ACCEPT_HELP),
    (GRADCAM_KEY, "show / hide Grad-CAM (where the model looked)"),
    (WINDOW_KEY, WINDOW_HELP),
)


def keys_help(kind: str) -> str:
    """The keys of a task kind as rich text for the dock."""
    rows = SEGMENTATION_KEYS if kind == "segmentation" else CLASSIFICATION_KEYS
    return "<b>Keys</b><br>" + "<br>".join(f"<b>{key}</b> {what}" for key, what in rows)


def install_viewer_keys(viewer, session) -> None:
    """medlabeler's keys on the viewer. They act only while one of medlabeler's layers (or none)
    is the active layer: with the user's own layer active, `s` had saved the open sample as all
    background while the user worked on their layer."""
    ref = weakref.ref(session)

    def next_sample(_viewer):
        s = ref()
        if s is not None:
            s.open_next()

    def save(_viewer):
        s = ref()
        if s is not None:
            saved = s.save_current() or s.save_as_background()
            if s.viewer is not None and not saved:
                s.viewer.status = "nothing to save: no change since the last save"

    def accept(_viewer):
        s = ref()
        if s is not None and s.accept_prediction():  # refused (no prediction, a hand label): stay to see why
            s.open_next()

    keys = {NEXT_KEY: next_sample, SAVE_KEY: save, ACCEPT_KEY: accept, UNCERTAINTY_KEY: _overlay_key(ref, "uncertainty"),
            GRADCAM_KEY: _overlay_key(ref, "grad-cam"), WINDOW_KEY: _window_key(ref),
            **{str(digit): _digit_key(ref, digit) for digit in range(1, 10)}}
    for key, action in keys.items():
        press = _on_our_layers(ref, key, action)
        press.before = viewer.bind_key(key, press, overwrite=True)  # (installed again: the press before, then theirs)


def _on_our_layers(ref, key: str, action):
    """``action`` when a medlabeler project is open and the active layer is one of its layers (or
    no layer is active). Otherwise the key does what it did before medlabeler took it (a user's
    own binding: a trial's `n` for their next frame did nothing, also after the dock closed), or
    the status line says why it did nothing."""
    def press(target):
        s = ref()
        if s is None or s.viewer is None:
            return _as_before(press, target)
        if s.project is None or s.view is None:
            if not _as_before(press, target):
                s.viewer.status = f"{key}: no medlabeler project is open (open one in the medlabeler dock)"
            return
        active = s.viewer.layers.selection.active
        if active is not None and not any(active is layer for layer in s.view.layers.values()):
            if not _as_before(press, target):
                s.viewer.status = (f"{key} is medlabeler's key for its own layers: the active layer, {active.name}, "
                                   "is not one (select a medlabeler layer first)")
            return
        action(target)

    press.before = None
    return press


def _as_before(press, target) -> bool:
    """Run the binding ``press`` replaced, if any (its press part: napari runs a function that
    yields up to the yield on press, the rest on release); True if there was one."""
    before = getattr(press, "before", None)
    if not callable(before):
        return False
    result = before(target)
    if inspect.isgenerator(result):
        next(result, None)
    return True


#: The status-bar hint napari shows for a layer; its own names the digit mode keys taken here.
SEGMENTATION_HINT = ("1-9 label and brush, E eraser, F fill, P brush, [ ] brush size, Z pan/zoom, s save, n next, "
                     "a accept prediction")
CLASSIFICATION_HINT = "1-9 label the image as that class and open the next, n next, a accept prediction, g Grad-CAM"


def install_layer_keys(layer, session) -> None:
    """The digits on a layer of the open sample (beats that layer's own mode keys), and a status
    hint that says so (napari's names its digit keys, which no longer do what it says)."""
    ref = weakref.ref(session)
    for digit in range(1, 10):
        layer.bind_key(str(digit), _digit_key(ref, digit), overwrite=True)
    if not getattr(layer, "_medlabeler_hint", False):
        layer._medlabeler_hint = True
        layer.events.mode.connect(lambda _event: _set_hint(ref, layer))  # after napari's own handler
    _set_hint(ref, layer)


def _set_hint(ref, layer) -> None:
    s = ref()
    if s is None or s.project is None:
        return
    hint = SEGMENTATION_HINT if s.project.task.kind == "segmentation" else CLASSIFICATION_HINT
    layer.help = hint
    if s.viewer is not None and s.viewer.layers.selection.active is layer:
        s.viewer.help = hint




def _overlay_key(ref, kind: str):
    def toggle(_target):
        s = ref()
        if s is None or s.view is None:
            return
        if kind not in s.view.overlay_kinds():
            if s.viewer is not None:
                s.viewer.status = f"no {kind} map in a {s.task.kind} project"
            return
        shown = s.toggle_overlay(kind)
        if s.viewer is not None:
            waiting = shown and s.current_prediction is None
            s.viewer.status = (f"{kind} on: shown once a model has predicted this sample" if waiting
                               else f"{kind} {'shown' if shown else 'hidden'}")

    return toggle


def _window_key(ref):
    def press(_target):
        s = ref()
        if s is None or s.view is None or s.viewer is None:
            return
        shown = s.view.next_window()
        s.viewer.status = (f"window: {shown}; {WINDOW_KEY}: the next" if shown else
                           f"{WINDOW_KEY} steps through CT windows: this image is not a CT (its file names no CT "
                           "modality and it has no air in Hounsfield units); its contrast is set in layer controls")

    return press


def _digit_key(ref, digit: int):
    def press(_target):
        s = ref()
        if s is None or s.project is None:
            return
        names = s.project.task.names
        if digit > len(names):
            if s.viewer is not None:
                which = ", ".join(f"{i} {name}" for i, name in enumerate(names, 1))
                s.viewer.status = f"no label {digit} in this project: {which}"
            return
        if s.project.task.kind == "classification":
            s.label_class(digit - 1)
        else:
            s.paint_with(digit)

    return press
