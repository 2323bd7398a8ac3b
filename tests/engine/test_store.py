"""The project store: create/open, samples and splits, label versions, masks, lock, paths, models."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from medlabeler.engine.errors import InputError, ProjectError, ProjectLockedError
from medlabeler.engine.io import SourceInfo
from medlabeler.engine.store import Project, Sample
from medlabeler.engine.store.project import per_class_text, unmeasured_text, untrained_text
from medlabeler.engine.store.schema import SCHEMA_VERSION
from medlabeler.engine.store.splits import assign_splits, group_hash, split_of

REPO = Path(__file__).resolve().parents[2]


def npy_source(folder: Path, name: str, shape: tuple[int, ...], *, group: str | None = None,
               is_volume: bool | None = None, label_hint: str | None = None) -> SourceInfo:
    """A SourceInfo over a small .npy file (the store only fingerprints it; pixels are not read)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros(shape, dtype=np.uint8))
    volume = len(shape) == 3 and shape[-1] != 3 if is_volume is None else is_volume
    return SourceInfo(path=str(path), series_uid=None, shape=shape, spacing=(1.0,) * (3 if volume else 2),
                      modality="CT" if volume else "OT", is_volume=volume, group=group or name,
                      label_hint=label_hint)


@pytest.fixture
def seg(tmp_path):
    """A segmentation project (unit slice) with one 4-slice volume and one 2D image."""
    p = Project.create(tmp_path / "seg", task="segmentation", names=["liver", "tumour"], unit="slice")
    p.add_sources([npy_source(tmp_path / "src", "vol.npy", (4, 6, 5), group="pA"),
                   npy_source(tmp_path / "src", "img.npy", (6, 5), group="pB")])
    yield p
    p.close()


@pytest.fixture
def cls(tmp_path):
    p = Project.create(tmp_path / "cls", task="classification", names=["benign", "malignant", "other"])
    p.add_sources([npy_source(tmp_path / "src", f"i{k}.npy", (8, 8), group=f"g{k}") for k in range(6)])
    yield p
    p.close()


