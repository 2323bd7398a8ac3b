"""A label save survives SIGKILL at any instant: the old or the new label, never a torn one.

A child process (plain python, no torch) saves labels in a loop and prints ``ACK`` after each save
returns; the test kills it at random moments, then checks the database, every acknowledged save,
and every file a label points to. A second test crashes it at chosen steps of the atomic write.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medlabeler.engine.io import SourceInfo
from medlabeler.engine.store import Project

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("crash_child", HERE / "crash_child.py")
crash_child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crash_child)

TRIALS = 120  # random kills, alternating a segmentation and a classification project


class ForkServer:
    """The child process: forks savers on demand; its output lines arrive through a queue."""

    def __init__(self, log: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self._stderr = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "crash_child.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env, text=True, bufsize=1)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.acks: dict[int, list[tuple[int, int, str]]] = {}
        self.ready = self.expect("READY")

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put("EOF")

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """Read lines up to one starting with ``prefix``, filing ACKs; fail on ERR or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith("ACK "):
                _, pid, sample, version, token = line.split()
                self.acks.setdefault(int(pid), []).append((int(sample), int(version), token))
            elif line.startswith("ERR ") or line == "EOF":
                raise AssertionError(f"crash child failed: {line}")
            if line.startswith(prefix):
                return line

    def run(self, kind: str, root: Path, seed: int, crash: str = "none") -> int:
        self.send(f"RUN {kind} {root} {seed} {crash}")
        return int(self.expect("PID ").split()[1])

    def reap(self, pid: int) -> int:
        """Wait until the worker is dead (so all its ACKs are read); returns its wait status."""
        self.send(f"REAP {pid}")
        return int(self.expect(f"DEAD {pid} ").split()[2])

    def close(self) -> None:
        try:
            self.send("QUIT")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ForkServer(tmp_path_factory.mktemp("crash") / "child-stderr.txt")
    yield s
    s.close()


def _make_project(root: Path, kind: str, n_samples: int) -> None:
    names = ["a", "b"] if kind == "segmentation" else ["a", "b", "c"]
    infos = []
    for k in range(n_samples):
        path = root.parent / f"{root.name}-src" / f"img{k}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros(crash_child.SHAPE, np.uint8))
        infos.append(SourceInfo(path=str(path), series_uid=None, shape=crash_child.SHAPE, spacing=(1.0, 1.0),
                                modality="OT", is_volume=False, group=f"g{k}", label_hint=None))
    with Project.create(root, task=kind, names=names) as p:
        p.add_sources(infos)


def _uncommitted_files(root: Path) -> set[str]:
    """Mask files no committed label points to: the kill landed inside a save."""
    db = sqlite3.connect((root / "project.sqlite").as_uri() + "?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT mask_relpath FROM labels WHERE mask_relpath IS NOT NULL").fetchall()
    finally:
        db.close()
    return set(os.listdir(root / "masks")) - {r[0].split("/", 1)[1] for r in rows}


def _killed(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _check(root: Path, kind: str, acked: list[tuple[int, int, str]]) -> None:
    """After a crash: database intact, every ACKed save there with its content, no torn current label."""
    with Project.open(root) as p:  # writer open: also removes what the crash left behind
        assert p.integrity_check() == "ok"
        masks = set(os.listdir(root / "masks"))
        referenced = set()
        for s in p.samples():
            history = p.label_history(s.id)
            assert [h.version for h in history] == list(range(1, len(history) + 1)), "versions without gaps"
            assert [h.is_current for h in history] == [False] * (len(history) - 1) + [True] * bool(history)
            for h in history:
                if kind == "segmentation":
                    referenced.add(h.mask_relpath.split("/", 1)[1])
                else:
                    assert h.value == crash_child.expected_class(s.id, h.version)
            if history:  # the current label loads (checksum verified) and is the right content
                current = p.load_label(s.id)
                if kind == "segmentation":
                    assert np.array_equal(current, crash_child.expected_mask(s.id, history[-1].version))
        assert masks == referenced, "no temp or orphan files after open, no label without its file"
        by_key = {(lv.sample_id, lv.version): lv for s in p.samples() for lv in p.label_history(s.id)}
        for sample_id, version, token in acked:
            lv = by_key.get((sample_id, version))
            assert lv is not None, f"acknowledged save lost: sample {sample_id} version {version}"
            if kind == "segmentation":
                assert lv.checksum == token
                assert np.array_equal(p.load_label(sample_id, version), crash_child.expected_mask(sample_id, version))
            else:
                assert str(lv.value) == token


def test_random_kills_never_lose_or_tear_a_label(server, tmp_path):
    assert server.ready == "READY torch=False", "the store must not import torch"
    roots = {kind: tmp_path / kind for kind in ("segmentation", "classification")}
    for kind, root in roots.items():
        _make_project(root, kind, n_samples=5)
    acked: dict[str, list] = {kind: [] for kind in roots}
    rng = random.Random(20240607)
    started = time.monotonic()
    mid_save = 0
    for trial in range(TRIALS):
        kind = ("segmentation", "classification")[trial % 2]
        root = roots[kind]
        pid = server.run(kind, root, seed=trial)
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        status = server.reap(pid)
        assert _killed(status), f"worker ended by itself (status {status}); see child-stderr.txt"
        fresh = server.acks.pop(pid, [])
        acked[kind].extend(fresh)
        if kind == "segmentation":
            mid_save += bool(_uncommitted_files(root))
        _check(root, kind, fresh)
    for kind, root in roots.items():
        _check(root, kind, acked[kind])
    elapsed = time.monotonic() - started
    saves = {kind: len(v) for kind, v in acked.items()}
    print(f"\n{TRIALS} kills in {elapsed:.1f} s; acknowledged saves {saves}; "
          f"{mid_save} segmentation kills landed inside a save (left an uncommitted mask file)")
    assert min(saves.values()) > TRIALS // 2, "the savers got to work between kills"
    assert mid_save >= 1, "some kills landed in the middle of writing a mask"


@pytest.mark.parametrize("crash, leftover", [
    ("torn", "half-written temp file"),
    ("before_rename", "complete temp file"),
    ("before_commit", "published but uncommitted mask file"),
])
def test_crash_inside_a_save_keeps_the_previous_version(server, tmp_path, crash, leftover):
    root = tmp_path / "p"
    _make_project(root, "segmentation", n_samples=1)
    pid = server.run("segmentation", root, seed=0, crash=crash)
    assert _killed(server.reap(pid))
    acks = server.acks.pop(pid, [])
    assert [(s, v) for s, v, _ in acks] == [(1, 1), (1, 2)]
    names = os.listdir(root / "masks")
    temps = [n for n in names if n.startswith(".tmp-")]
    published = [n for n in names if n.startswith("s1-v3-")]
    if crash == "before_commit":
        assert len(published) == 1 and not temps, leftover
    else:
        assert len(temps) == 1 and not published, leftover
        size = (root / "masks" / temps[0]).stat().st_size
        full = len((root / "masks" / [n for n in names if n.startswith("s1-v2-")][0]).read_bytes())
        assert (size < full) if crash == "torn" else size > 0
    _check(root, "segmentation", acks)
    with Project.open(root) as p:
        assert p.label(1).version == 2
        assert np.array_equal(p.load_label(1), crash_child.expected_mask(1, 2))
        assert p.audit_log()[-1]["action"] in ("orphans_removed", "label_saved")
        assert any(e["action"] == "orphans_removed" for e in p.audit_log())
        again = p.save_label(1, crash_child.expected_mask(1, 3))
        assert again.version == 3 and np.array_equal(p.load_label(1), crash_child.expected_mask(1, 3))
