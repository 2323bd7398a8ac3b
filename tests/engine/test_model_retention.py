"""Old model weights are removed (a loop that runs all day makes a version every few labels), and
what stays is what a user can go back to: the active model, the newest versions, the newest that
were active, and the newest pretrained encoder. Rows, metrics and decisions outlive the weights."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest

from medlabeler.cli import main
from medlabeler.engine.errors import ProjectError
from medlabeler.engine.store import Project
from medlabeler.engine.workflows.model_versions import load_model, old_versions, remove_old_weights

from .test_store import npy_source


@pytest.fixture
def project(tmp_path):
    p = Project.create(tmp_path / "p", task="classification", names=["a", "b"])
    p.add_sources([npy_source(tmp_path / "src", f"i{k}.npy", (8, 8), group=f"g{k}") for k in range(4)])
    yield p
    p.close()


def add(project, tmp_path, method: str, activate: bool):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(os.urandom(1000))
    return project.add_model(method=method, weights_file=weights, record={}, metrics={}, activate=activate)


# v1 encoder, v2 active, v3 kept, v4 active, v5 kept, v6 active, v7 encoder, v8 active, v9 kept, v10 kept
HISTORY = [("pretrain:simclr", False), ("supervised", True), ("supervised", False), ("fixmatch", True),
           ("fixmatch", False), ("fixmatch", True), ("pretrain:simclr", False), ("fixmatch", True),
           ("fixmatch", False), ("fixmatch", False)]


def make_history(project, tmp_path):
    return [add(project, tmp_path, method, activate) for method, activate in HISTORY]


def test_the_active_the_newest_the_last_active_and_the_newest_encoder_keep_their_weights(project, tmp_path):
    models = make_history(project, tmp_path)
    ids = [s.id for s in project.samples()]
    project.write_scores(3, {ids[0]: {"entropy": 0.5}})
    project.write_embeddings(3, ids[:2], np.ones((2, 4)))
    project.write_scores(8, {ids[0]: {"entropy": 0.1}})
    embeddings_size = next((project.root / "models").glob("e0003-*.npz")).stat().st_size
    assert old_versions(project) == [1, 2, 3, 5]  # kept: 8 active; 8, 9, 10 newest; 4, 6, 8 were active; 7
    removed, freed = remove_old_weights(project)
    assert removed == [1, 2, 3, 5] and freed == 4 * 1000 + embeddings_size, "weights and v3's embeddings"
    after = {m.version: m for m in project.models()}
    assert len(after) == 10, "the rows stay"
    for m in models:
        assert (after[m.version].removed is not None) == (m.version in removed)
        assert m.path.exists() == (m.version not in removed)
    assert project.scores(3) == {} and project.embeddings(3) is None
    assert project.scores(8) == {ids[0]: {"entropy": 0.1}}
    assert sorted(f for f in os.listdir(project.root / "models") if f.startswith("e")) == []
    assert old_versions(project) == [], "a second pass has nothing left to remove"
    assert project.audit_log()[-1]["action"] == "model_weights_removed"
    # a removed version cannot come back, and says why
    with pytest.raises(ProjectError, match="v2 cannot be activated: its weights were removed"):
        project.activate(2)
    with pytest.raises(ProjectError, match="v3 cannot be loaded: its weights were removed"):
        load_model(project, 3)
    with pytest.raises(ProjectError, match="active model's weights cannot be removed"):
        project.remove_model_weights([8])
    # a roll back to v6 keeps v6, v4 still there for one more
    project.activate(6)
    assert old_versions(project) == []
    root = project.root
    project.close()
    db = sqlite3.connect(root / "project.sqlite")  # a crash after the rows were marked, before the files went
    db.execute("UPDATE models SET removed = 'now' WHERE version = 9")
    db.commit()
    db.close()
    with Project.open(root) as again:  # nothing kept is taken for an orphan; what was marked goes
        assert [m.version for m in again.models() if m.removed is None] == [4, 6, 7, 8, 10]
        assert all(m.path.is_file() == (m.removed is None) for m in again.models())


def test_fewer_versions_than_the_limits_keep_them_all(project, tmp_path):
    add(project, tmp_path, "supervised", activate=False)  # never active
    add(project, tmp_path, "supervised", activate=True)
    assert old_versions(project) == []
    for _ in range(3):
        add(project, tmp_path, "supervised", activate=False)
    assert old_versions(project) == [1], "v2 stays: the 3 newest that were ever active are v2 alone"


def test_the_cli_removes_old_weights_on_request_and_lists_them(project, tmp_path, capsys):
    make_history(project, tmp_path)
    root = project.root
    project.close()
    assert main(["models", str(root), "--remove-old"]) == 0
    out, err = capsys.readouterr()
    assert "removed the weights of v1, v2, v3, v5 (4 kB); their records stay" in err
    assert "  v2   supervised" in out and "[weights removed" in out.splitlines()[1]
    assert main(["models", str(root), "--remove-old", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert "no old weights to remove" in err
    assert [r["version"] for r in rows if r["weights_removed"]] == [1, 2, 3, 5]
    assert main(["models", str(root), "--activate", "2"]) == 2
    assert "v2 cannot be activated: its weights were removed" in capsys.readouterr().err


def test_a_schema_2_project_upgrades_with_its_activation_history(project, tmp_path):
    make_history(project, tmp_path)
    project.activate(3)  # a kept candidate activated by hand: it was active too
    project.activate(8)
    root = project.root
    project.close()
    db = sqlite3.connect(root / "project.sqlite")  # as medlabeler wrote it before schema 3
    db.execute("ALTER TABLE models DROP COLUMN removed")
    db.execute("ALTER TABLE models DROP COLUMN was_active")
    db.execute("ALTER TABLE samples DROP COLUMN content_key")
    db.execute("DROP TABLE skips")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with Project.open(root, readonly=True) as old:  # read as it is: weights present, only v8 known active
        assert [m.version for m in old.models() if m.was_active] == [8]
        assert all(m.removed is None for m in old.models())
    with Project.open(root) as upgraded:
        assert [m.version for m in upgraded.models() if m.was_active] == [2, 3, 4, 6, 8]
        assert old_versions(upgraded) == [1, 2, 3, 5]