# ------------------------------------------------------------------------------- create / open
def test_create_open_reopen(tmp_path):
    root = tmp_path / "proj"
    with Project.create(root, task="classification", names=["a", "b"], seed=7, colors=["#ff0000", "#00ff00"]) as p:
        assert p.root == root.absolute()
        assert (p.task.kind, p.task.names, p.task.colors, p.task.unit) == ("classification", ("a", "b"),
                                                                           ("#ff0000", "#00ff00"), "image")
        ids = p.add_sources([npy_source(tmp_path, "x.npy", (5, 5))])
        p.save_label(ids[0], 1)
    assert {"project.sqlite", "masks", "models", "lock"} <= {q.name for q in root.iterdir()}
    db = sqlite3.connect(root / "project.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"task", "samples", "labels", "models", "scores", "embeddings", "audit"} <= tables
    db.close()
    with Project.open(root) as p:
        assert p.task.seed == 7 and p.task.names == ("a", "b")
        assert p.load_label(ids[0]) == 1
        assert p.status()["labeled"] == 1
    with pytest.raises(ProjectError, match="already holds"):
        Project.create(root, task="classification", names=["a", "b"])
    with pytest.raises(ProjectError, match="no medlabeler project"):
        Project.open(tmp_path / "elsewhere")
    closed = Project.open(root)
    closed.close()
    closed.close()
    with pytest.raises(ProjectError, match="closed"):
        closed.samples()


@pytest.mark.parametrize("kwargs, problem", [
    (dict(task="detection", names=["a", "b"]), "task must be"),
    (dict(task="classification", names=["a"]), "at least 2"),
    (dict(task="segmentation", names=["a", "a"]), "distinct"),
    (dict(task="segmentation", names=["a"], colors=["#fff", "#000"]), "2 colors for 1 names"),
    (dict(task="segmentation", names=["a"], unit="voxel"), "unit must be"),
    (dict(task="segmentation", names=["a"], split_fractions=(0.0, 0.5, 0.5)), "split_fractions"),
])
def test_create_refuses_bad_task(tmp_path, kwargs, problem):
    with pytest.raises(ProjectError, match=problem):
        Project.create(tmp_path / "p", **kwargs)
    assert not (tmp_path / "p" / "project.sqlite").exists()


def test_newer_schema_refused(tmp_path):
    Project.create(tmp_path / "p", task="segmentation", names=["a"]).close()
    db = sqlite3.connect(tmp_path / "p" / "project.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(ProjectError, match="newer medlabeler"):
        Project.open(tmp_path / "p")
    with pytest.raises(ProjectError, match="schema"):
        Project.open(tmp_path / "p", readonly=True)


def test_damaged_database_is_a_project_error(tmp_path):
    root = tmp_path / "p"
    Project.create(root, task="segmentation", names=["a"]).close()
    (root / "project.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ProjectError, match="project.sqlite.*damaged"):
        Project.open(root)
    with pytest.raises(ProjectError, match="damaged"):  # not ProjectLockedError: the failure released the lock
        Project.open(root)


# ------------------------------------------------------------------------------------ samples
def test_slice_unit_makes_one_sample_per_slice(seg, tmp_path):
    samples = seg.samples()
    assert len(samples) == 5
    vol = [s for s in samples if s.slice_index is not None]
    assert [s.slice_index for s in vol] == [0, 1, 2, 3]
    assert all(s.shape == (6, 5) and s.spacing == (1.0, 1.0) and s.n_slices == 4 and s.is_volume for s in vol)
    assert [s.slice_position for s in vol] == [0.25, 0.5, 0.75, 1.0]
    assert len({s.split for s in vol}) == 1, "slices of one volume never span splits"
    image = next(s for s in samples if s.slice_index is None)
    assert image.shape == (6, 5) and image.slice_position is None and not image.is_volume
    assert Path(image.path).is_absolute()
    assert seg.sample(image.id) == image
    # adding the same sources again adds nothing
    assert seg.add_sources([npy_source(tmp_path / "src", "img.npy", (6, 5), group="pB")]) == []
    assert len(seg.samples()) == 5
    with pytest.raises(ProjectError, match="no sample with id 999"):
        seg.sample(999)


def test_image_unit_keeps_volumes_whole_and_rgb(tmp_path):
    with Project.create(tmp_path / "p", task="segmentation", names=["a"]) as p:
        p.add_sources([npy_source(tmp_path, "v.npy", (3, 4, 5)), npy_source(tmp_path, "rgb.npy", (4, 5, 3))])
        vol, rgb = p.samples()
        assert (vol.shape, vol.slice_index, vol.spatial_shape) == ((3, 4, 5), None, (3, 4, 5))
        assert (rgb.shape, rgb.spatial_shape, rgb.is_volume) == ((4, 5, 3), (4, 5), False)
        p.save_label(vol.id, np.ones((3, 4, 5), np.uint8))
        p.save_label(rgb.id, np.ones((4, 5), np.uint8))
        assert p.load_label(rgb.id).shape == (4, 5)


def test_samples_filter_by_split_and_labeled(cls):
    ids = [s.id for s in cls.samples()]
    cls.save_label(ids[0], 2)
    assert [s.id for s in cls.samples(labeled=True)] == [ids[0]]
    assert len(cls.samples(labeled=False)) == 5
    for split in ("train", "val", "test"):
        assert all(s.split == split for s in cls.samples(split=split))
    assert sum(len(cls.samples(split=s)) for s in ("train", "val", "test")) == 6
    with pytest.raises(ValueError):
        cls.samples(split="holdout")
    assert [s.id for s in cls.samples(ids=[ids[4], ids[1], 10_000])] == [ids[1], ids[4]]  # in id order
    assert [s.id for s in cls.samples(ids=ids[:3], labeled=False)] == ids[1:3] and cls.samples(ids=[]) == []


# ------------------------------------------------------------------------------------- splits
def _group_splits(p: Project) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in p.samples():
        assert out.setdefault(s.group, s.split) == s.split, f"group {s.group} spans splits"
    return out


def test_splits_by_group_deterministic_and_stable(tmp_path):
    first = [npy_source(tmp_path / "src", f"p{g}_s{k}.npy", (4, 4), group=f"patient{g}")
             for g in range(60) for k in range(2)]
    later = [npy_source(tmp_path / "src", f"q{g}.npy", (4, 4), group=f"patient{g}") for g in range(40, 100)]
    a = Project.create(tmp_path / "a", task="segmentation", names=["x"], seed=3)
    b = Project.create(tmp_path / "b", task="segmentation", names=["x"], seed=3)
    c = Project.create(tmp_path / "c", task="segmentation", names=["x"], seed=4)
    try:
        for p in (a, b, c):
            p.add_sources(first)
        before = _group_splits(a)
        assert before == _group_splits(b), "same seed, same splits"
        assert before != _group_splits(c), "another seed gives other splits"
        counts = {s: list(before.values()).count(s) for s in ("train", "val", "test")}
        assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
        a.add_sources(later)  # groups 40..59 get more files, 60..99 are new
        after = _group_splits(a)
        assert {g: after[g] for g in before} == before, "adding sources never moves an old group"
        assert len(after) == 100
        # 100 groups at 0.7/0.15/0.15: far from the tails of the binomial
        train = list(after.values()).count("train")
        assert 50 <= train <= 88
    finally:
        for p in (a, b, c):
            p.close()


def test_small_projects_still_get_val_and_test():
    for seed in range(30):
        three = assign_splits(["g1", "g2", "g3"], {}, seed, (0.7, 0.15, 0.15))
        assert sorted(three.values()) == ["test", "train", "val"], (seed, three)
        five = assign_splits([f"g{i}" for i in range(5)], {}, seed, (0.7, 0.15, 0.15))
        assert {"train", "val", "test"} <= set(five.values())
        assert len(assign_splits(["g1", "g2"], {}, seed, (0.7, 0.15, 0.15))) == 2
    # a later group fills an empty split, old groups never move
    grown = assign_splits(["a", "b", "c"], {"a": "train", "b": "train"}, 0, (0.7, 0.15, 0.15))
    assert set(grown) == {"c"} and grown["c"] in ("val", "test")
    # a split with fraction 0 stays empty
    no_test = assign_splits([f"g{i}" for i in range(10)], {}, 1, (0.8, 0.2, 0.0))
    assert "test" not in no_test.values() and "val" in no_test.values()


def test_a_project_always_has_a_training_sample():
    """A one-scan project whose scan hashed into val (about 3 seeds in 10) could never be trained:
    the queue was empty and `train` said no training sample was labeled."""
    for seed in range(40):
        assert assign_splits(["scan"], {}, seed, (0.7, 0.15, 0.15)) == {"scan": "train"}, seed
        assert "train" in assign_splits(["s1", "s2"], {}, seed, (0.7, 0.15, 0.15)).values(), seed
    assert assign_splits(["later"], {"first": "val"}, 0, (0.7, 0.15, 0.15)) == {"later": "train"}
    assert assign_splits(["later"], {"first": "train"}, 3, (0.7, 0.15, 0.15)) == {"later": split_of(
        group_hash(3, "later"), (0.7, 0.15, 0.15))}  # with a training group, the hash decides as before


# ------------------------------------------------------------------------------------- labels
def test_label_versions_history_and_origin(cls):
    sid = cls.samples()[0].id
    assert cls.label(sid) is None and cls.load_label(sid) is None and cls.label_history(sid) == []
    v1 = cls.save_label(sid, 1, author="dr a")
    v2 = cls.save_label(sid, np.int64(2), origin="corrected_prediction", author="dr b")
    assert (v1.version, v1.value, v1.origin, v1.author) == (1, 1, "manual", "dr a")
    assert (v2.version, v2.value, v2.origin, v2.is_current) == (2, 2, "corrected_prediction", True)
    history = cls.label_history(sid)
    assert [(h.version, h.value, h.is_current) for h in history] == [(1, 1, False), (2, 2, True)]
    assert cls.label(sid) == history[-1]
    assert cls.load_label(sid) == 2 and cls.load_label(sid, version=1) == 1
    assert cls.labels() == {sid: 2}
    assert cls.status()["per_class"] == {"benign": 0, "malignant": 0, "other": 1}
    reverted = cls.revert_label(sid, 1)
    assert (reverted.version, reverted.value) == (1, 1)
    assert cls.save_label(sid, 0, origin="accepted_prediction").version == 3
    with pytest.raises(ValueError, match="origin"):
        cls.save_label(sid, 0, origin="guess")
    with pytest.raises(ProjectError, match="no label version 9"):
        cls.load_label(sid, version=9)


def test_a_label_saved_by_mistake_is_removed_and_its_versions_stay_in_the_history(cls):
    sid = cls.samples()[1].id
    assert cls.remove_label(sid) is None  # nothing to remove
    cls.save_label(sid, 1)
    cls.save_label(sid, 2)
    labeled_before = cls.status()["labeled"]
    assert cls.remove_label(sid) == 2
    assert cls.label(sid) is None and sid not in cls.labeled_ids() and sid not in cls.labels()
    assert sid in {s.id for s in cls.samples(labeled=False)}
    assert cls.status()["labeled"] == labeled_before - 1
    assert [(h.version, h.is_current) for h in cls.label_history(sid)] == [(1, False), (2, False)]
    assert cls.audit_log()[-1] == {"time": cls.audit_log()[-1]["time"], "action": "label_removed",
                                   "detail": {"sample": sid, "version": 2}}
    assert cls.revert_label(sid, 2).is_current  # taken back
    assert cls.save_label(sid, 0).version == 3  # and a later save numbers on
    with pytest.raises(ProjectError):
        cls.remove_label(10**6)


def test_current_label_versions_follow_saves_removals_and_reverts(cls):
    first, second = cls.samples()[:2]
    assert cls.current_label_versions() == {}
    cls.save_label(first.id, 1)
    cls.save_label(first.id, 2)
    cls.save_label(second.id, 0)
    assert cls.current_label_versions() == {first.id: 2, second.id: 1}
    cls.remove_label(second.id)
    cls.revert_label(first.id, 1)  # back to the first content: its version says so
    assert cls.current_label_versions() == {first.id: 1}
    assert cls.load_label(first.id, cls.current_label_versions()[first.id]) == 1


def test_a_reader_connection_opened_as_the_project_closes_is_closed_too(seg, monkeypatch):
    """A worker thread's first query races the project's close (the app reads a volume's labels
    on a thread): the connection it opened must not outlive the project, and the query says why."""
    import sqlite3
    import threading

    real_connect, opened, errors = sqlite3.connect, [], []

    def connect_as_the_project_closes(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        opened.append(connection)
        seg.close()  # the main thread, meanwhile
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect_as_the_project_closes)

    def query():
        try:
            seg.labeled_ids()
        except ProjectError as exc:
            errors.append(exc)

    worker = threading.Thread(target=query)
    worker.start()
    worker.join()
    assert len(errors) == 1 and len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        opened[0].execute("SELECT 1")


def test_count_labels_after_counts_current_labels_saved_later(cls):
    first, second = cls.samples()[:2]
    cls.save_label(first.id, 1)
    mark = cls.label_mark()
    assert cls.count_labels_after(mark) == 0
    cls.save_label(second.id, 2)  # saved within the same millisecond on a fast machine: still later
    cls.save_label(first.id, 0)  # a changed label counts once, as its current version
    assert cls.count_labels_after(mark) == 2 and cls.count_labels_after(0) == 2
    assert cls.label_mark() > mark


def test_count_labels_after_an_iso_time_for_models_recorded_before_marks(cls):
    first = cls.samples()[0]
    cls.save_label(first.id, 1)
    assert cls.count_labels_after("") == 1
    assert cls.count_labels_after("9999-01-01T00:00:00.000+00:00") == 0


def test_status_counts(cls, seg):
    ids = [s.id for s in cls.samples()]
    for sid, value in zip(ids, [0, 0, 1, 2]):
        cls.save_label(sid, value)
    cls.save_label(ids[0], 1)  # a new version replaces the old one in the counts
    st = cls.status()
    assert st["samples"] == 6 and st["labeled"] == 4
    assert st["per_class"] == {"benign": 1, "malignant": 2, "other": 1}
    assert sum(v["samples"] for v in st["per_split"].values()) == 6
    assert sum(v["labeled"] for v in st["per_split"].values()) == 4
    assert set(st["per_split"]) == {"train", "val", "test"}
    s0, s1, s2 = seg.samples()[:3]
    seg.save_label(s0.id, np.array([[1, 2]] * 3 + [[0, 0]] * 3).repeat(3, axis=1)[:, :5])
    seg.save_label(s1.id, np.full((6, 5), 2))
    seg.save_label(s2.id, np.zeros((6, 5), np.uint8))
    st = seg.status()
    assert st["labeled"] == 3
    assert st["per_class"] == {"liver": 1, "tumour": 2}
    # "brain 3" in the Project tab read as nothing in particular
    assert per_class_text("segmentation", st["per_class"]) == ["liver: in 1 label", "tumour: in 2 labels"]
    assert per_class_text("classification", {"benign": 1}) == ["benign: 1 labeled"]
    by_split = st["per_class_split"]
    assert {name: sum(by.values()) for name, by in by_split.items()} == st["per_class"]
    assert by_split["liver"] == {"train": 0, "val": 0, "test": 0, s0.split: 1}
    for project in (cls, seg):  # the loop's counts at each pass: one count query, the same numbers
        for split in (None, "train", "val", "test"):
            for labeled in (None, True, False):
                assert project.count_samples(split, labeled) == len(project.samples(split, labeled))
    assert seg.count_samples(labeled=True) == 3 and cls.label_values() == {0, 1, 2} and seg.label_values() == {1, 2}


def test_mask_round_trip_and_files_never_overwritten(seg):
    s = seg.samples()[1]
    first = np.random.default_rng(0).integers(0, 3, size=(6, 5)).astype(np.int64)
    v1 = seg.save_label(s.id, first, author="x", origin="imported")
    second = np.zeros((6, 5), dtype=bool)
    second[2:4, 1:3] = True
    v2 = seg.save_label(s.id, second)
    assert v1.mask_relpath != v2.mask_relpath
    assert v1.mask_relpath.startswith("masks/") and v1.mask_relpath.endswith(".npz")
    loaded = seg.load_label(s.id)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, second.astype(np.uint8))
    old = seg.load_label(s.id, version=1)
    assert np.array_equal(old, first)
    assert v2.present == (1,) and set(v1.present) <= {1, 2}
    stored = np.load(seg.root / v1.mask_relpath)["mask"]
    assert np.array_equal(stored, first)
    import hashlib
    assert hashlib.sha256((seg.root / v2.mask_relpath).read_bytes()).hexdigest() == v2.checksum
    assert set(seg.labels()) == {s.id}
    assert set(seg.labels(split=s.split)) == {s.id}
    assert seg.check_labels() == []


def test_many_labels_use_uint16_masks(tmp_path):
    names = [f"l{i}" for i in range(300)]
    with Project.create(tmp_path / "p", task="segmentation", names=names) as p:
        (sid,) = p.add_sources([npy_source(tmp_path, "i.npy", (4, 4))])
        mask = np.full((4, 4), 300, dtype=np.int32)
        p.save_label(sid, mask)
        out = p.load_label(sid)
        assert out.dtype == np.uint16 and int(out.max()) == 300


@pytest.mark.parametrize("bad, problem", [
    (np.zeros((6, 4), np.uint8), r"mask shape \(6, 4\) does not match the image shape \(6, 5\)"),
    (np.zeros((6, 5), np.float32), "mask must hold integers, got dtype float32"),
    (np.full((6, 5), 3, np.uint8), r"mask values must be 0..2 \(0 = background\), found 3..3"),
    (np.full((6, 5), -1, np.int16), "found -1..-1"),
    (1, "a segmentation label is a mask array, got int"),
    (None, "got NoneType"),
])
def test_bad_masks_rejected_naming_sample(seg, bad, problem):
    s = next(x for x in seg.samples() if x.slice_index == 2)
    with pytest.raises(InputError, match=problem) as info:
        seg.save_label(s.id, bad)
    assert info.value.path == s.path and "slice 2" in str(info.value)
    assert seg.label(s.id) is None
    assert [f for f in os.listdir(seg.root / "masks")] == []


@pytest.mark.parametrize("bad, problem", [
    (3, r"class index 3 out of range 0..2"),
    (-1, "out of range"),
    (True, "got bool"),
    (1.0, "got float"),
    (np.zeros((8, 8), np.uint8), "got ndarray"),
])
def test_bad_classes_rejected(cls, bad, problem):
    s = cls.samples()[0]
    with pytest.raises(InputError, match=problem) as info:
        cls.save_label(s.id, bad)
    assert info.value.path == s.path
    assert cls.label_history(s.id) == []


def test_damaged_mask_is_reported_not_silently_replaced(seg):
    s = seg.samples()[0]
    seg.save_label(s.id, np.ones((6, 5), np.uint8))
    v2 = seg.save_label(s.id, np.full((6, 5), 2, np.uint8))
    path = seg.root / v2.mask_relpath
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ProjectError) as info:
        seg.load_label(s.id)
    message = str(info.value)
    assert str(path) in message and "damaged" in message and "slice 0" in message
    assert "version 1 is intact" in message
    with pytest.raises(ProjectError, match="damaged"):
        seg.labels()
    assert len(seg.check_labels()) == 1
    with pytest.raises(ProjectError, match="damaged"):
        seg.revert_label(s.id, 2)
    seg.revert_label(s.id, 1)
    assert np.array_equal(seg.load_label(s.id), np.ones((6, 5)))
    assert seg.check_labels() == []
    path.unlink()
    with pytest.raises(ProjectError, match="is missing"):
        seg.load_label(s.id, version=2)


# --------------------------------------------------------------------------------------- lock
_HOLD = textwrap.dedent("""
    import sys, time
    from medlabeler.engine.store import Project
    from medlabeler.engine.errors import ProjectLockedError
    try:
        p = Project.open(sys.argv[1])
    except ProjectLockedError as exc:
        print("LOCKED", exc, flush=True)
        sys.exit(0)
    print("OPENED", flush=True)
    time.sleep(60)
""")


def _run_child(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _HOLD, str(root)], stdout=subprocess.PIPE, text=True, env=env)


