"""Labels whose save into the project failed, kept in the user's folder until the project opens."""

from __future__ import annotations

import numpy as np

from medlabeler.engine.store import Project
from medlabeler.engine.store.unsaved import forget_unsaved, keep_unsaved, unsaved_folder, unsaved_labels

from .test_pipeline_datasets import make_seg_project


def test_a_kept_label_comes_back_for_its_own_project_and_image_only(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    project = make_seg_project(tmp_path, n=2, depth=3, label_fraction=0.0)
    first, second = (s.id for s in project.samples()[:2])
    mask = np.zeros(project.samples()[0].shape, np.uint8)
    mask[1, 1] = 1
    keep_unsaved(home, project, first, mask, author="dr a", origin="manual")
    keep_unsaved(home, project, first, mask * 1, author="dr a", origin="corrected_prediction")  # the newer one
    keep_unsaved(home, project, second, mask, author="dr b")
    kept = unsaved_labels(home, project)
    assert [(k.sample_id, k.author, k.origin, k.replaces) for k in kept] == [
        (first, "dr a", "corrected_prediction", None), (second, "dr b", "manual", None)]
    assert np.array_equal(kept[0].value, mask)
    assert "project" not in str(unsaved_folder(home, project.root).relative_to(home))  # no folder name (a patient's?)
    (unsaved_folder(home, project.root) / "s9-1.npz").write_bytes(b"PK\x03\x04 cut short")  # never complete: skipped
    assert [k.sample_id for k in unsaved_labels(home, project)] == [first, second]
    # a label saved since, by another app: the kept one says it replaces it (it stays in the history)
    project.save_label(second, mask * 0, author="reviewer")
    assert [k.replaces for k in unsaved_labels(home, project)] == [None, 1]
    project.close()
    from medlabeler.cli import main

    monkeypatch.setenv("MEDLABELER_HOME", str(home))
    assert main(["status", str(project.root)]) == 0
    assert (f"2 labels whose save into the project failed (a full disk) wait in {home / 'unsaved'}: the app saves "
            f"them when it opens the project (samples {first}, {second})") in capsys.readouterr().out
    with Project.open(project.root) as project:
        for label in kept:
            forget_unsaved(label)
        assert unsaved_labels(home, project) == []


def test_a_new_project_in_the_same_folder_never_takes_the_old_ones_kept_labels(tmp_path):
    """Kept by folder alone, an old project's strokes went onto another image of a new project made
    in the same folder, under the same sample id."""
    import shutil

    home = tmp_path / "home"
    project = make_seg_project(tmp_path / "a", n=2, depth=3, label_fraction=0.0)
    sample = project.samples()[0]
    keep_unsaved(home, project, sample.id, np.ones(sample.shape, np.uint8))
    root = project.root
    project.close()
    shutil.rmtree(root)
    again = make_seg_project(tmp_path / "a", n=2, depth=3, label_fraction=0.0, seed=1)
    assert again.root == root and again.samples()[0].id == sample.id
    assert unsaved_labels(home, again) == []
    again.close()
    with Project.open(root, readonly=True) as project:
        assert unsaved_labels(home, project) == []
