"""Labels whose save into the project failed, kept in the user's folder until the project opens."""

from __future__ import annotations

import numpy as np

from medlabeler.engine.store.unsaved import forget_unsaved, keep_unsaved, unsaved_folder, unsaved_labels


def test_a_kept_label_comes_back_for_its_own_project_only_newest_first(tmp_path):
    home, root, other = tmp_path / "home", tmp_path / "ct", tmp_path / "mri"
    root.mkdir()
    other.mkdir()
    first = np.zeros((4, 5), np.uint8)
    first[1, 1] = 1
    newer = first * 2
    keep_unsaved(home, root, 7, first, author="dr a", origin="manual")
    keep_unsaved(home, root, 7, newer, author="dr a", origin="corrected_prediction")
    keep_unsaved(home, root, 3, 1, author="dr b")  # a class index
    kept = unsaved_labels(home, root)
    assert [(k.sample_id, k.author, k.origin) for k in kept] == [(7, "dr a", "corrected_prediction"), (3, "dr b", "manual")]
    assert np.array_equal(kept[0].value, newer) and kept[1].value == 1 and isinstance(kept[1].value, int)
    assert unsaved_labels(home, other) == []
    assert "ct" not in str(unsaved_folder(home, root).relative_to(home))  # no folder name (a patient's?)
    (unsaved_folder(home, root) / "s9-1.npz").write_bytes(b"PK\x03\x04 cut short")  # never complete: skipped
    assert [k.sample_id for k in unsaved_labels(home, root)] == [7, 3]
    for label in kept:
        forget_unsaved(label)
    assert unsaved_labels(home, root) == []