def test_second_writer_is_refused(tmp_path):
    root = tmp_path / "proj"
    writer = Project.create(root, task="segmentation", names=["a"])
    with pytest.raises(ProjectLockedError, match=str(root)):
        Project.open(root)  # in the same process: its own file description, refused too
    child = _run_child(root)
    line = child.stdout.readline()
    child.wait(timeout=30)
    assert line.startswith("LOCKED") and str(root) in line and f"pid {os.getpid()}" in line
    with Project.open(root, readonly=True) as reader:  # readers take no lock
        assert reader.task.names == ("a",)
        for write in (lambda: reader.save_label(1, 0), lambda: reader.audit("x"),
                      lambda: reader.add_sources([])):
            with pytest.raises(ProjectError, match="read-only"):
                write()
    writer.close()
    Project.open(root).close()


def test_lock_released_when_holder_dies(tmp_path):
    root = tmp_path / "proj"
    Project.create(root, task="segmentation", names=["a"]).close()
    child = _run_child(root)
    try:
        assert child.stdout.readline().strip() == "OPENED"
        with pytest.raises(ProjectLockedError):
            Project.open(root)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    Project.open(root).close()


def test_forked_child_never_releases_the_parents_lock(tmp_path):
    root = tmp_path / "proj"
    p = Project.create(root, task="segmentation", names=["a"])
    pid = os.fork()
    if pid == 0:  # a DataLoader-like worker that drops its copy of the project
        code = 1
        try:
            try:
                p.samples()
            except ProjectError as exc:
                code = 0 if "forked process" in str(exc) else 2
            p.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with pytest.raises(ProjectLockedError):
        Project.open(root)
    assert p.samples() == []
    p.close()
    Project.open(root).close()


