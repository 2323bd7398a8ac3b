"""Labels whose save failed (a full or read-only disk), kept outside the project until they land.

The app keeps a failed save in memory and saves it again with the next one. When the project
closes with saves still failing, each is written here, in a folder of the user's (not the
project's: its disk is the one that failed), and saved into the project the next time it opens.
One file per sample, under a hash of the project's folder, and each names the project (its
creation time), the sample (its image and slice) and the label version it was painted over: a new
project made in the same folder never takes them, and a label saved since by someone else is said
to be replaced (it stays in the history).
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
    replaces: int | None = None  # a label version saved since it was painted (by another app), or None


def unsaved_folder(home: Path, root: Path) -> Path:
    """The folder under ``home`` for the project at ``root`` (a hash of its resolved path: no name)."""
    key = hashlib.sha1(str(Path(root).expanduser().resolve()).encode()).hexdigest()[:16]
    return Path(home) / "unsaved" / key


def _sample_key(sample) -> str:
    """The image and slice behind a sample id, hashed (no name in the file)."""
    return hashlib.sha1(f"{sample.path}\0{sample.series_uid}\0{sample.slice_index}".encode()).hexdigest()


def keep_unsaved(home: Path, project, sample_id: int, value: Any, *, author: str = "", origin: str = "manual",
                 replace: bool = True) -> Path:
    """Write one label that could not be saved into ``project``; it replaces the one kept of the
    sample before unless ``replace`` is False (a trial write, removed by the caller)."""
    folder = unsaved_folder(home, project.root)
    folder.mkdir(parents=True, exist_ok=True)
    base = project.label(sample_id)
    meta = {"sample_id": int(sample_id), "author": author, "origin": origin, "kept_at": time.strftime("%Y-%m-%d %H:%M"),
            "project_created": project.created, "sample": _sample_key(project.sample(sample_id)),
            "base_version": base.version if base is not None else None}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, value=np.asarray(value), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    older = list(folder.glob(f"s{int(sample_id)}-*{SUFFIX}"))
    path = write_atomic(folder, f"s{int(sample_id)}-{time.time_ns()}{SUFFIX}", buffer.getvalue())
    for old in older if replace else []:
        old.unlink(missing_ok=True)
    return path


def unsaved_labels(home: Path, project) -> list[UnsavedLabel]:
    """The labels kept for ``project``, newest of each sample, oldest sample first. A file that does
    not read (cut short: it was never complete), or that was kept for another project in the same
    folder or for another image under the sample's id, is passed over."""
    folder = unsaved_folder(home, project.root)
    if not folder.is_dir():
        return []
    found: dict[int, UnsavedLabel] = {}
    created = project.created
    for path in sorted(folder.glob(f"s*{SUFFIX}"), key=lambda p: p.stat().st_mtime_ns):
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                value = data["value"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
        sample_id = int(meta["sample_id"])
        if meta.get("project_created") != created or not _same_sample(project, sample_id, meta.get("sample")):
            continue
        current = project.label(sample_id)
        current_version = current.version if current is not None else None
        found[sample_id] = UnsavedLabel(
            path, sample_id, value if value.ndim else int(value),  # a class index was kept as a 0-d array
            str(meta.get("author", "")), str(meta.get("origin", "manual")), str(meta.get("kept_at", "")),
            replaces=current_version if current_version != meta.get("base_version") else None)
    return list(found.values())


def _same_sample(project, sample_id: int, key: str | None) -> bool:
    samples = project.samples(ids=[sample_id])
    return bool(samples) and _sample_key(samples[0]) == key


def forget_unsaved(label: UnsavedLabel) -> None:
    """Delete a kept label once it is saved into its project, or dropped (its folder too, once empty)."""
    label.path.unlink(missing_ok=True)
    try:
        label.path.parent.rmdir()
    except OSError:
        pass
