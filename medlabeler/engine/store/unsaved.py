"""Labels whose save failed (a full or read-only disk), kept outside the project until they land.

The app keeps a failed save in memory and saves it again with the next one. When the project
closes with saves still failing, each is written here, in a folder of the user's (not the
project's: its disk is the one that failed), and saved into the project the next time it opens.
One file per sample, named by the project's folder, so a project never takes another's labels.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import write_atomic

SUFFIX = ".npz"


@dataclass(frozen=True)
class UnsavedLabel:
    """One kept label: the sample it belongs to, its value (a mask, or a class index) and who saved it."""

    path: Path
    sample_id: int
    value: Any
    author: str
    origin: str
    kept_at: str  # when it was kept, local time (for the message that says it is saved now)


def unsaved_folder(home: Path, root: Path) -> Path:
    """The folder under ``home`` for the project at ``root`` (a hash of its resolved path: no name)."""
    key = hashlib.sha1(str(Path(root).expanduser().resolve()).encode()).hexdigest()[:16]
    return Path(home) / "unsaved" / key


def keep_unsaved(home: Path, root: Path, sample_id: int, value: Any, *, author: str = "",
                 origin: str = "manual") -> Path:
    """Write one label that could not be saved into its project; a newer one of the sample replaces it."""
    folder = unsaved_folder(home, root)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"sample_id": int(sample_id), "author": author, "origin": origin,
            "kept_at": time.strftime("%Y-%m-%d %H:%M"), "project": str(Path(root).expanduser().resolve())}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, value=np.asarray(value), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    older = list(folder.glob(f"s{int(sample_id)}-*{SUFFIX}"))
    path = write_atomic(folder, f"s{int(sample_id)}-{time.time_ns()}{SUFFIX}", buffer.getvalue())
    for old in older:
        old.unlink(missing_ok=True)
    return path


def unsaved_labels(home: Path, root: Path) -> list[UnsavedLabel]:
    """The labels kept for the project at ``root``, newest of each sample, oldest sample first.
    A file that does not read (cut short) is skipped: it was never complete."""
    folder = unsaved_folder(home, root)
    if not folder.is_dir():
        return []
    found: dict[int, UnsavedLabel] = {}
    for path in sorted(folder.glob(f"s*{SUFFIX}"), key=lambda p: p.stat().st_mtime_ns):
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                value = data["value"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
        value = value if value.ndim else int(value)  # a class index was kept as a 0-d array
        found[int(meta["sample_id"])] = UnsavedLabel(path, int(meta["sample_id"]), value, str(meta.get("author", "")),
                                                     str(meta.get("origin", "manual")), str(meta.get("kept_at", "")))
    return list(found.values())


def forget_unsaved(label: UnsavedLabel) -> None:
    """Delete a kept label once it is saved into its project (its folder too, once empty)."""
    label.path.unlink(missing_ok=True)
    try:
        label.path.parent.rmdir()
    except OSError:
        pass