def test_readonly_sees_committed_writes(tmp_path):
    root = tmp_path / "proj"
    with Project.create(root, task="classification", names=["a", "b"]) as writer:
        (sid,) = writer.add_sources([npy_source(tmp_path, "i.npy", (4, 4))])
        with Project.open(root, readonly=True) as reader:
            assert reader.load_label(sid) is None
            writer.save_label(sid, 1)
            assert reader.load_label(sid) == 1


# -------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("relpath", ["../outside.npz", "masks/../../outside.npz", "/etc/passwd",
                                     "masks\\..\\..\\x.npz", "C:/x.npz", ""])
def test_paths_escaping_the_project_are_refused(seg, tmp_path, relpath):
    s = seg.samples()[0]
    lv = seg.save_label(s.id, np.ones((6, 5), np.uint8))
    (tmp_path / "outside.npz").write_bytes((seg.root / lv.mask_relpath).read_bytes())
    db = sqlite3.connect(seg.root / "project.sqlite")
    db.execute("UPDATE labels SET mask_relpath = ?", (relpath,))
    db.commit()
    db.close()
    with pytest.raises(ProjectError, match="path|not a valid"):
        seg.load_label(s.id)


def test_symlink_escaping_the_project_is_refused(seg, tmp_path):
    s = seg.samples()[0]
    lv = seg.save_label(s.id, np.ones((6, 5), np.uint8))
    target = tmp_path / "outside.npz"
    (seg.root / lv.mask_relpath).rename(target)
    (seg.root / lv.mask_relpath).symlink_to(target)
    with pytest.raises(ProjectError, match="escapes the project folder"):
        seg.load_label(s.id)


