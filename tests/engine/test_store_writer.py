"""The label writer: saves on one background thread, in submission order, durable once landed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from medlabeler.engine.errors import InputError
from medlabeler.engine.store import Project
from medlabeler.engine.store.writer import LabelWriter
from tests.engine.test_store import npy_source

REPO = Path(__file__).resolve().parents[2]
SHAPE = (6, 5)


@pytest.fixture
def seg(tmp_path):
    """A segmentation project with three 6x5 images."""
    p = Project.create(tmp_path / "seg", task="segmentation", names=["liver", "tumour"])
    p.add_sources([npy_source(tmp_path / "src", f"img{k}.npy", SHAPE, group=f"g{k}") for k in range(3)])
    yield p
    p.close()


def mask(fill: int, k: int = 0) -> np.ndarray:
    m = np.zeros(SHAPE, np.uint8)
    m.flat[k] = fill
    return m


def test_saves_land_in_submission_order_and_are_durable_after_flush(seg):
    ids = [s.id for s in seg.samples()]
    writer = LabelWriter(seg)
    submitted = []
    for k in range(12):  # versions of one sample interleaved with the others
        sample = ids[k % 2] if k % 3 else ids[2]
        submitted.append((sample, mask(1 + k % 2, k)))
        writer.submit(sample, submitted[-1][1], author="dr a", origin="manual")
    assert writer.flush(30)
    assert writer.pending() == {}
    for sample in ids:
        expected = [m for s, m in submitted if s == sample]
        history = seg.label_history(sample)
        assert [lv.version for lv in history] == list(range(1, len(expected) + 1))
        for lv, m in zip(history, expected):
            assert np.array_equal(seg.load_label(sample, lv.version), m)
    writer.close()
    root = seg.root
    seg.close()
    with Project.open(root, readonly=True) as again:  # on disk, not only in this handle
        assert np.array_equal(again.load_label(ids[2]), [m for s, m in submitted if s == ids[2]][-1])


def test_pending_until_landed_and_the_submitted_array_is_copied(seg):
    sample = seg.samples()[0].id
    landed = []
    writer = LabelWriter(seg, on_landed=landed.append)
    painted = mask(1)
    with seg._label_saves:  # the writer thread cannot save yet
        pending = writer.submit(sample, painted)
        painted[...] = 2  # the clinician paints on; what was submitted is what lands
        assert writer.pending_ids() == {sample} and writer.busy
        assert np.array_equal(writer.pending()[sample], mask(1))
        assert not pending.landed and seg.label(sample) is None
    assert pending.wait(30) and pending.saved and landed == [pending]
    assert pending.label.version == 1 and np.array_equal(seg.load_label(sample), mask(1))
    assert writer.pending_ids() == frozenset() and not writer.busy
    writer.close()


def test_a_failed_save_is_reported_and_the_next_ones_go_on(seg):
    first, second = (s.id for s in seg.samples()[:2])
    writer = LabelWriter(seg)
    bad = writer.submit(first, np.zeros((2, 2), np.uint8))  # wrong shape
    good = writer.submit(second, mask(1))
    assert writer.flush(30)
    assert bad.landed and not bad.saved and isinstance(bad.error, InputError)
    assert good.saved and seg.label(first) is None and seg.label(second).version == 1
    writer.close()
    with pytest.raises(RuntimeError):
        writer.submit(second, mask(2))


def test_reads_go_on_while_a_mask_file_is_written(seg, monkeypatch):
    """The mask file is written and fsynced outside the connection's mutex: other threads query
    the project meanwhile (the app's main thread never waits for a save's disk writes)."""
    from medlabeler.engine.store import files

    writing, release = threading.Event(), threading.Event()
    durable = files._write_durable

    def slow_write(path, data):
        writing.set()
        assert release.wait(30)
        durable(path, data)

    monkeypatch.setattr(files, "_write_durable", slow_write)
    sample = seg.samples()[0].id
    writer = LabelWriter(seg)
    writer.submit(sample, mask(1))
    assert writing.wait(30)
    assert len(seg.samples()) == 3 and seg.label(sample) is None  # would block under the mutex
    release.set()
    assert writer.flush(30) and seg.label(sample).version == 1
    writer.close()


def test_saves_still_pending_land_when_the_interpreter_exits(seg):
    """A program that submits and exits without flushing still gets its labels on disk."""
    root = seg.root
    ids = [s.id for s in seg.samples()]
    seg.close()
    script = textwrap.dedent(f"""
        import numpy as np
        from medlabeler.engine.store import Project, files
        from medlabeler.engine.store.writer import LabelWriter
        durable = files._write_durable
        def slow(path, data):  # the saves are still queued when the main thread ends
            import time; time.sleep(0.05); durable(path, data)
        files._write_durable = slow
        project = Project.open({str(root)!r})
        writer = LabelWriter(project)
        for k, sample in enumerate({ids!r} * 3):
            m = np.zeros({SHAPE!r}, np.uint8); m.flat[k] = 1
            writer.submit(sample, m)
        print("submitted", len(writer.pending_ids()) > 0, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "submitted True"
    with Project.open(root, readonly=True) as again:
        assert all(len(again.label_history(sample)) == 3 for sample in ids)
        assert again.check_labels() == []


def test_ranking_revision_moves_with_scores_not_labels(seg):
    first = seg.samples()[0].id
    before = seg.ranking_revision
    seg.save_label(first, mask(1))
    assert seg.ranking_revision == before and seg.labeled_ids() == {first}
    seg.write_scores(None, {first: {"entropy": 0.5}})
    assert seg.ranking_revision == before + 1
