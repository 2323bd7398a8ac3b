"""The app's layers outlive a project: made hidden at the start, taken by the project that opens.

Adding a napari layer holds the window 100-170 ms on a 2-core CPU whatever its size, so the app
makes the layers a volume opens in before any project is open and keeps them from one project to
the next (`layers.make_spare_layers`, `SampleView.remove_layers(keep=True)`).
"""

from __future__ import annotations

import numpy as np
import pytest

from medlabeler.ui.app import build_app
from medlabeler.ui.layers import GRADCAM, IMAGE, LABELS, PREDICTION, SPARE_KINDS, UNCERTAINTY, layer_name
from tests.ui.projects import COLORS, NAMES, truth_slice

pytestmark = pytest.mark.gui


def ours(viewer) -> dict[str, object]:
    """The app's layers in the viewer, by kind."""
    kinds = (IMAGE, LABELS, PREDICTION, UNCERTAINTY, GRADCAM)
    return {kind: layer for kind in kinds for layer in viewer.layers if layer.name == layer_name(kind)}


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
    _, masks = brain_files
    truth = truth_slice(masks, session.sample)
    session.view.set_current_mask(truth)
    opened = session.sample.id
    session.save_current()
    session.flush_saves()
    assert np.array_equal(session.project.load_label(opened), truth)


def test_a_closed_project_leaves_its_layers_empty_for_the_next(make_napari_viewer, qtbot, brain_project, class_project):
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    qtbot.waitUntil(lambda: session.view.layers[LABELS].visible, timeout=10_000)
    volume = dict(session.view.layers)
    assert volume[IMAGE].thumbnail[..., :3].any()
    session.close_project()
    assert ours(viewer) == volume  # kept, hidden, and the volume's memory freed
    assert not any(layer.visible for layer in volume.values())
    assert all(layer.data.size <= 64 for layer in volume.values())
    assert viewer.dims.nsteps[0] == 1  # no slider left over
    assert not any(layer.thumbnail[..., :3].any() for layer in volume.values())  # nor the scan in a thumbnail
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
    session.open_project(brain_project)
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    assert LABELS in ours(viewer)
    session.close_project()
    assert list(viewer.layers) == [user]
