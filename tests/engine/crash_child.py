"""Child for test_crash_safety: saves labels in a loop until it is killed.

Runs as a small fork server so that a hundred kills cost milliseconds each, not an interpreter
start each: it imports the store once (never torch), prints ``READY torch=<bool>``, then obeys
commands read from stdin, one per line:

    RUN <kind> <root> <seed> [<crash>]   fork a worker; reply ``PID <pid>``
    REAP <pid>                           wait for a (killed) worker; reply ``DEAD <pid> <status>``

A worker opens the project and saves labels forever, printing ``ACK <pid> <sample> <version>
<checksum-or-value>`` after each save returns. Label content is a pure function of (sample,
version) so a torn or misplaced file is detectable. ``<crash>`` injects a crash into the third save:
``torn`` (half the temp file written, then SIGKILL), ``before_rename`` (temp complete and fsynced)
or ``before_commit`` (file renamed to its final name, database not yet written).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import numpy as np

from medlabeler.engine.store import Project, files

SHAPE = (48, 40)
N_CLASSES = 3


def expected_mask(sample_id: int, version: int) -> np.ndarray:
    rng = np.random.default_rng(sample_id * 1_000_003 + version)
    return rng.integers(0, N_CLASSES, size=SHAPE, dtype=np.uint8)


def expected_class(sample_id: int, version: int) -> int:
    return (sample_id * 31 + version * 7) % N_CLASSES


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write: lines from several processes never interleave


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _inject(crash: str, saves: list[int]) -> None:
    """Replace one step of the atomic write so that the third mask save crashes at that step."""
    write, rename, write_atomic = files._write_durable, files._rename, files.write_atomic

    def third() -> bool:
        return saves[0] == 2

    def torn_write(path, data):
        if third():
            with open(path, "xb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            _die()
        write(path, data)

    def crash_rename(tmp, final):
        if third():
            _die()
        rename(tmp, final)

    def crash_after_rename(directory, name, data):
        final = write_atomic(directory, name, data)
        if third():
            _die()
        return final

    if crash == "torn":
        files._write_durable = torn_write
    elif crash == "before_rename":
        files._rename = crash_rename
    elif crash == "before_commit":
        files.write_atomic = crash_after_rename
    elif crash != "none":
        raise ValueError(f"unknown crash {crash!r}")


def work(kind: str, root: str, seed: int, crash: str) -> None:
    pid = os.getpid()
    rng = np.random.default_rng(seed)
    saves = [0]
    _inject(crash, saves)
    with Project.open(root) as project:
        ids = [s.id for s in project.samples()]
        while True:
            sample_id = int(rng.choice(ids))
            current = project.label(sample_id)
            version = current.version + 1 if current else 1
            if kind == "segmentation":
                label = project.save_label(sample_id, expected_mask(sample_id, version), author="crash")
                token = label.checksum
            else:
                label = project.save_label(sample_id, expected_class(sample_id, version), author="crash")
                token = str(label.value)
            if label.version != version:
                raise AssertionError(f"saved version {label.version}, expected {version}")
            saves[0] += 1
            _say(f"ACK {pid} {sample_id} {label.version} {token}")


def serve() -> None:
    # warm up what a save imports lazily (zipfile, ...), so forked workers start saving at once
    files.decode_mask(files.encode_mask(np.unique(expected_mask(0, 0))))
    _say(f"READY torch={'torch' in sys.modules}")
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "RUN":
            kind, root, seed = parts[1], parts[2], int(parts[3])
            crash = parts[4] if len(parts) > 4 else "none"
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    work(kind, root, seed, crash)
                except BaseException:  # noqa: BLE001 - report anything, the parent fails the test
                    _say("ERR " + traceback.format_exc().replace("\n", " | "))
                    code = 3
                os._exit(code)
            _say(f"PID {pid}")
        elif parts[0] == "REAP":
            pid = int(parts[1])
            _, status = os.waitpid(pid, 0)
            _say(f"DEAD {pid} {status}")
        elif parts[0] == "QUIT":
            break


if __name__ == "__main__":
    serve()
