"""The writer lock: ``fcntl.flock`` on ``<project>/lock``, taken without waiting.

The kernel drops the lock when its file is closed or the process dies (even by SIGKILL), so a
crashed app never leaves a stale lock. Each ``ProjectLock`` opens its own file description, so a
second writer in the same process is refused too.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

from ..errors import ProjectError, ProjectLockedError, ProjectReadOnlyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "lock"


class ProjectLock:
    """An exclusive, non-blocking writer lock on a project folder."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / LOCK_NAME
        self._fd: int | None = None
        self._pid = os.getpid()

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover
            raise ProjectError(f"{self.root}: opening a project for writing needs fcntl (POSIX)")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ProjectReadOnlyError(
                    f"{self.root}: the project folder cannot be written ({exc.strerror}): it can be looked at and "
                    "exported (the app opens it read-only); to label or train, copy it to a folder that can be "
                    "written") from None
            raise ProjectError(f"{self.root}: cannot open the lock file: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ProjectLockedError(
                    f"{self.root}: project is open for writing in another medlabeler app or command{holder}; "
                    "close it there first (meanwhile the app opens it read-only, and status, queue, "
                    "evaluate and export, which only read, work)",
                    holder=holder.strip(" ()"),
                ) from None
            raise ProjectError(f"{self.root}: cannot lock the project: {exc.strerror or exc}") from None
        try:  # who holds it, for the message another app will show (no personal data)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}{_what_runs()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        self._pid = os.getpid()

    def release(self) -> None:
        if os.getpid() != self._pid:  # forked child: the lock belongs to the parent
            self.forget()
            return
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def forget(self) -> None:
        """Close this process's copy of the lock file without unlocking (after a fork).

        flock locks belong to the open file description shared with the parent; an explicit
        unlock here would release the parent's lock.
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


def _what_runs() -> str:
    """", `medlabeler train`" (the command's name only: its arguments name files), or ", napari"."""
    argv = [os.path.basename(a) for a in sys.argv[:2]]
    if argv and argv[0] == "medlabeler" and len(argv) > 1 and argv[1].replace("-", "").isalpha():
        return f", `medlabeler {argv[1]}`"  # the console script: its first argument is its command
    return f", {argv[0]}" if argv and argv[0] in ("napari", "medlabeler") else ""