def test_model_path_escape_refused(seg, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    seg.add_model(method="supervised", weights_file=weights, record={}, metrics={})
    db = sqlite3.connect(seg.root / "project.sqlite")
    db.execute("UPDATE models SET relpath = '../../w.safetensors'")
    db.commit()
    db.close()
    with pytest.raises(ProjectError, match="escapes"):
        seg.models()


# -------------------------------------------------------------------------------- sources
def test_missing_or_moved_source_named(seg, tmp_path):
    s = seg.samples()[0]
    moved = tmp_path / "moved.npy"
    os.replace(s.path, moved)
    with pytest.raises(InputError, match="missing") as info:
        seg.load_pixels(s)
    assert info.value.path == s.path
    problems = seg.verify_sources()
    assert [p.path for p in problems] == [s.path]
    with pytest.raises(InputError, match="missing") as info:
        seg.add_sources([npy_source(tmp_path, "new.npy", (4, 4)).__class__(
            path=str(tmp_path / "gone.nii"), series_uid=None, shape=(4, 4), spacing=(1.0, 1.0),
            modality="OT", is_volume=False, group="g", label_hint=None)])
    assert info.value.path == str(tmp_path / "gone.nii")


def test_changed_source_detected(seg):
    s = seg.samples()[-1]
    assert seg.verify_sources() == []
    np.save(s.path, np.ones((7, 5), np.uint8))
    assert [p.path for p in seg.verify_sources()] == [s.path]


def test_labeled_images_that_no_longer_read_are_found_and_noted(tmp_path):
    """Gone or damaged since the import: found (and noted unreadable) before a run fails on them.
    Unlabeled ones are not looked at, and one only touched (same pixels) reads and is fine."""
    from PIL import Image

    sources = []
    for name in ("gone", "damaged", "touched", "unlabeled"):
        path = tmp_path / "src" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(path)
        sources.append(SourceInfo(path=str(path), series_uid=None, shape=(8, 8), spacing=(1.0, 1.0), modality="OT",
                                  is_volume=False, group=name, label_hint=None))
    with Project.create(tmp_path / "p", task="classification", names=["a", "b"]) as project:
        project.add_sources(sources)
        by_name = {Path(s.path).stem: s for s in project.samples()}
        gone, damaged, touched, unlabeled = (by_name[n] for n in ("gone", "damaged", "touched", "unlabeled"))
        for s in (gone, damaged, touched):
            project.save_label(s.id, 0)
        os.remove(gone.path)
        Path(damaged.path).write_bytes(b"not an image")
        os.utime(touched.path, (1, 1))
        Path(unlabeled.path).write_bytes(b"not an image")
        found = project.check_labeled_sources()
        assert [(ids, problem.path) for ids, problem in found.unreadable] == [([damaged.id], damaged.path),
                                                                            ([gone.id], gone.path)]
        assert project.unreadable_ids() == {gone.id, damaged.id}  # not the touched one, nor the unlabeled
        assert list(found.readable) == [touched.path]  # changed, reads as before: not read again once refreshed
        project.refresh_fingerprints(found.readable)
        assert project.check_labeled_sources().readable == {}
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(damaged.path)  # put back: read, it is as before
        project.load_pixels(damaged)
        assert project.unreadable_ids() == {gone.id}


def test_load_pixels_reads_a_volume_once(tmp_path, monkeypatch):
    nib = pytest.importorskip("nibabel", reason="nibabel writes the test volume")
    from PIL import Image as PILImage

    import medlabeler.engine.io as io_module

    data = np.arange(5 * 6 * 4, dtype=np.int16).reshape(5, 6, 4)  # nibabel (i, j, k)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.9, 2.5, 1.0])), tmp_path / "vol.nii.gz")
    rgb = np.random.default_rng(1).integers(0, 255, size=(7, 9, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "photo.png")
    volume = io_module.read_image(tmp_path / "vol.nii.gz").array
    assert volume.shape == (4, 6, 5)
    infos = [SourceInfo(path=str(tmp_path / "vol.nii.gz"), series_uid=None, shape=volume.shape,
                        spacing=(2.5, 0.9, 0.8), modality="OT", is_volume=True, group="v", label_hint=None),
             SourceInfo(path=str(tmp_path / "photo.png"), series_uid=None, shape=(7, 9, 3),
                        spacing=(1.0, 1.0), modality="RGB", is_volume=False, group="r", label_hint=None)]
    calls = []
    real = io_module.read_image
    monkeypatch.setattr(io_module, "read_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    with Project.create(tmp_path / "p", task="segmentation", names=["a"], unit="slice") as p:
        p.add_sources(infos)
        slices = [s for s in p.samples() if s.slice_index is not None]
        assert len(slices) == 4 and slices[0].spacing == (0.9, 0.8)
        for s in slices:
            pixels = p.load_pixels(s)
            assert pixels.dtype == np.float32 and pixels.shape == (6, 5)
            assert np.array_equal(pixels, volume[s.slice_index].astype(np.float32))
        assert len(calls) == 1, "iterating the slices of one volume reads it once"
        pixels = p.load_pixels(slices[0].id)
        pixels[:] = -1  # callers get a copy, never the cached volume
        assert np.array_equal(p.load_pixels(slices[0]), volume[0])
        photo = next(s for s in p.samples() if s.slice_index is None)
        out = p.load_pixels(photo)
        assert out.shape == (7, 9, 3) and out.dtype == np.float32 and np.array_equal(out, rgb)


# ------------------------------------------------------------------------- models and scores
def test_models_scores_embeddings(cls, tmp_path):
    ids = [s.id for s in cls.samples()]
    cls.save_label(ids[0], 1)
    weights = tmp_path / "run" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"first weights")
    weights.with_suffix(".json").write_text('{"arch": "resnet18"}')
    assert cls.active_model() is None and cls.models() == []
    m1 = cls.add_model(method="supervised", weights_file=weights, record={"arch": "resnet18", "lr": np.float32(0.5)},
                       metrics={"val_acc": 0.5}, parent=None)
    assert m1.version == 1 and m1.active and m1.n_labels == 1 and m1.record["lr"] == 0.5
    assert m1.path.is_file() and m1.path.parent == cls.root / "models" and m1.path.read_bytes() == b"first weights"
    assert m1.path.with_suffix(".json").read_text() == '{"arch": "resnet18"}'
    assert weights.exists(), "the source file is copied, not moved"
    weights.write_bytes(b"second weights")
    m2 = cls.add_model(method="fixmatch", weights_file=weights, record={"n_labels": 7}, metrics={}, parent=1,
                       activate=False)
    assert (m2.version, m2.parent, m2.n_labels, m2.active) == (2, 1, 7, False)
    assert cls.active_model().version == 1
    cls.activate(2)
    assert [m.active for m in cls.models()] == [False, True]
    with pytest.raises(ProjectError, match="parent model version 9"):
        cls.add_model(method="x", weights_file=weights, record={}, metrics={}, parent=9)
    with pytest.raises(InputError, match="weights file not found"):
        cls.add_model(method="x", weights_file=tmp_path / "none.safetensors", record={}, metrics={})
    with pytest.raises(ProjectError, match="no model version 5"):
        cls.activate(5)
    # scores: None means the active model
    cls.write_scores(None, {ids[1]: {"entropy": 0.9, "margin": 0.1}, ids[2]: {"entropy": float("nan")}})
    cls.write_scores(1, {ids[1]: {"entropy": 0.2}})
    assert cls.scores()[ids[1]] == {"entropy": 0.9, "margin": 0.1}
    assert np.isnan(cls.scores()[ids[2]]["entropy"])
    assert cls.scores(2, name="margin") == {ids[1]: {"margin": 0.1}}
    assert cls.scores(1) == {ids[1]: {"entropy": 0.2}}
    cls.write_scores(None, {ids[1]: {"entropy": 0.5}})  # replaces one value, keeps the rest
    assert cls.scores()[ids[1]] == {"entropy": 0.5, "margin": 0.1}
    assert cls.stale_score_samples() == [ids[0]] + ids[3:]
    assert cls.stale_score_samples(unlabeled_only=True) == ids[3:]
    for split in ("train", "val", "test"):  # what the learning loop scores next (`scoring.to_score`)
        in_split = {s.id for s in cls.samples(split=split)}
        assert cls.stale_score_samples(unlabeled_only=True, split=split) == [i for i in ids[3:] if i in in_split]
    with pytest.raises(ProjectError, match="unknown sample ids"):
        cls.write_scores(None, {999: {"entropy": 1.0}})
    with pytest.raises(ProjectError, match="no model version 9"):
        cls.scores(9)
    # embeddings
    assert cls.embeddings() is None
    emb = np.random.default_rng(0).normal(size=(3, 4))
    cls.write_embeddings(2, ids[:3], emb)
    got_ids, got = cls.embeddings()
    assert got_ids.tolist() == ids[:3] and got.dtype == np.float32 and np.allclose(got, emb)
    first_file = {f for f in os.listdir(cls.root / "models") if f.startswith("e")}
    cls.write_embeddings(None, ids[:2], emb[:2])
    assert cls.embeddings(2)[1].shape == (2, 4)
    assert not first_file & set(os.listdir(cls.root / "models")), "replaced embeddings file is removed"
    with pytest.raises(ValueError, match="embeddings must be"):
        cls.write_embeddings(2, ids[:2], emb)
    assert cls.status()["active_model"] == 2
    root = cls.root
    cls.close()
    with Project.open(root) as again:  # nothing referenced is taken for an orphan
        assert again.embeddings(2)[0].tolist() == ids[:2]
        assert [m.path.read_bytes() for m in again.models()] == [b"first weights", b"second weights"]


def test_scores_without_a_model(cls):
    ids = [s.id for s in cls.samples()]
    cls.write_scores(None, {ids[0]: {"random": 0.3}})
    assert cls.scores() == {ids[0]: {"random": 0.3}} and cls.scores(0) == cls.scores()
    assert ids[0] not in cls.stale_score_samples()


# -------------------------------------------------------------------------------- audit, misc
def test_audit_never_holds_identifiers(tmp_path):
    src = tmp_path / "Doe^John_1962" / "PAT123456"
    with Project.create(tmp_path / "p", task="classification", names=["a", "b"]) as p:
        ids = p.add_sources([npy_source(src, "scan.npy", (4, 4), group="sha-of-PAT123456", label_hint="a")],
                            import_label_hints=True)
        assert p.load_label(ids[0]) == 0 and p.label(ids[0]).origin == "imported"
        p.save_label(ids[0], 1, author="reader1")
        p.audit("export", images=str(src / "scan.npy"), patient_name="Doe^John", PatientID="PAT123456",
                folder=src, files=3, nested={"accession_number": "A77", "note": "done"}, tags=[str(src)])
        log = p.audit_log()
        assert [e["action"] for e in log] == ["project_created", "label_saved", "sources_added",
                                              "label_saved", "export"]
        assert log[-1]["detail"]["files"] == 3 and log[-1]["detail"]["nested"]["note"] == "done"
        assert p.audit_log(limit=1) == log[-1:]
        text = json.dumps(log)
        for secret in ("Doe", "John", "PAT123456", "A77", str(tmp_path)):
            assert secret not in text
        db = sqlite3.connect(p.root / "project.sqlite")
        audit_rows = json.dumps(db.execute("SELECT * FROM audit").fetchall())
        db.close()
        assert "Doe" not in audit_rows and "PAT123456" not in audit_rows


def test_orphans_cleaned_on_open(seg):
    s = seg.samples()[0]
    lv = seg.save_label(s.id, np.ones((6, 5), np.uint8))
    root = seg.root
    seg.close()
    masks = root / "masks"
    (masks / ".tmp-0123456789abcdef").write_bytes(b"half a mask")
    (masks / f"s{s.id}-v2-0123456789ab.npz").write_bytes(b"renamed, never committed")
    (masks / "notes.txt").write_text("the user's own file")
    (root / "models" / ".tmp-feed").write_bytes(b"x")
    (root / ".tmp-0badc0de.sqlite").write_bytes(b"a creation that crashed")
    (root / ".tmp-user-file").write_text("not ours: no .sqlite in the name")
    (root / "models" / "m0001-0123456789ab.safetensors").write_bytes(b"never committed")
    with Project.open(root, readonly=True):
        assert (masks / ".tmp-0123456789abcdef").exists(), "read-only opens change nothing"
    with Project.open(root) as p:
        assert sorted(os.listdir(masks)) == sorted([lv.mask_relpath.split("/")[1], "notes.txt"])
        assert os.listdir(root / "models") == []
        assert not (root / ".tmp-0badc0de.sqlite").exists() and (root / ".tmp-user-file").exists()
        assert p.audit_log()[-1] == {**p.audit_log()[-1], "action": "orphans_removed", "detail": {"count": 5}}
        assert p.save_label(s.id, np.zeros((6, 5), np.uint8)).version == 2


def test_store_imports_no_torch_or_qt():
    code = ("import sys, medlabeler.engine.store; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'qtpy', 'PySide6', 'napari', 'superqt', 'magicgui')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_sample_is_frozen():
    s = Sample(id=1, path="/x", series_uid=None, slice_index=None, group="g", split="train", shape=(2, 2),
               spacing=(1.0, 1.0), modality="OT", is_volume=False)
    with pytest.raises(AttributeError):
        s.split = "val"


def test_threads_share_a_project(cls):
    import threading

    ids = [s.id for s in cls.samples()]
    errors = []

    def worker(k):
        try:
            for i in range(20):
                cls.save_label(ids[k], i % 3)
                cls.write_scores(None, {ids[k]: {"entropy": float(i)}})
                cls.status()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and time.time() - t0 < 30
    assert all(len(cls.label_history(ids[k])) == 20 for k in range(4))


def test_a_read_never_waits_for_another_threads_write_transaction(cls):
    """Each thread reads on its own WAL connection: the app's main thread must not stall while a
    worker holds a write transaction (a model copied and fsynced, a chunk of scores). The writer
    sees its own uncommitted rows; others see the last commit, then the new one."""
    import threading

    first, second = (s.id for s in cls.samples()[:2])
    cls.save_label(first, 0)
    inside, release, seen_inside = threading.Event(), threading.Event(), []

    def hold_a_write() -> None:
        with cls._write() as conn:
            conn.execute("UPDATE labels SET is_current = 0 WHERE sample_id = ?", (first,))
            seen_inside.append(cls.labeled_ids())  # its own write, not committed yet
            inside.set()
            release.wait(10)  # without separate readers the main thread waits this long

    writer = threading.Thread(target=hold_a_write)
    writer.start()
    assert inside.wait(30)
    assert cls.labeled_ids() == {first}  # answered while the transaction is open: the last commit
    assert writer.is_alive() and not release.is_set()
    release.set()
    writer.join(30)
    assert seen_inside == [frozenset()] and cls.labeled_ids() == frozenset()
    cls.save_label(second, 1)
    assert cls.labeled_ids() == {second}  # a commit on this thread is seen at once
    assert len(cls._readers) >= 1


def test_the_lock_says_which_command_holds_the_project_never_its_arguments(tmp_path, monkeypatch):
    """A trial: export said "open in another app (pid ...)" while `medlabeler train` held it."""
    root = tmp_path / "proj"
    Project.create(root, task="segmentation", names=["a"]).close()
    monkeypatch.setattr(sys, "argv", ["/venv/bin/medlabeler", "train", "/data/Doe_Jane/proj", "--steps", "5"])
    with Project.open(root):
        with pytest.raises(ProjectLockedError) as raised:
            Project.open(root)
    assert raised.value.holder.endswith(", `medlabeler train`") and f"pid {os.getpid()}" in raised.value.holder
    assert "Doe_Jane" not in str(raised.value) and "another medlabeler app or command" in str(raised.value)
    monkeypatch.setattr(sys, "argv", ["/scripts/medlabeler_batch.py", "DoeJane"])  # a script: its argument is a path
    with Project.open(root):
        with pytest.raises(ProjectLockedError) as raised:
            Project.open(root)
    assert "DoeJane" not in str(raised.value) and raised.value.holder.endswith(socket.gethostname())


def test_labels_no_validation_label_holds_are_named():
    """A radiologist's validation slices held no lesion, and the headline Dice (what promotion
    compares) read as if it measured the lesion too."""
    status = {"per_split": {"val": {"labeled": 4}},
              "per_class_split": {"bone": {"train": 8, "val": 4, "test": 1}, "lesion": {"train": 3, "val": 0, "test": 0}}}
    assert unmeasured_text("segmentation", status) == (
        "no validation label holds lesion: the validation Dice (what promotion compares) leaves it out; label "
        "validation samples that show lesion to measure it")
    three = {**status, "per_class_split": {**status["per_class_split"], "other": {"train": 2, "val": 2, "test": 0}}}
    assert "no validation label is lesion: the validation AUC" in unmeasured_text("classification", three)
    status["per_class_split"]["bone"]["val"] = 0  # validation masks of background only
    assert ("no validation label holds bone, lesion: the validation Dice (what promotion compares) counts only "
            "what the model finds there" in unmeasured_text("segmentation", status))
    # classification, one class in validation: promotion compares on the training labels (said elsewhere)
    assert unmeasured_text("classification", status) == ""
    status["per_class_split"]["bone"]["val"] = 4
    status["per_class_split"]["lesion"]["val"] = 1
    assert unmeasured_text("segmentation", status) == ""
    status["per_class_split"]["lesion"]["val"] = 0
    status["per_split"]["val"]["labeled"] = 0  # no validation label at all: promotion waits, and says so
    assert unmeasured_text("segmentation", status) == ""


def test_labels_no_training_label_holds_are_named():
    """A one-scan project's slabs put every slice of a rare structure into test: no model could
    learn it, and nothing said so."""
    status = {"per_split": {"train": {"labeled": 6}},
              "per_class_split": {"bone": {"train": 6, "val": 2, "test": 1}, "lesion": {"train": 0, "val": 0, "test": 2}}}
    assert untrained_text("segmentation", status) == (
        "no training label holds lesion (held-out labels do): the models cannot learn it; label training samples "
        "that show lesion")
    assert untrained_text("classification", status).startswith("no training label is lesion")
    status["per_class_split"]["lesion"]["test"] = 0  # nobody labeled it anywhere yet: nothing to say
    assert untrained_text("segmentation", status) == ""
    status["per_class_split"]["lesion"]["val"], status["per_split"]["train"]["labeled"] = 1, 0
    assert untrained_text("segmentation", status) == ""  # no training label at all: the loop says it waits
