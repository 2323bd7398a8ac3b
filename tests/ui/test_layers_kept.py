"""The app's layers outlive a project: made hidden at the start, taken by the project that opens.

Adding a napari layer holds the window 100-170 ms on a 2-core CPU whatever its size, so the app
makes the layers a volume opens in before any project is open and keeps them from one project to
the next (`layers.make_spare_layers`, `SampleView.remove_layers(keep=True)`).
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from medlabeler.ui.app import build_app
from medlabeler.ui.layers import (GRADCAM, IMAGE, LABELS, MARKER_POSITIONS, MARKER_PREFIX, PREDICTION, SPARE_KINDS,
                                  UNCERTAINTY, layer_name)
from tests.ui.projects import COLORS, NAMES, truth_slice
from tests.ui.test_labeling import open_predicted, stroke, trained_project  # noqa: F401 (a fixture)

pytestmark = pytest.mark.gui


def ours(viewer) -> dict[str, object]:
    """The app's layers in the viewer, by kind."""
    kinds = (IMAGE, LABELS, PREDICTION, UNCERTAINTY, GRADCAM)
    return {kind: layer for kind in kinds for layer in viewer.layers if layer.name == layer_name(kind)}


def uniform(thumbnail: np.ndarray) -> bool:
    """Whether a layer's thumbnail is one colour (nothing of an image or a stroke left in it)."""
    return bool((thumbnail == thumbnail[:1, :1]).all())


def test_a_volume_opens_in_the_layers_made_at_the_start(make_napari_viewer, qtbot, brain_project, brain_files):
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer).session  # no project yet: the layers are made, hidden and empty
    made = ours(viewer)
    assert set(made) == set(SPARE_KINDS) and len(viewer.layers) == len(SPARE_KINDS)
    assert not any(layer.visible for layer in made.values())
    assert all(layer.data.size <= 64 for layer in made.values())
    assert len(viewer.dims.range) == 3 and viewer.dims.nsteps[0] == 1  # one slice: no slider shown

    session.open_project(brain_project)
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    shape, scale = session.view.shown.pixels.shape, session.view.shown.scale
    # the slider and the camera are the volume's at once (not the 1x8x8 placeholder's)
    assert viewer.dims.nsteps[0] == shape[0] and viewer.dims.current_step[0] == session.sample.slice_index
    camera = getattr(viewer, "scene", viewer).camera  # napari >= 0.9: viewer.scene
    assert np.allclose(camera.center[-2:], [(n - 1) * s / 2 for n, s in zip(shape[1:], scale[1:])], atol=1.0)
    # the image and labels are shown in turns of their own, the hidden overlays fitted after them
    qtbot.waitUntil(lambda: made[IMAGE].visible and made[LABELS].visible
                    and made[UNCERTAINTY].data.shape == shape, timeout=10_000)
    assert ours(viewer) == made and len(viewer.layers) == len(SPARE_KINDS)  # no layer added
    assert session.view.layers == made
    assert made[IMAGE].data.shape == made[LABELS].data.shape == made[PREDICTION].data.shape == shape
    assert not made[PREDICTION].visible and not made[UNCERTAINTY].visible
    # the project's labels: names under the cursor, its colours, and paint that is saved
    labels = made[LABELS]
    assert list(labels.features["name"]) == ["background", *NAMES]
    assert np.allclose(labels.colormap.map(1)[..., :3], np.asarray([int(COLORS[0][i:i + 2], 16) / 255 for i in (1, 3, 5)]))
    assert labels.mode == "paint" and made[PREDICTION].contour == 1
    # the direction letters, made unseen with the layers to render their glyphs early, now seen
    markers = [viewer.canvas.overlays[MARKER_PREFIX + p] for p in MARKER_POSITIONS]
    assert [m.text for m in markers] == ["A", "P", "R", "L"]
    assert all(np.asarray(m.color)[-1] == 1 for m in markers)
    _, masks = brain_files
    truth = truth_slice(masks, session.sample)
    session.view.set_current_mask(truth)
    opened = session.sample.id
    session.save_current()
    session.flush_saves()
    assert np.array_equal(session.project.load_label(opened), truth)


