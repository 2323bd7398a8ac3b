"""The store <-> napari layers, always on the main thread.

:class:`SampleView` shows the open sample: its pixels with spacing as scale and the window as
contrast limits (a slice sample shows its whole volume, jumped to the slice), a Labels layer with
the project's label names and colours, and the model's prediction overlay, uncertainty map and
Grad-CAM. It knows which label slices changed since they were loaded or saved, so saving writes
only those through ``Project.save_label``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from medlabeler.engine.io.image import CT_WINDOWS
from medlabeler.ui.workers import main_thread_only

IMAGE = "image"
LABELS = "labels"
PREDICTION = "prediction"
UNCERTAINTY = "uncertainty"
GRADCAM = "grad-cam"
LAYER_PREFIX = "medlabeler "

#: Bottom to top. The clinician's own paint is on top, where it is seen and edited.
STACK = (IMAGE, PREDICTION, UNCERTAINTY, GRADCAM, LABELS)
#: Shown when a prediction arrives, until toggled (keys in keys.py, boxes in the Review tab): the
#: uncertainty map and Grad-CAM tint the whole image, so they are asked for, not imposed.
DEFAULT_VISIBLE = {PREDICTION: True, UNCERTAINTY: False, GRADCAM: False}

#: The prediction is drawn as outlines (pixels wide), so the clinician's filled paint stands out.
PREDICTION_CONTOUR = 1
#: ... one pixel wider per this many pixels of the image's longer side: napari draws the outline in
#: the image's pixels, and one pixel of a 1955 px chest X-ray fitted to the screen broke into dots.
CONTOUR_PER_PIXELS = 500
#: The brush's starting size, in the image's pixels, per this many of its longer side (at least
#: DEFAULT_BRUSH): 10 px painted a 1955 px X-ray's lung in strokes a fifth of a screen pixel apart.
BRUSH_PER_PIXELS = 50
DEFAULT_BRUSH = 10


def prediction_contour(shape) -> int:
    """The outline width that reads on screen for an image of ``shape`` (its last two are Y, X)."""
    return max(PREDICTION_CONTOUR, round(max(shape[-2:]) / CONTOUR_PER_PIXELS))


def brush_for(shape) -> tuple[int, int]:
    """(starting brush size, the brush slider's largest) for an image of ``shape``: an eighth of a tiny
    image's side at most (10 px covered half of a 20 px one), a fiftieth of a large one's."""
    side = max(shape[-2:])
    size = max(1, min(DEFAULT_BRUSH, side // 8)) if side < DEFAULT_BRUSH * BRUSH_PER_PIXELS else round(side / BRUSH_PER_PIXELS)
    return size, max(60, side // 8)

#: The uncertainty map is a hint over the image, not a replacement for it: transparent where the
#: model is sure (normalised entropy below this), more opaque the less sure it is.
UNCERTAINTY_HIDDEN_BELOW = 0.15
UNCERTAINTY_OPACITY = 0.8
#: The layers made before any project opens (`make_spare_layers`), bottom to top, and the shape of
#: their placeholder data: a stack of one slice, so napari shows no slider for it.
SPARE_KINDS = (IMAGE, PREDICTION, UNCERTAINTY, LABELS)
SPARE_SHAPE = (1, 8, 8)
#: Largest number of pixels for which robust contrast limits are computed on every voxel.
_CONTRAST_SAMPLE = 2_000_000


class Volume(NamedTuple):
    """What the screen needs of the volume a slice sample belongs to."""

    pixels: np.ndarray
    scale: tuple[float, ...]
    limits: tuple[float, float]
    orientation: tuple[str, str]  # napari's 2D camera orientation (engine.io.image.display_orientation)
    markers: tuple[str, str, str, str] | None = None  # patient directions at the top, bottom, left, right


def read_volume(sample, project) -> Volume:
    """Pixels, scale, contrast limits and screen orientation of the volume a slice sample belongs
    to (no layers: any thread, so that the percentiles of a volume without a window are not taken
    on the main one). Slices of a DICOM series that no readable file holds any more are told to
    the project: they take no label."""
    from medlabeler.engine.errors import InputError
    from medlabeler.engine.io import read_image
    from medlabeler.engine.io.image import display_orientation, screen_markers

    try:
        image = read_image(sample.path, sample.series_uid)
    except InputError:
        project.note_unreadable(sample)  # its other slices leave the queue too
        raise
    project.note_lost_slices(sample, image.metadata.get("blank_slices"))
    array = image.array
    if array.dtype not in (np.float32, np.uint8, np.int16, np.uint16):
        array = array.astype(np.float32)
    return Volume(array, tuple(float(v) for v in image.spacing[:3]), contrast_limits(array, image.window),
                  display_orientation(image.affine), screen_markers(image.affine))


@dataclass
class LabelsRead:
    """The stored labels of a volume's slices, read with the volume off the main thread: the
    Labels layer's array, a baseline equal to it, and the label version each slice was read at
    (`SampleView._load_labels` reads again on the main thread only the slices changed since)."""

    key: tuple  # (path, series_uid), as Shown.key
    labels: np.ndarray
    baseline: np.ndarray
    versions: dict[int, int]  # sample id -> version read (labeled slices only)


def volume_key(sample) -> tuple:
    """(path, series) of the volume a slice sample belongs to: what its volume is read, kept and
    shown under."""
    return (sample.path, sample.series_uid)


def volume_slices(project, key: tuple) -> dict[int, int]:
    """Slice index -> sample id of the slice samples of the volume ``key`` (path, series_uid)."""
    return {s.slice_index: s.id for s in project.samples()
            if volume_key(s) == key and s.slice_index is not None}


def read_volume_labels(sample, project, shape: tuple[int, ...]) -> LabelsRead:
    """The stored labels of the slices of ``sample``'s volume (of ``shape``), on any thread: at a
    512x512x300 CT they took 70-120 ms of the main thread's stall as the volume opened."""
    from medlabeler.engine.errors import MedlabelerError

    key = volume_key(sample)
    slices = {sid: index for index, sid in volume_slices(project, key).items()}
    current = {sid: v for sid, v in project.current_label_versions().items() if sid in slices}
    labels = np.zeros(shape, dtype=np.uint8)
    baseline = np.zeros(shape, dtype=np.uint8)  # not a copy of labels: that writes every page
    versions = {}
    for sample_id, version in current.items():
        try:
            mask = project.load_label(sample_id, version)
        except MedlabelerError:  # a damaged mask file: left to the main thread, which says so (or
            continue             # finds the clinician's newer strokes being written)
        if isinstance(mask, np.ndarray) and mask.shape == shape[1:]:
            labels[slices[sample_id]] = baseline[slices[sample_id]] = mask
        versions[sample_id] = version
    return LabelsRead(key, labels, baseline, versions)


def volume_bytes(sample) -> int:
    """About how many bytes the volume of a slice sample holds once read (float32)."""
    return 4 * int(sample.n_slices or 1) * int(np.prod(sample.spatial_shape))


def layer_name(kind: str) -> str:
    return LAYER_PREFIX + kind


def hex_to_rgba(color: str) -> np.ndarray:
    """'#rrggbb' (or a napari colour name) -> RGBA floats."""
    from napari.utils.colormaps.standardize_color import transform_color

    return np.asarray(transform_color(color)[0], dtype=np.float32)


def label_colormap(names, colors):
    """DirectLabelColormap: 0 transparent, value i+1 the colour of names[i], anything else grey."""
    from napari.utils.colormaps import DirectLabelColormap

    mapping = {None: np.array([0.5, 0.5, 0.5, 1.0], np.float32), 0: np.zeros(4, np.float32)}
    for i, color in enumerate(colors[: len(names)]):
        mapping[i + 1] = hex_to_rgba(color)
    return DirectLabelColormap(color_dict=mapping)


def label_features(names) -> dict[str, list]:
    """Labels-layer features: one row per value, so napari's status bar names the label under the cursor."""
    return {"index": list(range(len(names) + 1)), "name": ["background", *names]}


def warm_up_layers() -> None:
    """Pay napari's first-layer costs (pandas for label features, pint's unit registry, the layer
    and vispy modules: about a second on a 2-core CPU) on a thread before the first image opens,
    instead of on the main thread when it does. Makes throwaway layers that no viewer holds."""
    import napari.layers

    # napari's private modules (a head start only), and scipy.spatial: napari turns the camera to a
    # scan's orientation with it (80 ms of import on the main thread as the demo opened)
    for module in ("napari._vispy.layers.image", "napari._vispy.layers.labels", "scipy.spatial.transform"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    napari.layers.Image(np.zeros((2, 2, 2), np.float32), scale=(1.0, 1.0, 1.0), contrast_limits=(0.0, 1.0))
    napari.layers.Labels(np.zeros((2, 2, 2), np.uint8), scale=(1.0, 1.0, 1.0), features=label_features(["label"]))
    try:  # each Labels layer draws its polygon tool with vispy lines, whose first dash atlas computes
        from vispy.visuals.line.dash_atlas import DashAtlas  # 13 patterns in Python (0.2 s); cached after

        DashAtlas()
    except ImportError:
        pass


def layer_spec(kind: str, names, colors) -> tuple[str, type, dict]:
    """(layer type, dtype, keyword arguments) of the labels layer or an overlay, for a project
    with label ``names`` and ``colors``."""
    if kind in (LABELS, PREDICTION):
        return "labels", np.uint8, {"opacity": 0.6 if kind == LABELS else 0.45,
                                    "colormap": label_colormap(names, colors), "features": label_features(names)}
    if kind == IMAGE:
        return "image", np.float32, {"colormap": "gray", "contrast_limits": (0.0, 1.0)}
    if kind == UNCERTAINTY:
        return "image", np.float32, {"colormap": uncertainty_colormap(), "blending": "translucent",
                                     "contrast_limits": (0.0, 1.0), "opacity": UNCERTAINTY_OPACITY}
    return "image", np.float32, {"colormap": "inferno", "blending": "additive", "contrast_limits": (0.0, 1.0),
                                 "opacity": 0.5}


def uncertainty_colormap():
    """Magenta where the model is unsure, nothing where it is sure: drawn additively in inferno,
    the map's low values had tinted the whole slice brown and washed the brain out to white."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=[[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.1, 0.6, 1.0]],
                    controls=[0.0, UNCERTAINTY_HIDDEN_BELOW, 1.0], name="medlabeler uncertainty")


def placeholder(ndim: int, dtype) -> np.ndarray:
    """What a kept layer holds while no project uses it: a few bytes, of its dimensions."""
    return np.zeros((1,) * (ndim - 2) + SPARE_SHAPE[-2:], dtype)


@main_thread_only
def make_spare_layers(viewer) -> dict[str, object]:
    """The layers of a slice stack (what a CT, an MRI and the demo open in), hidden and empty,
    made before any project opens, for `SampleView` to take. Adding a napari layer holds the
    event loop 100-170 ms on a 2-core CPU (its canvas visual, its controls, the sliders), whatever
    its size; giving an existing hidden layer a 512x512x300 volume takes 10-15 ms. Made at the
    app's start, they turn a project's opening from one stall of about 300 ms into a few short
    ones. A 2D project (an X-ray, a photo) opened after a volume makes its own layers (napari
    cannot change a layer's dimensions), which the next 2D project then takes."""
    made = {}
    for kind in SPARE_KINDS:
        layer_type, dtype, kwargs = layer_spec(kind, ["label"], ["#808080"])
        add = viewer.add_labels if layer_type == "labels" else viewer.add_image
        made[kind] = add(placeholder(len(SPARE_SHAPE), dtype), name=layer_name(kind), visible=False, **kwargs)
    make_marker_overlays(viewer, warm=True)
    viewer.layers.selection.clear()  # no layer controls for an empty placeholder
    return made


def make_marker_overlays(viewer, warm: bool = False) -> None:
    """The canvas overlays that hold the patient directions (`SampleView._place_markers`), blank;
    none before napari 0.9, which has no canvas overlays. ``warm``: holding every letter, unseen,
    so that napari's next frame renders their glyphs (14 glyphs: 70-150 ms as a scan first
    showed)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is None:
        return
    from napari.components.overlays import TextOverlay

    for position in MARKER_POSITIONS:
        if MARKER_PREFIX + position not in overlays:
            overlays[MARKER_PREFIX + position] = TextOverlay(
                position=position, font_size=MARKER_FONT_SIZE, color=MARKER_COLOR if not warm else "transparent",
                text=MARKER_LETTERS if warm else "", visible=True)


#: Where the patient-direction letters go on the canvas: (top, bottom, left, right), as
#: engine.io.image.screen_markers gives them.
MARKER_POSITIONS = ("top_center", "bottom_center", "middle_left", "middle_right")
MARKER_PREFIX = "medlabeler_marker_"
MARKER_FONT_SIZE = 12
#: Every letter a marker may show (engine.io.image.screen_markers)
MARKER_LETTERS = "APRLSI"
MARKER_COLOR = "#ffd54f"  # amber: read on grey anatomy and on black air, apart from every label colour

#: The CT windows `w` steps through after the file's own, narrowest first.
CT_WINDOW_ORDER = ("brain", "soft_tissue", "lung", "bone")


#: A grey image whose darkest values reach this is a CT in Hounsfield units (air is -1000) though its
#: file does not say so: NIfTI, the format of most CT research data, has no modality.
HU_AIR_AT_MOST = -900.0


def looks_like_ct(modality: str, pixels: np.ndarray, rgb: bool) -> bool:
    """Whether the CT windows apply: a DICOM CT, or a grey image of unknown modality with air in HU
    (read from a strided sample of the pixels: a 512x512x300 CT is not scanned whole)."""
    kind = str(modality or "").upper()
    if rgb or pixels.size == 0 or kind not in ("CT", "OT", ""):
        return False  # a colour image, or a DICOM that names another modality (MR, PT, ...)
    if kind == "CT":
        return True
    sample = pixels[tuple(slice(None, None, max(1, n // 64)) for n in pixels.shape)]
    return float(np.min(sample)) <= HU_AIR_AT_MOST


def describe_window(name: str | None, limits: tuple[float, float]) -> str:
    """ "bone (L 400 W 1800)" as a radiologist reads a window; `name` None: the file's own."""
    low, high = limits
    shown = name.replace("_", " ") if name else "the file's"
    return f"{shown} (L {(low + high) / 2:g} W {high - low:g})"


def contrast_limits(array: np.ndarray | None, window: tuple[float, float] | None) -> tuple[float, float]:
    """The file's window (centre, width) when it has one, else robust percentiles of the pixels."""
    if window is not None and window[1] and window[1] > 0:
        centre, width = float(window[0]), float(window[1])
        return centre - width / 2, centre + width / 2
    flat = array.reshape(-1)
    if flat.size > _CONTRAST_SAMPLE:
        flat = flat[:: flat.size // _CONTRAST_SAMPLE + 1]
    low, high = np.percentile(flat, [0.5, 99.5]) if flat.size else (0.0, 1.0)
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        low, high = float(np.min(flat, initial=0)), float(np.max(flat, initial=1))
        high = high if high > low else low + 1
    return float(low), float(high)


#: Slices compared at once when saving: a few numpy calls, not one per slice (each call lets
#: another thread take the GIL: a CT's 300 slices took 0.5-1.5 s beside a busy Python thread, and
#: the demo's saves stalled the UI while the loop trained), and a bounded temporary, not one of a
#: whole CT stack (78 MB, 0.3 s at the first save).
_COMPARE_BYTES = 16 * 2**20


def labels_listed(names) -> str:
    """A project's labels with their numbers, as the keys pick them: "1 grey, 2 white"."""
    return ", ".join(f"{i} {name}" for i, name in enumerate(names[:9], 1)) + (", ..." if len(names) > 9 else "")


def _changed_slices(data: np.ndarray, baseline: np.ndarray) -> list[int]:
    """Indices of the slices (first axis) in which ``data`` and ``baseline`` differ."""
    per = max(1, _COMPARE_BYTES // max(1, data[0].nbytes))
    changed = []
    for start in range(0, data.shape[0], per):
        differs = (data[start:start + per] != baseline[start:start + per]).reshape(-1, data[0].size).any(axis=1)
        changed.extend(start + int(i) for i in np.flatnonzero(differs))
    return changed


def forget_strokes(layer) -> None:
    """Empty a labels layer's undo history as it gets another volume's (or project's) labels:
    Ctrl+Z replayed a stroke of the volume before into this one, saved with the next save."""
    reset = getattr(layer, "_reset_history", None)  # napari's private method (0.4-0.9); toggling the
    if callable(reset):  # public `editable` would reset it too, but also the tool
        reset()


def _window_open(viewer) -> bool:
    """Whether ``viewer``'s window is still there (napari deletes it as the viewer closes: a step
    of an opening left for later must not add a layer to a closed viewer). A viewer never shown
    gets no Hide event, so the session is not told that it closed."""
    window = getattr(viewer, "window", None)
    return window is None or hasattr(window, "_qt_window")  # napari's private attribute, as its test fixture reads it


def _slice_at_a_time(dims) -> bool:
    """Whether napari shows the volume's slices one at a time, as saved (2D, along the first axis)."""
    return dims.ndisplay == 2 and tuple(dims.displayed) == (dims.ndim - 2, dims.ndim - 1)


def _differs(mask: np.ndarray) -> np.ndarray:
    """A baseline that no painted mask equals (a value no label uses), so the mask counts as changed."""
    return np.full_like(mask, np.iinfo(mask.dtype).max)


@dataclass
class Shown:
    """What the viewer holds for the open volume or image."""

    key: tuple  # (path, series_uid) for a volume, ("sample", id) for a 2D sample
    pixels: np.ndarray
    scale: tuple[float, ...]
    rgb: bool
    is_stack: bool  # slices of one volume, each a sample
    slices: dict[int, int] = field(default_factory=dict)  # slice index -> sample id (stack only)
    file_limits: tuple[float, float] | None = None  # the contrast the file asks for (or its percentiles)
    ct: bool = False  # in HU: the CT window presets apply
    baseline: np.ndarray | None = None  # labels as last loaded or saved


@dataclass
class PredictionView:
    """A prediction ready for display: the mask or class, probabilities, uncertainty map, Grad-CAM."""

    sample_id: int
    label: int | np.ndarray | None
    probabilities: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    cam: np.ndarray | None = None
    model_version: int | None = None


class SampleView:
    """Layers of the open sample in one napari viewer."""

    def __init__(self, viewer, project, pending=None, spare: dict | None = None, overlay_visible: dict | None = None):
        """``spare``: layers made before (`make_spare_layers`, or an earlier project's, from
        `remove_layers(keep=True)`) to show this project's samples in, rather than adding new ones.
        ``overlay_visible``: the clinician's choice of overlays shown (shared with the session, which
        keeps it for the next project, as the Review tab's boxes do); the defaults if not given."""
        self.viewer = viewer
        self.project = project
        self._pending = pending or dict  # () -> {sample id: label being written}: newer than the store
        self.task = project.task
        self.sample = None
        self.shown: Shown | None = None
        self.layers: dict[str, object] = {}
        self.prediction_on_screen: int | None = None  # sample id whose overlays are shown
        self._overlay_slices: dict[str, int] = {}  # overlay kind -> the slice written in its volume
        self._volume_cache: dict[tuple, tuple] = {}
        self._labels_read: LabelsRead | None = None  # taken once, by the layers it was read for
        self.overlay_visible = dict(DEFAULT_VISIBLE) if overlay_visible is None else overlay_visible
        self.window_choice: str | None = None  # a CT window picked with `w`, kept across scans; None: the file's
        self._markers: tuple[str, str, str, str] | None = None  # patient directions of the scan on screen
        self._camera_before: tuple | None = None  # napari's 2D orientation before a scan turned it
        self._restyle: set[str] = set()  # layers taken from before that still have another project's look
        self._to_show: list[str] = []  # layers hidden while a new volume went in, shown one per turn
        self._steps: list = []  # what is left of an opening, one step a turn (`_later`)
        self._paint_when_shown = False  # the labels layer, taken from before, gets the brush once shown
        self._stepping: Shown | None = None  # what the steps under way are for
        self._guarded = None  # the labels layer whose label numbers are kept to the project's
        self._axis_labels_before: tuple | None = None  # napari's slider names before a volume named it "slice"
        self._tool_outside: str | None = None  # the labels tool while the slider stands past the scan
        self._take(spare or {})
        for emitter in (viewer.dims.events.order, viewer.dims.events.ndisplay):
            emitter.connect(self._place_markers)
            emitter.connect(self._view_turned)

    # --- opening ------------------------------------------------------------------------------
    @main_thread_only
    def show(self, sample, prediction: PredictionView | None = None) -> None:
        """Show ``sample``: reuse the volume on screen when it is another slice of it.

        ``prediction``: the sample's prediction, when one is at hand: its overlays are written
        before the slider moves, so that napari slices and draws each layer once.
        """
        key = self._key(sample)
        core = [self.layers.get(IMAGE)] + ([self.layers.get(LABELS)] if self.task.kind == "segmentation" else [])
        if self.shown is None or self.shown.key != key or any(
                layer is None or layer not in self.viewer.layers for layer in core):  # or the user deleted one
            self._replace_layers(sample, key)
        elif LABELS in self.layers and self.sample is not None and self.sample.id != sample.id:
            # another slice of the volume on screen: Ctrl+Z here undid the stroke of the slice
            # before (saved already), and the next save wrote it there as a new version, unpainted
            forget_strokes(self.layers[LABELS])
        self.sample = sample
        pred = prediction if prediction is not None and prediction.sample_id == sample.id else None
        if pred is not None and self.shown.is_stack:
            written = self._write_overlays(pred, draw=False)
            self._hide_overlays(keep=written)
            point = sample.slice_index * self.shown.scale[0]
            moved = self.viewer.dims.point[0] != point
            if moved:
                self.viewer.dims.set_point(0, point)  # slices the visible layers, overlays included
            for kind in written:
                self._show_overlay_layer(kind, refresh=not moved)
            self.prediction_on_screen = pred.sample_id
        else:
            self.clear_prediction()
            if self.shown.is_stack:
                self.viewer.dims.set_point(0, sample.slice_index * self.shown.scale[0])
            if pred is not None:
                self.show_prediction(pred)
        if LABELS in self.layers:
            self._keep_to_the_labels(self.layers[LABELS])
            self.layers[LABELS].selected_label = max(1, self.layers[LABELS].selected_label)
            if self.project.readonly:  # nothing painted could be saved: napari then pans and zooms.
                self.layers[LABELS].editable = False  # after every data change, which makes it editable
        self.select_top()

    @main_thread_only
    def select_top(self) -> None:
        """Keep the layers in STACK order and the labels layer (else the image) selected."""
        ours = [self.layers[k] for k in STACK if k in self.layers and self.layers[k] in self.viewer.layers]
        layers = self.viewer.layers
        if [layers.index(layer) for layer in ours] != sorted(layers.index(layer) for layer in ours) or (
                ours and layers.index(ours[-1]) != len(layers) - 1):
            for layer in ours:  # to the top, in order (user layers stay below)
                layers.move(layers.index(layer), len(layers))
        keep = next((layer for layer in reversed(ours) if layer in (self.labels_layer, self.layers.get(IMAGE))), None)
        if keep is not None and layers.selection.active is not keep:
            layers.selection.active = keep

    def _layer_spec(self, kind: str) -> tuple[str, type, dict]:
        """(layer type, dtype, keyword arguments) of the labels layer or an overlay."""
        return layer_spec(kind, self.task.names, self.task.colors)

    def _kinds(self) -> tuple[str, ...]:
        """The layers this project's samples open in."""
        return (IMAGE, LABELS, *self.overlay_kinds()) if self.task.kind == "segmentation" else (IMAGE, *self.overlay_kinds())

    def _take(self, spare: dict) -> None:
        """Take the layers an earlier project (or the app's start) left: those this project uses
        get its look when first given data (`_restyle`); the others leave the viewer."""
        for kind, layer in spare.items():
            if layer not in self.viewer.layers:
                continue  # deleted by the user meanwhile
            if kind in self._kinds():
                self.layers[kind] = layer
                self._restyle.add(kind)
            else:
                self.viewer.layers.remove(layer)

    def _apply_look(self, kind: str, layer) -> None:
        """Give a layer taken from before (`_take`) this project's label names, colours and look."""
        if kind not in self._restyle:
            return
        self._restyle.discard(kind)
        if kind == IMAGE:
            return  # its colormap and window come with its data (`_replace_layers`)
        _, _, kwargs = self._layer_spec(kind)
        for name in ("colormap", "features", "opacity", "blending"):
            if name in kwargs:
                setattr(layer, name, kwargs[name])
        self._style(kind, layer)
        if kind == LABELS:
            layer.selected_label = 1  # the last project's may be no label of this one
            self._paint_when_shown = True  # napari keeps a hidden layer's tool at pan/zoom

    def overlay_kinds(self) -> tuple[str, ...]:
        """The overlays this project's predictions have."""
        return (PREDICTION, UNCERTAINTY) if self.task.kind == "segmentation" else (GRADCAM,)

    def _key(self, sample) -> tuple:
        if sample.slice_index is not None:
            return volume_key(sample)
        return ("sample", sample.id)

    def _replace_layers(self, sample, key) -> None:
        """Put another volume or image on screen, reusing the layers (adding napari layers is slow).
        Everything that can fail (reading the pixels and the stored labels) comes before anything
        on screen changes: a damaged file leaves the image on screen as it was."""
        if sample.slice_index is not None:
            pixels, scale, limits, orientation, markers = self._volume(sample)
            slices = volume_slices(self.project, key)
            is_stack = True
        else:
            pixels = self.project.load_pixels(sample)  # a 2D image, or a whole volume
            scale = tuple(float(v) for v in sample.spacing)
            window = self.project.display_window(sample)  # a whole CT keeps its DICOM window, as its slices do
            limits = contrast_limits(pixels, window) if window is not None else None
            slices = {}
            is_stack = False
            # as a radiologist reads it (known from the read above); an image without geometry as stored
            orientation = self.project.display_orientation(sample)
            markers = self.project.display_markers(sample)
        rgb = not sample.is_volume and pixels.ndim == 3 and pixels.shape[-1] in (3, 4)
        if rgb and pixels.dtype != np.uint8:
            pixels = np.clip(pixels, 0, 255).astype(np.uint8)
        previous = self.shown
        shown = Shown(key=key, pixels=pixels, scale=scale, rgb=rgb, is_stack=is_stack, slices=slices,
                      ct=looks_like_ct(sample.modality, pixels, rgb),
                      file_limits=None if rgb else limits or contrast_limits(pixels, None))
        labels = None
        if self.task.kind == "segmentation":
            labels, shown.baseline = self._load_labels(shown)
        self._steps.clear()  # the rest of an earlier opening: queued again below where still due
        self.shown = shown
        try:
            self._put_on_screen(previous, labels, orientation, markers)
        finally:  # whatever failed, the layers hidden for this image are shown and the overlays fitted
            for _ in self._to_show:
                self._later(self._show_next)
            self.prepare_overlays_soon()

    def _put_on_screen(self, previous: Shown | None, labels: np.ndarray | None, orientation, markers) -> None:
        pixels, scale, rgb = self.shown.pixels, self.shown.scale, self.shown.rgb
        image_kwargs = {"scale": scale, "rgb": rgb}
        if not rgb:
            image_kwargs["contrast_limits"] = self._window_limits()
            image_kwargs["colormap"] = "gray"
        self._set_layer(IMAGE, pixels, "image", **image_kwargs)
        if labels is not None:
            self._set_layer(LABELS, labels, "labels", scale=scale, **self._layer_spec(LABELS)[2])
        self._blank_overlays()
        if pixels.ndim == 3 and not rgb:  # the slider reads "slice 50", as the queue does (from 0)
            if self._axis_labels_before is None:
                self._axis_labels_before = tuple(self.viewer.dims.axis_labels)
            self.viewer.dims.axis_labels = ("slice", "y", "x")
        camera = self._camera()
        turned = (hasattr(camera, "orientation2d")  # napari >= 0.5.5
                  and tuple(str(v) for v in camera.orientation2d) != orientation)
        if turned:
            if self._camera_before is None:
                self._camera_before = tuple(str(v) for v in camera.orientation2d)
            camera.orientation2d = orientation
        if turned or previous is None or previous.pixels.shape != pixels.shape or previous.scale != scale:
            self.viewer.reset_view()
        self._markers = markers
        if self._markers_made():
            self._place_markers()
        else:  # napari makes the letters' overlays: 55 ms
            self._later(self._place_markers)

    def _show_next(self) -> None:
        """Show the next layer hidden while a new volume went in (napari slices and draws it)."""
        if self._to_show:
            kind = self._to_show.pop(0)
            layer = self.layers.get(kind)
            if layer is not None and layer in self.viewer.layers:
                layer.visible = True  # napari gives it back the tool it had when hidden
                if kind == LABELS and self._paint_when_shown and layer.editable:
                    layer.mode = "paint"  # a layer taken from before: a new project starts painting
                    self._paint_when_shown = False

    def _later(self, step) -> None:
        """Run ``step`` in a turn of the event loop of its own, after the steps queued before it,
        if this view still shows what it shows now. Opening a 512x512x300 CT in one turn (its
        image, labels, two hidden overlays, the direction letters) held the event loop 530 ms;
        one step a turn, napari draws between them and no stall adds them all up."""
        self._steps.append(step)
        if self._stepping is not self.shown:
            self._stepping = self.shown
            self._soon(self._next_step)

    def _next_step(self) -> None:
        try:
            if self._steps:
                self._steps.pop(0)()
        finally:
            if self._steps:
                self._soon(self._next_step)
            else:
                self._stepping = None

    def _soon(self, call) -> None:
        """``call`` on the next turn of the event loop, if this view still shows what it shows now."""
        from qtpy.QtCore import QTimer

        shown = self.shown

        def run() -> None:
            if shown is not None and self.shown is shown and _window_open(self.viewer):
                try:
                    call()
                except RuntimeError:  # the window closed meanwhile (its Qt objects are gone)
                    pass

        QTimer.singleShot(0, run)

    def _markers_made(self) -> bool:
        overlays = getattr(getattr(self.viewer, "canvas", None), "overlays", None)
        return overlays is None or not self._markers or all(
            MARKER_PREFIX + position in overlays for position, letter in zip(MARKER_POSITIONS, self._markers) if letter)

    def _place_markers(self, _event=None) -> None:
        """The patient directions (A, P, R, L, S, I) at the canvas edges, as radiology viewers show
        them; none for an image without geometry (a photo, an X-ray), and none once napari's own buttons
        roll or transpose the axes or show 3D (the letters would name the wrong sides). napari
        before 0.9 has no canvas overlays to hold them: nothing is shown there."""
        overlays = getattr(getattr(self.viewer, "canvas", None), "overlays", None)
        if overlays is None:
            return
        markers, dims = self._markers, self.viewer.dims
        if markers is not None and not _slice_at_a_time(dims):
            markers = None
        for position, letter in zip(MARKER_POSITIONS, markers or ("",) * len(MARKER_POSITIONS)):
            name = MARKER_PREFIX + position
            if name not in overlays:
                if not letter:
                    continue
                make_marker_overlays(self.viewer)
            overlay = overlays[name]
            # Blanked, never hidden: a canvas overlay turning visible again makes napari re-parent
            # every canvas overlay, and drawing the labels brush circle after that segfaults in
            # Mesa (a volume project, then a 2D one, then a volume again crashed the app).
            if overlay.text != letter:
                overlay.text = letter
            if np.asarray(overlay.color)[-1] == 0:  # made unseen, to render the glyphs early
                overlay.color = MARKER_COLOR
            overlay.visible = True

    def _window_limits(self) -> tuple[float, float]:
        """The contrast limits of the window chosen for the image on screen (the file's by default)."""
        if self.shown.ct and self.window_choice in CT_WINDOWS:
            return contrast_limits(None, CT_WINDOWS[self.window_choice])
        return self.shown.file_limits

    @main_thread_only
    def next_window(self) -> str | None:
        """Show the next CT window (the file's, then brain, soft tissue, lung, bone, round again) and
        keep it for the next scans; returns what is shown, or None when the image is not a CT."""
        layer = self.layers.get(IMAGE)
        if self.shown is None or not self.shown.ct or layer is None:
            return None
        order = [None, *CT_WINDOW_ORDER]
        at = order.index(self.window_choice) if self.window_choice in order else 0
        self.window_choice = order[(at + 1) % len(order)]
        limits = self._window_limits()
        layer.contrast_limits_range = (min(limits[0], layer.contrast_limits_range[0]),
                                       max(limits[1], layer.contrast_limits_range[1]))
        layer.contrast_limits = limits
        layer.contrast_limits_range = limits  # the slider then fine-tunes within the window
        return describe_window(self.window_choice, limits)

    def _volume(self, sample):
        """Pixels, scale and contrast limits of the volume a slice sample belongs to (one cached)."""
        key = volume_key(sample)
        if key not in self._volume_cache:
            self.keep_volume(sample, read_volume(sample, self.project))
        return self._volume_cache[key]

    def needs_reading(self, sample) -> bool:
        """Whether showing ``sample`` reads its volume from disk first (a slice of another volume)."""
        return sample.slice_index is not None and volume_key(sample) not in self._volume_cache

    def keep_volume(self, sample, volume: tuple, labels: LabelsRead | None = None) -> None:
        """Hold a volume ``read_volume`` read (on any thread) as the one to show (one kept), and
        its stored labels if they were read with it (``read_volume_labels``)."""
        self._volume_cache = {volume_key(sample): volume}
        self._labels_read = labels

    def _label_shape(self, shown: Shown | None = None) -> tuple[int, ...]:
        shown = shown or self.shown
        return shown.pixels.shape[:2] if shown.rgb else shown.pixels.shape

    def _load_labels(self, shown: Shown) -> tuple[np.ndarray, np.ndarray]:
        """The current labels of every sample of ``shown``, as one array the Labels layer edits,
        and its baseline (a second array, equal to it). A stack starts from the labels read with its
        volume off the main thread (or from np.zeros), and only the slices whose label changed
        since are written here: a full copy of a 512x512x300 stack would cost 0.2 s."""
        shape = self._label_shape(shown)
        pending = self._pending()
        if not shown.is_stack:
            labels = np.zeros(shape, dtype=np.uint8)
            baseline = np.zeros(shape, dtype=np.uint8)
            sample_id = shown.key[1]
            mask = pending[sample_id] if sample_id in pending else self.project.load_label(sample_id)
            if isinstance(mask, np.ndarray) and mask.shape == shape:
                labels[...] = baseline[...] = mask
            return labels, baseline
        read, self._labels_read = self._labels_read, None
        if read is None or read.key != shown.key or read.labels.shape != shape:
            read = LabelsRead(shown.key, np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), {})
        current = self.project.current_label_versions()
        for index, sample_id in shown.slices.items():
            if sample_id in pending:
                mask = pending[sample_id]
            elif current.get(sample_id) == read.versions.get(sample_id):
                continue  # as read (or unlabeled then and now)
            else:  # saved, changed or removed since it was read
                mask = self.project.load_label(sample_id) if sample_id in current else None
            if mask is None:
                read.labels[index] = read.baseline[index] = 0
            elif isinstance(mask, np.ndarray) and mask.shape == shape[1:]:
                read.labels[index] = read.baseline[index] = mask
        return read.labels, read.baseline

    def _camera(self):
        return self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari 0.9

    @main_thread_only
    def remove_layers(self, keep: bool = False) -> dict[str, object]:
        """Take this view's layers off the viewer; ``keep``: hide and empty them instead, for the
        next project's view to take (returned). RGB images are not kept (no other project shows
        its images in them)."""
        ours = dict(self.layers)
        self.layers.clear()  # first: a layer leaving while still listed here is one the user deleted
        self._to_show.clear()
        self._steps.clear()
        self._volume_cache = {}
        kept = {}
        for kind, layer in ours.items():
            if layer not in self.viewer.layers:
                continue
            if keep and not getattr(layer, "rgb", False):
                layer.data = placeholder(layer.data.ndim, layer.data.dtype)  # the volume's memory goes
                layer.scale = (1.0,) * layer.data.ndim  # a hidden layer's extent follows its scale only
                kept[kind] = layer
            else:
                self.viewer.layers.remove(layer)
        # ...and its slice and thumbnail with it, once the slider is back within the placeholders
        # (sliced at the closed scan's slice, a labels layer kept its strokes in the thumbnail).
        # napari slices and draws a thumbnail only while a layer is shown: a hidden one is shown a
        # moment (no patient's image left in the layer list, nor held by the layer's last slice).
        for layer in kept.values():
            if layer.visible:
                layer.refresh()
            else:
                layer.visible = True
            layer.visible = False  # (its undo history goes as the next project's labels go in)
        if kept:
            self.viewer.layers.selection.clear()
        if self._camera_before is not None:  # the user's own layers are shown as before the project
            self._camera().orientation2d = self._camera_before
            self._camera_before = None
        before, self._axis_labels_before = self._axis_labels_before, None
        if before is not None and len(before) == self.viewer.dims.ndim:  # their slider as it was named
            self.viewer.dims.axis_labels = before
        self.shown = None
        self._markers = None
        self._place_markers()
        for emitter in (self.viewer.dims.events.order, self.viewer.dims.events.ndisplay):
            emitter.disconnect(self._place_markers)
            emitter.disconnect(self._view_turned)
        self._keep_to_the_labels(None)
        return kept

    def _keep_to_the_labels(self, layer) -> None:
        """Keep ``layer``'s label number to the project's labels (None: let the layer go). napari's
        own keys pick any number (`=` the next one, `m` a new one): a trial painted label 2 in a
        project of one label, with no word, and the save was refused."""
        if layer is self._guarded:
            return
        if self._guarded is not None:
            self._guarded.events.selected_label.disconnect(self._label_chosen)
        self._guarded = layer
        if layer is not None:
            layer.events.selected_label.connect(self._label_chosen)

    def _label_chosen(self, _event=None) -> None:
        layer, names = self._guarded, self.task.names
        if layer is None or layer.selected_label <= len(names):
            return
        chosen = layer.selected_label
        layer.selected_label = len(names)
        self.viewer.status = (f"label {chosen} is none of this project's {len(names)} ({labels_listed(names)}): "
                              f"painting {names[-1]}")

    # --- labels -------------------------------------------------------------------------------
    @property
    def labels_layer(self):
        """The labels layer of the open sample; while the viewer closes it is out of the viewer
        already and still holds the strokes to save."""
        return self.layers.get(LABELS)

    def deleted_by_user(self, layer) -> bool:
        """Whether ``layer``, just removed from the viewer, is the image or labels layer of the
        open sample (this view removes its own layers after forgetting them)."""
        return any(self.layers.get(kind) is layer for kind in (IMAGE, LABELS))

    def changed_masks(self) -> list[tuple[int, np.ndarray]]:
        """(sample id, mask) of every sample on screen whose labels changed since load/save."""
        layer = self.labels_layer
        if layer is None or self.shown is None or self.shown.baseline is None:
            return []
        data = np.asarray(layer.data)
        if not self.shown.is_stack:
            if np.array_equal(data, self.shown.baseline):
                return []
            return [(self.shown.key[1], data.astype(np.uint8, copy=True))]
        return [
            (self.shown.slices[z], data[z].astype(np.uint8, copy=True))
            for z in _changed_slices(data, self.shown.baseline)
            if z in self.shown.slices
        ]

    def mark_saved(self, sample_id: int, mask: np.ndarray) -> None:
        """Remember ``mask`` as the stored labels of ``sample_id``."""
        if self.shown is None or self.shown.baseline is None:
            return
        if self.shown.is_stack:
            index = next((z for z, sid in self.shown.slices.items() if sid == sample_id), None)
            if index is not None:
                self.shown.baseline[index] = mask
        else:
            self.shown.baseline[...] = mask

    def mark_unsaved(self, sample_id: int) -> None:
        """Forget that ``sample_id``'s labels on screen were saved (its save failed): the next save
        writes them again."""
        if self.shown is None or self.shown.baseline is None:
            return
        if self.shown.is_stack:
            index = next((z for z, sid in self.shown.slices.items() if sid == sample_id), None)
            if index is not None:
                self.shown.baseline[index] = _differs(self.shown.baseline[index])
        elif self.shown.key[1] == sample_id:
            self.shown.baseline[...] = _differs(self.shown.baseline)

    def show_stored_labels(self, sample_ids, *, keep_unsaved: bool = False) -> None:
        """Put the stored labels of those of ``sample_ids`` on screen into the Labels layer, as
        saved now (a label taken back: empty; an imported one: its mask). ``keep_unsaved``: a
        slice with strokes not saved yet, or saves not landed, keeps what is on screen."""
        layer = self.labels_layer
        if layer is None or self.shown is None or self.shown.baseline is None:
            return
        wanted = set(sample_ids)
        if self.shown.is_stack:
            where = {z: sid for z, sid in self.shown.slices.items() if sid in wanted}
        else:
            where = {...: self.shown.key[1]} if self.shown.key[1] in wanted else {}
        if keep_unsaved:
            pending = self._pending()
            where = {index: sample_id for index, sample_id in where.items() if sample_id not in pending
                     and np.array_equal(layer.data[index], self.shown.baseline[index])}
        for index, sample_id in where.items():
            mask = self.project.load_label(sample_id)
            if not isinstance(mask, np.ndarray) or mask.shape != layer.data[index].shape:
                mask = 0  # none stored (or a class)
            layer.data[index] = mask
            self.shown.baseline[index] = mask
        if where:
            layer.refresh()

    def sample_on_screen(self) -> tuple[int, np.ndarray] | None:
        """(sample id, its labels as painted) of the slice the viewer shows now: the open sample's,
        or, in a stack, whichever slice the user moved the slider to (not a sample: None)."""
        layer = self.labels_layer
        if layer is None or layer not in self.viewer.layers or self.sample is None or self.shown is None:
            return None  # none on screen (napari's delete button took it)
        data = np.asarray(layer.data)
        if not self.shown.is_stack:
            return self.sample.id, data
        z = int(round(self.viewer.dims.point[0] / self.shown.scale[0]))
        sample_id = self.shown.slices.get(z)
        return None if sample_id is None else (sample_id, data[z])

    @main_thread_only
    def keep_strokes_in_the_scan(self) -> None:
        """No painting where the slider stands past the scan's slices (a user's own layer of more
        slices or another spacing sets the slider's range): napari's brush there raised an
        IndexError at each stroke (a trial). Its tool comes back with the scan's slices."""
        layer = self.labels_layer
        if layer is None or self.shown is None or not self.shown.is_stack or self.project.readonly:
            return
        z = int(round(self.viewer.dims.point[0] / self.shown.scale[0]))
        outside = not 0 <= z < layer.data.shape[0]
        if outside and layer.editable:  # (a new scan's data makes it editable again)
            self._tool_outside = self._tool_outside or layer.mode
            layer.editable = False
            self.viewer.status = (f"past the scan: it has slices 0-{layer.data.shape[0] - 1} (a layer of your own "
                                  "reaches further); nothing to paint here")
        elif not outside and self._tool_outside is not None:
            tool, self._tool_outside = self._tool_outside, None
            layer.editable = True
            layer.mode = tool

    def current_mask(self) -> np.ndarray | None:
        """The labels of the open sample as painted (not necessarily saved)."""
        layer = self.labels_layer
        if layer is None or self.sample is None:
            return None
        data = np.asarray(layer.data)
        return data[self.sample.slice_index] if self.shown.is_stack else data

    @main_thread_only
    def set_current_mask(self, mask: np.ndarray) -> None:
        """Put ``mask`` into the Labels layer for the open sample (e.g. a prediction to edit)."""
        layer = self.labels_layer
        if layer is None or self.sample is None:
            return
        data = layer.data
        if self.shown.is_stack:
            data[self.sample.slice_index] = mask
        else:
            data[...] = mask
        layer.refresh()

    # --- predictions --------------------------------------------------------------------------
    @main_thread_only
    def show_prediction(self, pred: PredictionView) -> None:
        """Overlay a prediction of the open sample (mask, uncertainty map, Grad-CAM)."""
        if self.sample is None or pred.sample_id != self.sample.id or self.shown is None:
            return
        self._write_overlays(pred, draw=True)
        self.prediction_on_screen = pred.sample_id
        self.select_top()

    def _write_overlays(self, pred: PredictionView, *, draw: bool) -> list[str]:
        """Write the prediction's maps into their layers; the kinds written. ``draw``: show and
        redraw them now (else the caller does, with ``_show_overlay_layer``)."""
        maps = {PREDICTION: pred.label if self.task.kind == "segmentation" and isinstance(pred.label, np.ndarray) else None,
                UNCERTAINTY: pred.uncertainty, GRADCAM: pred.cam}
        written = [kind for kind, array in maps.items() if array is not None]
        for kind in written:
            self._overlay(kind, maps[kind], draw=draw)
        layer = self.layers.get(PREDICTION)
        width = prediction_contour(self._label_shape())
        if PREDICTION in written and layer is not None and getattr(layer, "contour", width) != width:
            layer.contour = width
        return written

    def _show_overlay_layer(self, kind: str, *, refresh: bool) -> None:
        """Give an overlay layer the visibility the user chose. napari draws a layer as it is
        shown; one that stays shown is redrawn only if ``refresh`` (its data changed in place)."""
        layer = self.layers.get(kind)
        if layer is None:
            return
        want = self.overlay_visible.get(kind, True)
        if layer.visible != want:
            layer.visible = want
        elif want and refresh:
            layer.refresh()

    def _hide_overlays(self, keep=()) -> None:
        for kind in (PREDICTION, UNCERTAINTY, GRADCAM):
            layer = self.layers.get(kind)
            if kind not in keep and layer is not None and layer.visible:
                layer.visible = False

    def _overlay(self, kind: str, array, *, draw: bool = True) -> None:
        """Put a sample-shaped map on screen: on a volume, only its slice is written (in place)."""
        layer_type, dtype, kwargs = self._layer_spec(kind)
        kwargs = {**kwargs, "scale": self.shown.scale}
        array = np.asarray(array, dtype=dtype)
        shape = self._label_shape()
        layer = self.layers.get(kind)
        if not self.shown.is_stack:
            self._set_layer(kind, array if array.shape == shape else np.zeros(shape, dtype), layer_type, **kwargs)
            return
        z = self.sample.slice_index
        in_place = (layer is not None and layer in self.viewer.layers and layer.data.shape == shape
                    and layer.data.dtype == dtype and array.shape == shape[1:])
        if not in_place:
            full = np.zeros(shape, dtype=dtype)
            if array.shape == shape[1:]:
                full[z] = array
            self._set_layer(kind, full, layer_type, **kwargs)
        else:
            written = self._overlay_slices.get(kind)
            if written is not None and written != z:
                layer.data[written] = 0  # one prediction on screen at a time: the open slice's
            layer.data[z] = array
            if draw:
                self._show_overlay_layer(kind, refresh=True)
        self._overlay_slices[kind] = z

    def _set_layer(self, kind: str, data: np.ndarray, layer_type: str, **kwargs) -> None:
        """Show ``data`` in this kind's layer: the existing layer gets the new data when it can."""
        layer = self.layers.get(kind)
        reusable = (
            layer is not None
            and layer in self.viewer.layers
            and layer.data.ndim == data.ndim
            and getattr(layer, "rgb", False) == kwargs.get("rgb", False)
            and (layer.data.dtype == data.dtype or kind == IMAGE)  # napari converts an image's pixels for the screen
        )
        if not reusable:
            self._restyle.discard(kind)
            self._drop_layer(kind)
            if kind in DEFAULT_VISIBLE:
                kwargs = {**kwargs, "visible": self.overlay_visible[kind]}
            self._add_layer(kind, layer_type, data, **kwargs)
            self.select_top()
            return
        shown_after = layer.visible or kind in self._restyle or kind in self._to_show
        self._apply_look(kind, layer)
        if kind in (IMAGE, LABELS) and shown_after and (
                not layer.visible or (data.ndim >= 3 and layer.data.shape != data.shape)):
            # A layer taken from before, or another volume: napari slices and draws a hidden layer
            # only once it is shown, so the data goes in hidden and each layer is shown in a turn
            # of its own (`_later`). In one turn the image and labels of a 512x512x300 CT held the
            # event loop 100-130 ms.
            layer.visible = False
            if kind not in self._to_show:
                self._to_show.append(kind)
        limits = kwargs.get("contrast_limits")
        if limits is not None:  # widen the range first so the new data never clips
            layer.contrast_limits_range = (min(limits[0], layer.contrast_limits_range[0]),
                                           max(limits[1], layer.contrast_limits_range[1]))
        layer.data = data
        if kind == LABELS:
            forget_strokes(layer)
        scale = kwargs.get("scale", layer.scale)
        if tuple(layer.scale) != tuple(scale) or not layer.visible:
            # napari takes a hidden layer's new extent only as its scale is set (its data setter
            # keeps the extent cached before): the slider and the camera kept the placeholder's
            layer.scale = scale
        if limits is not None:
            layer.contrast_limits_range = limits
            layer.contrast_limits = limits
        if "opacity" in kwargs and kind in DEFAULT_VISIBLE:
            layer.visible = self.overlay_visible[kind]

    @main_thread_only
    def prepare_overlays_soon(self) -> None:
        """`prepare_overlays` in turns of the event loop of their own (`_later`), one overlay
        each, right after the image opens: made or resized for a 512x512x300 CT, two hidden
        overlays held the event loop 186 ms when made and 45 ms when resized in one turn."""
        def next_one() -> None:
            if self._prepare_overlay():
                self._later(next_one)

        self._later(next_one)

    @main_thread_only
    def prepare_overlays(self) -> None:
        """Create (or fit to the image on screen) the hidden, empty overlay layers now, at a user
        action, rather than when a prediction arrives in the background: adding a napari layer
        can take a second."""
        while self._prepare_overlay():
            pass

    def _prepare_overlay(self) -> bool:
        """Make or fit the first overlay layer that is missing or another image's shape (hidden,
        empty); False when none was left to do."""
        if self.shown is None:
            return False
        shape = self._label_shape()
        for kind in self.overlay_kinds():
            layer = self.layers.get(kind)
            if layer is not None and layer in self.viewer.layers:  # of this image's dimensions (`_blank_overlays`)
                if layer.data.shape == shape:
                    continue
                self._apply_look(kind, layer)
                layer.data = np.zeros(shape, dtype=layer.data.dtype)
                layer.scale = self.shown.scale
                return True
            layer_type, dtype, kwargs = self._layer_spec(kind)
            self._add_layer(kind, layer_type, np.zeros(shape, dtype), scale=self.shown.scale, visible=False, **kwargs)
            self.select_top()
            return True
        return False

    def _add_layer(self, kind: str, layer_type: str, data: np.ndarray, **kwargs) -> None:
        add = self.viewer.add_labels if layer_type == "labels" else self.viewer.add_image
        layer = self.layers[kind] = add(data, name=layer_name(kind), **kwargs)
        self._style(kind, layer)

    @staticmethod
    def _style(kind: str, layer) -> None:
        if kind == PREDICTION and hasattr(layer, "contour"):
            layer.contour = PREDICTION_CONTOUR  # outlines
        if kind == LABELS:
            layer.mode = "paint"  # the dock says "paint": a first drag paints (space held pans, as in napari)

    def _blank_overlays(self) -> None:
        """Overlays of the previous image are hidden and emptied where they fit the new one; the
        others are fitted to it (kept rather than removed: adding a napari layer is slow) by
        `prepare_overlays_soon`, in turns of their own. Until then a prediction writes a
        whole new array into its layer (`_overlay`)."""
        shape = self._label_shape()
        for kind in (PREDICTION, UNCERTAINTY, GRADCAM):
            layer = self.layers.get(kind)
            if layer is None or layer not in self.viewer.layers:
                continue
            if layer.data.ndim != len(shape):  # kept from a volume, and this image is 2D: napari
                self._drop_layer(kind)  # cannot change a layer's dimensions (prepare_overlays makes it anew)
                continue
            if layer.visible:
                layer.visible = False
            written = self._overlay_slices.pop(kind, None)
            if written is not None and layer.data.shape == shape:
                layer.data[written] = 0  # the previous image's map must not show on this one
            elif layer.data.shape != shape:
                # Until fitted, a few bytes at the new image's scale: napari's slider takes its
                # extent and step from every layer, hidden ones too.
                layer.data = placeholder(layer.data.ndim, layer.data.dtype)
                layer.scale = self.shown.scale

    def _drop_layer(self, kind: str) -> None:
        self._overlay_slices.pop(kind, None)
        layer = self.layers.pop(kind, None)
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    @main_thread_only
    def clear_prediction(self) -> None:
        """Take the previous sample's overlays off screen (kept as layers: adding layers is slow).

        An overlay of a volume holds one slice's map: when another slice opens in 2D, that map
        is erased in place and the layer stays shown (blank there). Hiding it, and showing it
        again when the next prediction arrives, cost 10-25 ms of the main thread each (napari
        updates the layer list, the controls and the canvas), at every `n`."""
        blank = [] if not self._slice_by_slice() else [
            kind for kind in (PREDICTION, UNCERTAINTY) if self._overlay_slices.get(kind) != self.sample.slice_index]
        for kind in blank:  # the earlier slice's map goes too: scrolling back must not show it
            written, layer = self._overlay_slices.pop(kind, None), self.layers.get(kind)
            if written is not None and layer is not None:
                layer.data[written] = 0  # not the open slice: napari reads it when it slices there
        self._hide_overlays(keep=blank)
        self.prediction_on_screen = None

    def _slice_by_slice(self) -> bool:
        """Whether a volume is on screen one slice at a time (its overlays show the open slice only)."""
        return (self.shown is not None and self.shown.is_stack and self.sample is not None
                and _slice_at_a_time(self.viewer.dims))

    def _view_turned(self, _event=None) -> None:
        """The view went 3D or along another axis: an overlay left shown with no prediction of the
        open slice (clear_prediction) would show the slice of an earlier one."""
        if self.prediction_on_screen is None:
            self._hide_overlays()

    @main_thread_only
    def set_overlay_visible(self, kind: str, visible: bool) -> None:
        """Show or hide an overlay, now (when the open sample's prediction is on screen) and for
        the samples opened next."""
        if kind in self.overlay_visible:
            self.overlay_visible[kind] = bool(visible)
        layer = self.layers.get(kind)
        if layer is not None:
            layer.visible = bool(visible) and self.prediction_on_screen is not None

    @main_thread_only
    def set_overlay_opacity(self, kind: str, opacity: float) -> None:
        layer = self.layers.get(kind)
        if layer is not None and layer.opacity != opacity:  # napari redraws the layer and its thumbnail
            layer.opacity = opacity

    def has_layer(self, kind: str) -> bool:
        """Whether this kind of overlay is on screen for the open sample."""
        layer = self.layers.get(kind)
        return layer is not None and layer in self.viewer.layers and self.prediction_on_screen is not None
