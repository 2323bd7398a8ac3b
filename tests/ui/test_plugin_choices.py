"""Installed plugin methods and strategies (plugins/) appear in the app's combos."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def combo_items(combo, data: bool = False) -> list:
    return [combo.itemData(i) if data else combo.itemText(i) for i in range(combo.count())]


def test_plugin_method_and_strategy_are_offered(make_napari_viewer):
    pytest.importorskip("medlabeler_cps", reason="install plugins/medlabeler-cps (installer/setup.sh test does)")
    pytest.importorskip("medlabeler_diverse_margin", reason="install plugins/medlabeler-diverse-margin")
    viewer = make_napari_viewer()
    _, train = viewer.window.add_plugin_dock_widget("medlabeler", "Train")
    _, queue = viewer.window.add_plugin_dock_widget("medlabeler", "Queue")
    methods = combo_items(train.method_combo, data=True)
    assert "cross-pseudo-supervision" in methods and "supervised" in methods and "simclr" in methods
    train.method_combo.setCurrentIndex(methods.index("cross-pseudo-supervision"))
    assert train.init_combo.isEnabled()  # treated as a training method, not pretraining
    assert "diverse-margin" in combo_items(queue.strategy_combo)