def test_a_closed_project_leaves_its_layers_empty_for_the_next(make_napari_viewer, qtbot, brain_project, class_project):
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer).session
    session.open_project(brain_project)
    qtbot.waitUntil(lambda: session.view.layers[LABELS].visible, timeout=10_000)
    volume = dict(session.view.layers)
    assert np.ptp(volume[IMAGE].thumbnail[..., :3]) > 0
    pixels = weakref.ref(session.view.shown.pixels)
    z = session.sample.slice_index
    qtbot.waitUntil(lambda: volume[PREDICTION].data.shape == volume[IMAGE].data.shape, timeout=10_000)
    volume[LABELS].data[z, 10:30, 10:30] = 1  # a stroke, and a prediction on screen: both in thumbnails
    volume[LABELS].refresh()
    volume[PREDICTION].data[z, 5:40, 5:40] = 2
    volume[PREDICTION].visible = True
    volume[PREDICTION].refresh()
    qtbot.wait(50)
    assert not uniform(volume[LABELS].thumbnail) and not uniform(volume[PREDICTION].thumbnail)
    volume[IMAGE].visible = False  # hidden by the clinician as the project closes
    session.close_project()
    assert ours(viewer) == volume  # kept, hidden, and the volume's memory freed
    assert not any(layer.visible for layer in volume.values())
    assert all(layer.data.size <= 64 for layer in volume.values())
    qtbot.wait(100)  # the turns left of the opening (they hold the view until they run)
    gc.collect()
    assert pixels() is None  # not held by a layer's last slice
    assert viewer.dims.nsteps[0] == 1  # no slider left over
    assert all(uniform(layer.thumbnail) for layer in volume.values())  # nor the scan (or a stroke) in a thumbnail
    assert not viewer.layers.selection

    # A 2D classification project: its image and Grad-CAM layers are made anew (napari cannot
    # change a layer's dimensions); the volume's labels and overlays leave the viewer.
    session.open_project(class_project)
    qtbot.waitUntil(lambda: session.sample is not None and GRADCAM in session.view.layers, timeout=30_000)
    now = ours(viewer)
    assert set(now) == {IMAGE, GRADCAM} and len(viewer.layers) == 2
    assert now[IMAGE].ndim == 2 and now[IMAGE].visible and not now[GRADCAM].visible
    assert not set(now.values()) & set(volume.values())

    # and back to the volume, in the 2D layers' stead
    session.close_project()
    session.open_project(brain_project)
    qtbot.waitUntil(lambda: session.sample is not None and LABELS in session.view.layers
                    and session.view.layers[LABELS].visible and UNCERTAINTY in session.view.layers, timeout=30_000)
    assert set(ours(viewer)) == {IMAGE, LABELS, PREDICTION, UNCERTAINTY} and len(viewer.layers) == 4
    assert session.view.layers[IMAGE].ndim == 3 and session.view.layers[IMAGE].visible


def test_the_plugin_takes_its_layers_with_a_closed_project(make_napari_viewer, qtbot, brain_project):
    """Docked into a user's viewer (napari's Plugins menu), a closed project leaves no layer of its own."""
    from medlabeler.ui.app import dock_widgets

    viewer = make_napari_viewer(show=True)
    user = viewer.add_image(np.zeros((4, 4), np.float32), name="the user's")
    session = dock_widgets(viewer).session
    assert list(viewer.layers) == [user]  # nothing made ahead in the user's viewer
    viewer.dims.ndisplay = 3  # the user's view: theirs until a project opens, to be painted in 2D
    session.open_project(brain_project)
    assert viewer.dims.ndisplay == 2
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    assert LABELS in ours(viewer)
    session.close_project()
    assert list(viewer.layers) == [user]


@pytest.fixture
def flat_project(tmp_path, brain_pngs):
    """A 2D segmentation project of one label over the brain PNGs (closed: the app opens it)."""
    from medlabeler.engine.project.project_import import create_project

    images, _ = brain_pngs
    project, _ = create_project(tmp_path / "flat", images, task="segmentation", names=["lesion"])
    project.close()
    return tmp_path / "flat"


