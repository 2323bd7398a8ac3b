"""A project on a disk that is full or cannot be written, or whose database was cut short: each
says what is wrong in plain words, and what only reads (status, export) still works where it can."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from medlabeler.cli import main
from medlabeler.engine.errors import ProjectError, ProjectReadOnlyError
from medlabeler.engine.store import Project
from medlabeler.engine.store import project as store

from .test_pipeline_datasets import make_seg_project


@pytest.fixture
def root(tmp_path):
    make_seg_project(tmp_path, n=2, depth=3).close()
    return tmp_path / "project"


def make_the_lock_file_unwritable(monkeypatch, root):
    """The project at ``root`` as on a read-only disk: its lock file cannot be opened (tests run as
    root, whom file modes do not stop)."""
    from medlabeler.engine.store.lock import LOCK_NAME

    real_open = os.open

    def refuse(path, flags, *args):
        if str(path) == str(root / LOCK_NAME):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse)


def test_a_read_only_project_folder_opens_read_only_and_exports(root, tmp_path, monkeypatch, capsys):
    """An archived project (a read-only share): `export` and the app said "cannot open the lock
    file: Read-only file system" and took nothing out."""
    make_the_lock_file_unwritable(monkeypatch, root)
    with pytest.raises(ProjectReadOnlyError, match="cannot be written .*the app opens it read-only"):
        Project.open(root)
    assert main(["export", str(root), "--format", "png", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "cannot be written" in out and "exporting read-only" in out and "exported 6 " in out


def test_a_read_only_connection_reads_the_file_alone_where_no_write_ahead_log_is_left(root, monkeypatch):
    """SQLite reads a WAL database through a -shm file that a read-only folder or a full disk cannot
    hold: `status` said the project was damaged."""
    real_connect = sqlite3.connect

    class NoShm:  # as on a read-only mount: the -shm file cannot be made
        def execute(self, *args):
            raise sqlite3.OperationalError("unable to open database file")

        def close(self):
            pass

    def no_shm(database, *args, **kwargs):
        return NoShm() if "mode=ro" in str(database) else real_connect(database, *args, **kwargs)

    monkeypatch.setattr(store.sqlite3, "connect", no_shm)
    with Project.open(root, readonly=True) as project:
        assert len(project.samples()) == 6 and project.labeled_ids()
    wal = root / "project.sqlite-wal"
    wal.write_bytes(b"x" * 100)  # a log not yet in the file (a crash): the file alone would be stale
    with pytest.raises(ProjectError):
        Project.open(root, readonly=True)


def test_a_project_database_cut_to_nothing_is_said_so_and_left_alone(root, capsys):
    """A 0-byte project.sqlite: `status` advised "open it once for writing to upgrade it", and a
    command that opened it for writing made it a new, empty database."""
    db = root / "project.sqlite"
    db.write_bytes(b"")
    for args in (["status", str(root)], ["export", str(root), "--format", "png", "--out", str(root.parent / "o")]):
        assert main(args) != 0
        err = capsys.readouterr().err
        assert "holds no project (0 bytes)" in err and "restore project.sqlite from a backup" in err
        assert "upgrade" not in err
    assert db.stat().st_size == 0


def test_a_database_that_does_not_open_on_a_full_disk_is_not_called_damaged(root, monkeypatch):
    class Usage:
        free = 4096

    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: Usage)
    error = store._not_opened(root / "project.sqlite", sqlite3.OperationalError("disk I/O error"))
    assert isinstance(error, ProjectReadOnlyError)  # export and the app open it read-only
    assert "the disk holding it is full (4 KB free)" in str(error) and "damaged (" not in str(error)