def test_the_next_project_starts_clean_in_the_layers_taken(make_napari_viewer, qtbot, brain_project, flat_project):
    """A 2D project after a 2D project was shown blank (its kept layers stayed hidden); the labels
    layer kept the last project's label (4 of a 2-label project) and its Ctrl+Z."""
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    qtbot.waitUntil(lambda: session.view.layers[LABELS].visible, timeout=10_000)
    volume_labels = session.view.layers[LABELS]
    volume_labels.selected_label = 2
    volume_labels.paint((session.sample.slice_index, 20, 20), 2)  # a stroke, in napari's undo history
    session.close_project()

    for _ in range(2):  # a 2D project, closed and opened again: it takes its own 2D layers back
        session.open_project(flat_project)
        qtbot.waitUntil(lambda: session.sample is not None and LABELS in session.view.layers, timeout=30_000)
        image, labels = session.view.layers[IMAGE], session.view.layers[LABELS]
        qtbot.waitUntil(lambda: image.visible and labels.visible, timeout=10_000)
        assert image.ndim == labels.ndim == 2 and labels.selected_label == 1 and labels.mode == "paint"
        before = labels.data.copy()
        labels.undo()  # nothing of the project before to undo
        assert np.array_equal(labels.data, before)
        assert list(labels.features["name"]) == ["background", "lesion"]
        labels.selected_label = 3
        labels.paint((10, 10), 1)  # saved as the project closes; no undo of it in the next opening
        session.close_project()


def test_a_damaged_label_of_another_volume_leaves_the_open_one_on_screen(make_napari_viewer, qtbot, brain_project,
                                                                          monkeypatch):
    """Its stored labels are read before anything on screen changes: the image and labels of the
    volume on screen stay, shown (the image had been hidden for the volume that did not open)."""
    from pathlib import Path

    errors = []
    monkeypatch.setattr("medlabeler.ui.session.show_error_message", errors.append)
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    qtbot.waitUntil(lambda: session.view.layers[LABELS].visible, timeout=10_000)
    project, view = session.project, session.view
    shown, opened = view.shown, session.sample
    other = next(s for s in project.samples() if s.path != opened.path)
    project.save_label(other.id, np.ones((59, 50), np.uint8))
    mask = Path(project.root) / project.label(other.id).mask_relpath
    mask.write_bytes(b"not a mask")
    session.open_sample(other.id)
    qtbot.waitUntil(lambda: session.reading is None and bool(errors), timeout=30_000)
    assert errors[0].startswith(f"Cannot open sample {other.id}: ")
    assert session.sample.id == opened.id and view.shown is shown
    qtbot.wait(200)  # the turns an opening leaves for later
    assert view.layers[IMAGE].visible and view.layers[LABELS].visible
    assert view.layers[IMAGE].data is shown.pixels


def test_undo_does_not_reach_into_the_image_before(make_napari_viewer, qtbot, flat_project):
    """napari keeps a labels layer's undo history when it is given new data: after `n`, Ctrl+Z
    replayed the stroke of the image before into this one, saved with the next save."""
    from medlabeler.engine.store import Project

    with Project.open(flat_project) as project:  # the image opened after the stroke is all "lesion"
        other = project.samples(split="train")[-1]
        project.save_label(other.id, np.ones(other.spatial_shape, np.uint8))
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, flat_project).session
    assert session.sample.id != other.id
    labels = session.view.layers[LABELS]
    qtbot.waitUntil(lambda: labels.visible and labels.mode == "paint", timeout=10_000)
    stroke(viewer, [(20, 15), (22, 20), (24, 25)])  # a stroke with the mouse, in napari's undo history
    assert labels.data.any()
    session.open_sample(other.id)
    assert session.view.layers[LABELS] is labels and labels.data.all()  # the same layer, given the other image
    labels.undo()
    assert labels.data.all()


def test_undo_does_not_reach_into_the_slice_before(make_napari_viewer, qtbot, brain_project):
    """A trial: a stroke, `n` to another slice of the same volume, Ctrl+Z there (nothing to see),
    `n` again: the undo had taken the stroke off the slice before, and leaving saved that slice
    again, unpainted, as its label's new version (a validation sample's, that time)."""
    from medlabeler.engine.store import Project

    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    labels = session.view.layers[LABELS]
    qtbot.waitUntil(lambda: labels.visible and labels.mode == "paint", timeout=10_000)
    first = session.sample
    stroke(viewer, [(20, 15), (22, 20), (24, 25)])
    painted = labels.data[first.slice_index].copy()
    assert painted.any()
    with Project.open(brain_project, readonly=True) as project:
        same_volume = next(s for s in project.samples() if s.path == first.path and s.series_uid == first.series_uid
                           and s.id != first.id and s.split == first.split)
    session.open_sample(same_volume.id)  # saves the stroke, as `n` does
    qtbot.waitUntil(lambda: session.sample.id == same_volume.id and session.reading is None, timeout=30_000)
    assert session.view.layers[LABELS] is labels
    labels.undo()
    assert np.array_equal(labels.data[first.slice_index], painted)
    session.save_current()
    assert session.flush_saves()
    project = session.project
    assert project.label(first.id).version == 1 and np.array_equal(project.load_label(first.id), painted)
    assert project.label(same_volume.id) is None


def test_a_label_number_the_project_lacks_is_never_painted_nor_left_behind(make_napari_viewer, qtbot, brain_project):
    """A trial: napari's `=` picked label 3 in a project of two; the strokes painted grey, the save
    was refused, and `n` opened the next sample anyway: the strokes were lost."""
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    labels = session.view.layers[LABELS]
    qtbot.waitUntil(lambda: labels.visible and labels.mode == "paint", timeout=10_000)
    labels.selected_label = len(NAMES) + 1  # napari's `=` and `m` keys
    assert labels.selected_label == len(NAMES) and "is none of this project's" in viewer.status
    opened = session.sample
    labels.data[opened.slice_index, 20:24, 20:24] = len(NAMES) + 1  # as a script or another plugin may
    labels.refresh()
    session.open_next()
    assert session.sample.id == opened.id and session.unsavable == [opened.id]  # stays, strokes kept
    assert (labels.data[opened.slice_index] == len(NAMES) + 1).any()
    assert session.flush_saves() and session.project.label(opened.id) is None
    labels.data[opened.slice_index][labels.data[opened.slice_index] > len(NAMES)] = 1  # painted over
    session.open_next()
    qtbot.waitUntil(lambda: session.sample.id != opened.id, timeout=30_000)
    assert session.flush_saves() and session.project.label(opened.id) is not None


def test_the_overlays_shown_stay_the_clinicians_choice_in_the_next_project(make_napari_viewer, qtbot, trained_project):
    """The Review tab's boxes and the keys choose which overlays show: a project opened next shows
    what the boxes say (the boxes kept the choice, the new project's layers had the defaults)."""
    viewer, widget, settled = open_predicted(make_napari_viewer, qtbot, trained_project)
    session, review = widget.session, widget.review
    review.show_overlay.setChecked(False)  # the box
    assert session.toggle_overlay(UNCERTAINTY)  # the u key
    assert not session.view.layers[PREDICTION].visible and session.view.layers[UNCERTAINTY].visible
    session.close_project()
    session.open_project(trained_project)
    qtbot.waitUntil(lambda: session.current_prediction is not None and settled(), timeout=60_000)
    layers = session.view.layers
    assert not review.show_overlay.isChecked() and not layers[PREDICTION].visible
    assert review.show_uncertainty.isChecked() and layers[UNCERTAINTY].visible
    assert not session.toggle_overlay(UNCERTAINTY)  # one press hides it (it had fixed the mismatch)
    assert not review.show_uncertainty.isChecked() and not layers[UNCERTAINTY].visible


def test_a_project_closed_in_3d_leaves_the_next_one_in_2d(make_napari_viewer, qtbot, brain_project, flat_project,
                                                          recwarn):
    """napari's 3D view outlived the volume: the 2D project opened next showed in 3D, where the
    brush paints nothing (and closing warned that contours are not drawn in 3D)."""
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    qtbot.waitUntil(lambda: session.view.layers[LABELS].visible, timeout=10_000)
    viewer.dims.ndisplay = 3  # napari's 2D/3D button
    recwarn.clear()
    session.close_project()
    assert viewer.dims.ndisplay == 2
    assert not [w for w in recwarn if "3D rendering" in str(w.message)]
    session.open_project(flat_project)
    qtbot.waitUntil(lambda: session.sample is not None and LABELS in session.view.layers, timeout=30_000)
    labels = session.view.layers[LABELS]
    qtbot.waitUntil(lambda: labels.visible, timeout=10_000)
    assert viewer.dims.ndisplay == 2 and labels.mode == "paint"


def test_the_uncertainty_map_leaves_what_the_model_is_sure_of_uncovered():
    """Drawn additively in inferno, the map's low values tinted the whole slice and washed the image out."""
    from medlabeler.ui.layers import layer_spec

    _, _, spec = layer_spec(UNCERTAINTY, NAMES, COLORS)
    alpha = spec["colormap"].map(np.array([0.0, 0.1, 0.5, 1.0]))[:, 3]
    assert spec["blending"] == "translucent"
    assert alpha[0] == alpha[1] == 0 and 0 < alpha[2] < alpha[3] == 1
