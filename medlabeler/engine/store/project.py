"""The project: a folder holding ``project.sqlite`` (the index), ``masks/``, ``models/`` and ``lock``.

Source images stay where they are (absolute paths, never copied). Masks, models and embeddings are
files inside the project written atomically (see ``files.py``); the database row that points to a
file is committed only after the file is durable, in one transaction, so a crash at any instant
leaves the old or the new state, never a mixture. One writer at a time (``lock.py``); any number of
read-only openers.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ProjectError, ProjectReadOnlyError
from . import files
from .lock import ProjectLock
from .records import (
    DEFAULT_COLORS,
    ORIGINS,
    SPLITS,
    TASK_KINDS,
    UNITS,
    LabelVersion,
    ModelVersion,
    Sample,
    TaskSpec,
)
from .schema import OLDEST_READABLE, SCHEMA_VERSION, migrate, schema_version
from .splits import assign_splits, check_fractions

DB_NAME = "project.sqlite"
MASKS_DIR = "masks"
MODELS_DIR = "models"

_MASK_FILE = re.compile(r"^s\d+-v\d+-[0-9a-f]{12}\.npz$")
_MODEL_FILE = re.compile(r"^[me]\d+-[0-9a-f]{12}(\.[A-Za-z0-9_.]+)?$")
# Audit details never carry anything that could identify a patient: keys naming an identifier are
# dropped whatever their value, keys naming a file or folder lose their text values, and any string
# that looks like a path is dropped too (folder names often hold patient names).
_IDENTITY_KEYS = ("patient", "accession", "birth", "uid", "identifier", "mrn")
_PATH_KEYS = ("path", "file", "folder", "dir")
_REMOVED = "<removed>"

_SAMPLE_COLUMNS = ("id, path, series_uid, slice_index, group_key, split, shape, spacing, "
                   "source_shape, modality, is_volume")
_LABEL_COLUMNS = ("sample_id, version, value, mask_relpath, checksum, author, created, origin, "
                  "is_current, present")
_MODEL_COLUMNS = "version, method, relpath, record, metrics, parent, created, n_labels, active, checksum, removed, was_active"
_MODEL_COLUMNS_V2 = _MODEL_COLUMNS.replace("removed, was_active", "NULL, active")  # read-only, older schema
#: the slice samples of DICOM series recorded blank at import: slices no file held (`missing_slice_ids`)
_MISSING_SLICES = ("SELECT f.sample_id FROM sample_facts f JOIN samples s ON s.id = f.sample_id "
                   "WHERE f.blank = 1 AND s.series_uid IS NOT NULL AND s.slice_index IS NOT NULL")


def weights_removed_text(removed: str) -> str:
    """Why a model version cannot predict or be activated any more."""
    return (f"its weights were removed on {removed[:10]} to save space (its record and metrics are kept); "
            "activate a newer version, or train a new model")


def per_class_text(kind: str, per_class: Mapping[str, int]) -> list[str]:
    """What `status()["per_class"]` counts, said: "brain 3" read as nothing in particular."""
    if kind == "segmentation":
        return [f"{name}: in {count} label{'' if count == 1 else 's'}" for name, count in per_class.items()]
    return [f"{name}: {count} labeled" for name, count in per_class.items()]


def unmeasured_text(kind: str, status: Mapping[str, Any]) -> str:
    """What the validation figures leave out: labels that training labels hold and validation labels
    do not ("" when none, or before any validation label). A radiologist whose validation slices held
    no lesion read the headline Dice as if it measured the lesion."""
    if not status.get("per_split", {}).get("val", {}).get("labeled"):
        return ""
    by_class = status.get("per_class_split", {})
    missing = [name for name, by in by_class.items() if by.get("train") and not by.get("val")]
    held = [name for name, by in by_class.items() if by.get("val")]
    if not missing or (kind == "classification" and len(held) < 2):  # one class: compared on training labels
        return ""
    names = ", ".join(missing)
    them = "it" if len(missing) == 1 else "them"
    if kind == "segmentation" and not held:  # the headline then counts what the model finds (`metrics`)
        return (f"no validation label holds {names}: the validation Dice (what promotion compares) counts only "
                f"what the model finds there (0 for a label it finds, 1 when it finds none); label validation "
                f"samples that show {names} to measure {them}")
    which = "holds" if kind == "segmentation" else "is"
    metric = "Dice" if kind == "segmentation" else "AUC"
    return (f"no validation label {which} {names}: the validation {metric} (what promotion compares) leaves "
            f"{them} out; label validation samples that show {names} to measure {them}")


def untrained_text(kind: str, status: Mapping[str, Any]) -> str:
    """Labels that validation or test labels hold and no training label does ("" when none, or before
    any training label): the models cannot learn them. A split of one scan into slabs put every
    slice of a rare structure into test."""
    if not status.get("per_split", {}).get("train", {}).get("labeled"):
        return ""
    missing = [name for name, by in status.get("per_class_split", {}).items()
               if not by.get("train") and (by.get("val") or by.get("test"))]
    if not missing:
        return ""
    names, them = ", ".join(missing), "it" if len(missing) == 1 else "them"
    which = "holds" if kind == "segmentation" else "is"
    return (f"no training label {which} {names} (held-out labels do): the models cannot learn {them}; label "
            f"training samples that show {names}")


def label_split_notes(kind: str, status: Mapping[str, Any]) -> list[str]:
    """What the labels' splits leave out (`untrained_text`, `unmeasured_text`), as `status` and the
    app's Project and Metrics tabs say it."""
    return [text for text in (untrained_text(kind, status), unmeasured_text(kind, status)) if text]


def skipped_text(status: Mapping[str, Any]) -> str | None:
    """"2 samples skipped in the app …": why the queue lists some samples last (`status`, the
    Project tab)."""
    n = int(status.get("skipped") or 0)
    if not n:
        return None
    return (f"{n} sample{'s' if n > 1 else ''} skipped in the app (`n` on {'them' if n > 1 else 'it'} unlabeled): "
            f"the queue asks for {'them' if n > 1 else 'it'} after the rest")


def version_text(lv: LabelVersion, task) -> str:
    """One saved version of a label, said: "v2 · prediction corrected, dr_a · 2026-12-07 10:32
    (local time) · grey_matter, white_matter" (what it holds; "background only" for an empty mask)."""
    try:
        when = datetime.fromisoformat(lv.created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        when = lv.created
    if task.kind == "classification":
        holds = task.names[lv.value] if lv.value is not None and 0 <= lv.value < len(task.names) else str(lv.value)
    else:
        holds = ", ".join(task.names[v - 1] for v in lv.present if 0 < v <= len(task.names)) or "background only"
    how = _ORIGIN_WORDS.get(lv.origin, lv.origin)
    return f"v{lv.version} · {how}{f', {lv.author}' if lv.author else ''} · {when} · {holds}"


def restored_text(sample_id: int, version: int, replaced: LabelVersion | None) -> str:
    """What making ``version`` a sample's label again did (``replaced``: its label before), said
    alike by `medlabeler history --restore` and the app."""
    stays = f" (version {replaced.version} stays in the history)" if replaced is not None else ""
    return f"sample {sample_id}: version {version} is its label again{stays}"


#: How a label version came to be, in a clinician's words
_ORIGIN_WORDS = {"manual": "by hand", "imported": "imported", "accepted_prediction": "prediction accepted",
                 "corrected_prediction": "prediction corrected"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, sort_keys=True)


def _scrub(value: Any) -> Any:
    """Audit detail with identifying keys and path-like strings removed."""
    if isinstance(value, Mapping):
        clean = {}
        for key, item in value.items():
            key = str(key)
            lowered = key.lower()
            if any(w in lowered for w in _IDENTITY_KEYS):
                clean[key] = _REMOVED
            elif any(w in lowered for w in _PATH_KEYS) and isinstance(item, (str, bytes, os.PathLike)):
                clean[key] = _REMOVED
            else:
                clean[key] = _scrub(item)
        return clean
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v) for v in value]
    if isinstance(value, (os.PathLike,)):
        return _REMOVED
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return _REMOVED
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Why a slice sample of a DICOM series that no readable file holds takes no label (the app says it too).
MISSING_SLICE = ("is a slice missing from its DICOM series (no readable file holds it; shown blank at its position): "
                 "there is nothing to label there")


def _clear_current(conn: sqlite3.Connection, sample_id: int) -> None:
    """No label version of the sample is current any more (inside a write transaction)."""
    conn.execute("UPDATE labels SET is_current = 0 WHERE sample_id = ? AND is_current = 1", (sample_id,))


@dataclass
class LabeledSourceCheck:
    """What `Project.check_labeled_sources` found."""

    unreadable: list  # (labeled sample ids, InputError) per image or series that no longer reads
    readable: dict[str, str]  # path -> fingerprint now, of sources changed since the import that read as before


FULL_DISK_BYTES = 1 << 20  # free space under which a failure to open is put down to a full disk


def _connect_readonly(db: Path) -> sqlite3.Connection:
    """A read-only connection. SQLite reads a WAL database through a ``-shm`` file beside it, which
    a read-only folder or a full disk cannot hold ("unable to open database file", "disk I/O
    error": a project on an archive share could not even be exported). With no write-ahead log
    left to read (the project closed cleanly), the file alone is the database: read it as such."""
    conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False,
                           timeout=30)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        wal = db.with_name(db.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise
    return sqlite3.connect(db.as_uri() + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def _not_opened(db: Path, exc: Exception) -> ProjectError:
    """Why the database at ``db`` did not open: a full disk or a read-only folder said "unreadable or
    damaged", and a user told so may delete a sound project. Those two can still be opened read-only
    (`ProjectReadOnlyError`)."""
    try:
        free = shutil.disk_usage(db.parent).free
        read_only = bool(os.statvfs(db.parent).f_flag & os.ST_RDONLY) or not os.access(db.parent, os.W_OK)
    except (OSError, AttributeError):  # (no statvfs on Windows)
        free, read_only = None, False
    if free is not None and free < FULL_DISK_BYTES:
        return ProjectReadOnlyError(
            f"{db}: cannot open the project for writing: the disk holding it is full ({free // 1024} KB free); free "
            f"space there and open it again (the database is not known to be damaged: {exc})")
    if read_only:
        return ProjectReadOnlyError(f"{db}: cannot open the project for writing: its folder is read-only ({exc}); "
                                    "it can be looked at and exported, or copied to a folder that can be written")
    return ProjectError(f"{db}: project database is unreadable or damaged ({exc})")


class Project:
    """An open project. Create with ``Project.create``, open with ``Project.open``; close when done.

    Thread-safe: one connection guarded by a lock, so a worker thread may read scores while the
    main thread saves labels. Use it as a context manager to release the writer lock.
    """

    pixel_cache_size = 2  # volumes kept in memory by load_pixels

    def __init__(self, root: Path, lock: ProjectLock | None, readonly: bool):
        """Internal: use ``Project.create`` or ``Project.open``."""
        self.root = root
        self.readonly = readonly
        self._lock = lock
        self._owner_pid = os.getpid()
        self._mutex = threading.RLock()  # the connection: held for one query or one transaction
        self._label_saves = threading.RLock()  # label saves one at a time (version numbers), files outside _mutex
        self._revision = 0  # committed write transactions other than label saves (see ranking_revision)
        self._scan_numbers: tuple[int | None, dict] = (None, {})  # (revision, `scan_numbers`), and when read
        self._scan_numbers_read = 0.0
        self._schema = SCHEMA_VERSION  # the database's (an older one only when open read-only)
        self._pixels: OrderedDict[tuple[str, str | None], np.ndarray] = OrderedDict()
        self._pixels_mutex = threading.Lock()
        # how each volume read is shown: (orientation, window, markers); see display_orientation,
        # display_window, display_markers
        self._display: dict[tuple[str, str | None], tuple] = {}
        # slices of DICOM series that no readable file held when read in this session (a file
        # deleted or damaged after import): missing slices, as those found at import
        self._lost_slices: frozenset[int] = frozenset()  # replaced, never changed: read without a lock
        self._unreadable: frozenset[int] = frozenset()  # samples whose image failed to read this session
        self._conn: sqlite3.Connection | None = None
        self._writing: int | None = None  # the thread inside a write transaction (reads its own writes)
        self._readers: dict[threading.Thread, sqlite3.Connection] = {}  # see _reader
        self._readers_mutex = threading.Lock()
        db = root / DB_NAME
        try:
            if readonly:
                conn = _connect_readonly(db)
            else:
                conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=30)
            self._conn = conn
            if schema_version(conn) == 0:  # before WAL mode, which would write to it
                raise ProjectError(f"{db}: the project database holds no project "
                                   f"({'0 bytes' if db.stat().st_size == 0 else 'no tables'}): it was cut short or "
                                   "damaged; restore project.sqlite from a backup (masks/ and models/ beside it "
                                   "are left as they are)")
            conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise ProjectError(f"{root}: cannot switch the database to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")  # a committed label survives power loss
            if readonly:
                found = self._schema = schema_version(conn)
                if not OLDEST_READABLE <= found <= SCHEMA_VERSION:
                    raise ProjectError(
                        f"{root}: project schema is version {found}, this medlabeler uses "
                        f"{SCHEMA_VERSION}; open it once for writing to upgrade it"
                    )
            else:
                old = migrate(conn, str(root))
                self._schema = SCHEMA_VERSION
                if old and old < SCHEMA_VERSION:
                    self._audit_now("schema_migrated", {"from": old, "to": SCHEMA_VERSION})
            self.task = self._load_task()
            if not readonly:
                self._remove_orphans()
        except sqlite3.DatabaseError as exc:
            self._close_connection()
            raise _not_opened(db, exc) from None
        except BaseException:
            self._close_connection()
            raise

    # ----------------------------------------------------------------------------- open / close
    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        task: str,
        names: list[str],
        colors: list[str] | None = None,
        unit: str = "image",
        seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
        slabs: int = 0,
    ) -> Project:
        """Make a new project in ``root`` (created if needed) and open it for writing."""
        root = Path(root).expanduser().absolute()
        spec = _check_task(root, task, names, colors, unit, seed, split_fractions, slabs)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"{root}: cannot create the project folder: {exc.strerror or exc}") from None
        lock = ProjectLock(root)
        lock.acquire()
        try:
            if (root / DB_NAME).exists():
                raise ProjectError(f"{root}: already holds a medlabeler project; open it instead")
            for sub in (MASKS_DIR, MODELS_DIR):
                (root / sub).mkdir(exist_ok=True)
            # Build the database under a temporary name and rename it: a crash mid-creation leaves
            # no half-made project behind.
            tmp = root / (files.temp_name() + ".sqlite")
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                migrate(conn, str(root))
                created = _now()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO task (id, kind, names, colors, unit, seed, split_fractions, slabs, created) "
                    "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (spec.kind, _dumps(list(spec.names)), _dumps(list(spec.colors)), spec.unit,
                     spec.seed, _dumps(list(spec.split_fractions)), spec.slabs, created),
                )
                conn.execute(
                    "INSERT INTO audit (time, action, detail) VALUES (?, 'project_created', ?)",
                    (created, _dumps({"kind": spec.kind, "classes": len(spec.names), "unit": spec.unit})),
                )
                conn.execute("COMMIT")
            finally:
                conn.close()
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, root / DB_NAME)
            files.fsync_dir(root)
            return cls(root, lock, readonly=False)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open(cls, root: str | Path, *, readonly: bool = False) -> Project:
        """Open an existing project; for writing unless ``readonly`` (which takes no lock)."""
        root = Path(root).expanduser().absolute()
        if not (root / DB_NAME).is_file():
            raise ProjectError(f"{root}: no medlabeler project here (no {DB_NAME})")
        lock = None
        if not readonly:
            lock = ProjectLock(root)
            lock.acquire()
        try:
            return cls(root, lock, readonly=readonly)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def close(self) -> None:
        """Close the database and release the writer lock. Safe to call twice.

        In a forked child (a DataLoader worker) this only drops the handle: closing the inherited
        connection or unlocking there would disturb the parent, which still owns both.
        """
        if os.getpid() != self._owner_pid:
            self._conn = None
            if self._lock is not None:
                self._lock.forget()
                self._lock = None
            return
        with self._label_saves, self._mutex:  # a label save under way finishes first
            self._close_connection()
            with self._pixels_mutex:
                self._pixels.clear()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        with self._readers_mutex:
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.close()
        if conn is not None:
            conn.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "writable"
        state = "closed" if self.closed else mode
        return f"Project({str(self.root)!r}, {self.task.kind if hasattr(self, 'task') else '?'}, {state})"

    # ------------------------------------------------------------------------------ internals
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ProjectError(f"{self.root}: project is closed")
        if os.getpid() != self._owner_pid:
            raise ProjectError(f"{self.root}: a project handle cannot be used in a forked process; "
                               "open the project again there (read-only)")
        return self._conn

    def _check_writable(self) -> None:
        if self.readonly:
            raise ProjectError(f"{self.root}: project was opened read-only")
        self._db  # noqa: B018 - raises if closed

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        reader = self._reader()
        if reader is not None:
            return reader.execute(sql, tuple(args)).fetchall()
        with self._mutex:
            return self._db.execute(sql, tuple(args)).fetchall()

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's own read-only connection to the database, or None where a read must use
        the shared connection (a read-only project; inside this thread's write transaction).

        WAL lets a reader see the last commit without waiting for a writer, so a query on the main
        thread never waits behind another thread's transaction, a label's fsync or a model file
        being copied (stalls of 50-300 ms in the app while the learning loop saved models)."""
        if self.readonly or self._writing == threading.get_ident():
            return None
        self._db  # noqa: B018 - raises if closed or forked
        thread = threading.current_thread()
        reader = self._readers.get(thread)
        if reader is None:
            reader = sqlite3.connect((self.root / DB_NAME).as_uri() + "?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False, timeout=30)
            with self._readers_mutex:
                closed = self._conn is None  # closed while this connection opened: close() never sees it
                gone = [t for t in self._readers if not t.is_alive()]
                for t in gone:  # threads that ended (workers come and go): close their connections
                    self._readers.pop(t).close()
                if not closed:
                    self._readers[thread] = reader
            if closed:
                reader.close()
                self._db  # noqa: B018 - raises: the project is closed
        return reader

    @contextmanager
    def _write(self, *, labels_only: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error.

        ``labels_only``: the transaction changes labels (and the audit) and nothing else, so it
        leaves ``ranking_revision`` as it is.
        """
        self._check_writable()
        with self._mutex:
            conn = self._db
            conn.execute("BEGIN IMMEDIATE")
            outer, self._writing = self._writing, threading.get_ident()
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._writing = outer
            if not labels_only:
                self._revision += 1

    @property
    def ranking_revision(self) -> int:
        """A number that changes whenever this handle commits anything other than labels (scores,
        embeddings, models, samples, ...), or finds images it cannot read any more. With the set of
        labeled samples it says when a queue ranked earlier is still the queue: a cache key for rankings. Only this handle's writes
        count (the project has one writer at a time: this one, when it is writable)."""
        return self._revision

    def unreadable_ids(self) -> frozenset[int]:
        """Ids of the samples whose image could not be read in this session (damaged or gone since
        the import: `note_unreadable`)."""
        return self._unreadable

    def blank_ids(self) -> frozenset[int]:
        """Ids of the samples whose image is blank (one value everywhere), as found at import;
        samples never checked are not in it. Samples whose image could not be read in this session
        (damaged or gone since the import) are in it too: there is nothing to label there."""
        if self._schema < 2:  # an older project open read-only: nothing was checked
            return self._lost_slices | self._unreadable
        return frozenset(int(r[0]) for r in self._query(
            "SELECT sample_id FROM sample_facts WHERE blank = 1")) | self._lost_slices | self._unreadable

    def missing_slice_ids(self) -> frozenset[int]:
        """Ids of the slice samples of DICOM series that no readable file holds (a slice missing
        from its series, read blank at its position): there is nothing to label there. The import
        records them blank and checks DICOM series for nothing else (`check_blank_samples` run on
        every sample of an older project could add a truly blank DICOM slice, which is then
        refused as well). A file deleted or damaged since the import leaves its slice missing too,
        once the series is read again."""
        if self._schema < 2:
            return self._lost_slices
        return frozenset(int(r[0]) for r in self._query(_MISSING_SLICES)) | self._lost_slices

    def is_missing_slice(self, sample_id: int) -> bool:
        """Whether one sample is in `missing_slice_ids` (one indexed lookup, for a check per image)."""
        if sample_id in self._lost_slices:
            return True
        if self._schema < 2:
            return False
        return bool(self._query(_MISSING_SLICES + " AND f.sample_id = ?", (int(sample_id),)))

    def unchecked_for_blank(self) -> list[int]:
        """Ids of the samples no blank check has looked at yet."""
        if self._schema < 2:
            return []
        return [int(r[0]) for r in self._query(
            "SELECT id FROM samples WHERE id NOT IN (SELECT sample_id FROM sample_facts) ORDER BY id")]

    def write_blank(self, blank: Mapping[int, bool]) -> None:
        """Record which samples are blank (see ``blank_ids``); the queue leaves those out."""
        rows = [(int(sid), int(bool(flag))) for sid, flag in blank.items()]
        with self._write() as conn:
            conn.executemany("INSERT OR REPLACE INTO sample_facts (sample_id, blank) VALUES (?, ?)", rows)
            self._insert_audit(conn, "blank_checked", {"samples": len(rows), "blank": sum(f for _, f in rows)})

    def skip(self, sample_id: int) -> None:
        """Record that the clinician passed over this sample unlabeled: the queue then ranks it behind
        every sample not skipped (a slice with an artefact or no anatomy is not asked for again at
        each save). Skipping it again moves it to the back of the skipped ones."""
        self.sample(sample_id)  # an unknown id raises
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO skips (sample_id, time) VALUES (?, ?)", (int(sample_id), _now()))
            self._insert_audit(conn, "sample_skipped", {"sample": int(sample_id)})

    def unskip(self, sample_ids: Iterable[int]) -> int:
        """Put skipped samples back in their place in the queue; returns how many were skipped."""
        ids = sorted(set(int(i) for i in sample_ids) & set(self.skipped_ids()))
        if not ids:
            return 0
        with self._write() as conn:
            conn.executemany("DELETE FROM skips WHERE sample_id = ?", [(i,) for i in ids])
            self._insert_audit(conn, "sample_unskipped", {"samples": ids})
        return len(ids)

    def skipped_ids(self) -> list[int]:
        """The skipped samples (labeled ones included), the longest skipped first."""
        if self._schema < 5:  # an older project open read-only: nothing was skipped
            return []
        return [int(r[0]) for r in self._query("SELECT sample_id FROM skips ORDER BY id")]

    def labeled_ids(self) -> frozenset[int]:
        """Ids of the samples that have a current label (one cheap query)."""
        return frozenset(int(r[0]) for r in self._query("SELECT sample_id FROM labels WHERE is_current = 1"))

    def current_label_versions(self) -> dict[int, int]:
        """Sample id -> the version of its current label, for every labeled sample (one cheap
        query). A version's content never changes, so an equal version means the same label."""
        return {int(sid): int(v) for sid, v in self._query("SELECT sample_id, version FROM labels WHERE is_current = 1")}

    def label_mark(self) -> int:
        """A mark that orders label saves: every label saved later gets a larger mark. Unlike a
        timestamp it never ties (two saves in one millisecond) and never runs back with the clock."""
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM labels")[0][0])

    def count_labels_after(self, mark: int | str) -> int:
        """Current labels saved (or changed) after `mark`: a `label_mark()` or, for models
        recorded before marks existed, an ISO time (one query)."""
        if isinstance(mark, str):
            sql, arg = "SELECT COUNT(*) FROM labels WHERE is_current = 1 AND created > ?", mark
        else:
            sql, arg = "SELECT COUNT(*) FROM labels WHERE is_current = 1 AND id > ?", int(mark)
        return int(self._query(sql, (arg,))[0][0])

    def _insert_audit(self, conn: sqlite3.Connection, action: str, detail: Mapping[str, Any]) -> None:
        conn.execute("INSERT INTO audit (time, action, detail) VALUES (?, ?, ?)",
                     (_now(), str(action), _dumps(_scrub(dict(detail)))))

    def _audit_now(self, action: str, detail: Mapping[str, Any]) -> None:
        with self._write() as conn:
            self._insert_audit(conn, action, detail)

    @property
    def created(self) -> str:
        """When the project was made (its identity beside its folder: a project made again in the
        same folder is another one)."""
        return str(self._query("SELECT created FROM task WHERE id = 1")[0][0])

    def _load_task(self) -> TaskSpec:
        row = self._query("SELECT kind, names, colors, unit, seed, split_fractions, slabs FROM task WHERE id = 1")
        if not row:
            raise ProjectError(f"{self.root}: project database has no task (damaged project)")
        kind, names, colors, unit, seed, fractions, slabs = row[0]
        return TaskSpec(kind=kind, names=tuple(json.loads(names)), colors=tuple(json.loads(colors)),
                        unit=unit, seed=int(seed), split_fractions=tuple(json.loads(fractions)), slabs=int(slabs))

    def _remove_orphans(self) -> None:
        """Delete what a crash can leave: temporary files, and files no committed row points to."""
        referenced = {r[0] for r in self._query("SELECT mask_relpath FROM labels WHERE mask_relpath IS NOT NULL")}
        model_stems = {Path(r[0]).name.split(".")[0] for r in self._query(
            "SELECT relpath FROM models WHERE removed IS NULL UNION ALL SELECT relpath FROM embeddings")}
        removed = 0
        for folder, keep in ((self.root, None), (self.root / MASKS_DIR, "mask"), (self.root / MODELS_DIR, "model")):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                continue
            changed = False
            for entry in os.scandir(folder):
                name = entry.name
                if not entry.is_file(follow_symlinks=False):
                    continue
                orphan = name.startswith(files.TMP_PREFIX) and (keep is not None or ".sqlite" in name)
                if keep == "mask" and _MASK_FILE.match(name):
                    orphan = orphan or f"{MASKS_DIR}/{name}" not in referenced
                elif keep == "model" and _MODEL_FILE.match(name):
                    orphan = orphan or name.split(".")[0] not in model_stems
                if orphan:
                    try:
                        os.unlink(entry.path)
                        removed += 1
                        changed = True
                    except FileNotFoundError:
                        pass
            if changed:
                files.fsync_dir(folder)
        if removed:
            self._audit_now("orphans_removed", {"count": removed})

    # -------------------------------------------------------------------------------- samples
    def _by_slab(self, is_volume: bool) -> bool:
        return self.task.slabs > 0 and self.task.unit == "slice" and is_volume

    def _slice_group(self, group: str, slice_index: int | None, n_slices: int) -> str:
        """The split group of a slice: its volume's, or its slab's when the task splits by slab."""
        if slice_index is None:
            return group
        return f"{group}/slab{slice_index * self.task.slabs // n_slices}"

    def add_sources(self, infos: Iterable[Any], *, import_label_hints: bool = False) -> list[int]:
        """Add samples for ``SourceInfo`` records (one per slice for unit "slice", else per source).

        Sources already in the project are skipped; returns the ids of the samples added.
        Splits are assigned per group. With ``import_label_hints`` a classification project also
        saves each new sample's ``label_hint`` (if it names a class) as an "imported" label.
        """
        self._check_writable()
        infos = list(infos)
        prepared = []
        for info in infos:
            path = os.path.abspath(os.fspath(info.path))
            shape = tuple(int(n) for n in info.shape)
            spacing = tuple(float(s) for s in info.spacing)
            is_volume = bool(info.is_volume)
            if len(shape) not in (2, 3, 4) or min(shape) < 1:
                raise InputError(path, f"unusable image shape {shape}")
            keys = files.source_keys(path)  # (fingerprint, content key): one read of the file's ends
            group = str(getattr(info, "group", "") or "") or files.sha256_bytes(path.encode())[:40]
            hint = getattr(info, "label_hint", None)
            prepared.append((info, path, shape, spacing, is_volume, keys, group, hint))
        added: list[int] = []
        with self._write() as conn:
            existing = dict(conn.execute("SELECT key, split FROM groups").fetchall())
            all_groups = {self._slice_group(p[6], z, p[2][0]) for p in prepared
                          for z in (range(p[2][0]) if self._by_slab(p[4]) else [None])}
            new_splits = assign_splits(all_groups, existing, self.task.seed, self.task.split_fractions)
            conn.executemany("INSERT INTO groups (key, split) VALUES (?, ?)", sorted(new_splits.items()))
            splits = {**existing, **new_splits}
            now = _now()
            for info, path, shape, spacing, is_volume, (fingerprint, key), group, hint in prepared:
                series = getattr(info, "series_uid", None)
                modality = str(getattr(info, "modality", "") or "OT")
                if self.task.unit == "slice" and is_volume:
                    per_slice = spacing[1:] if len(spacing) >= 3 else spacing
                    items = [(z, shape[1:], per_slice) for z in range(shape[0])]
                else:
                    items = [(None, shape, spacing)]
                for slice_index, sample_shape, sample_spacing in items:
                    slice_group = self._slice_group(group, slice_index if self._by_slab(is_volume) else None, shape[0])
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO samples (path, series_uid, slice_index, group_key, split, "
                        "shape, spacing, source_shape, modality, is_volume, content_hash, added, content_key) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (path, series, slice_index, slice_group, splits[slice_group], _dumps(list(sample_shape)),
                         _dumps(list(sample_spacing)), _dumps(list(shape)), modality, int(is_volume),
                         fingerprint, now, key),
                    )
                    if cur.rowcount != 1:
                        continue
                    sample_id = int(cur.lastrowid)
                    added.append(sample_id)
                    if import_label_hints and hint is not None and self.task.kind == "classification" \
                            and hint in self.task.names:
                        self._insert_label(conn, sample_id, value=self.task.names.index(hint),
                                           relpath=None, checksum=None, present=(self.task.names.index(hint),),
                                           author="", origin="imported")
            self._insert_audit(conn, "sources_added", {
                "sources": len(prepared), "samples": len(added), "new_groups": len(new_splits),
                "splits": dict(Counter(new_splits.values())),
            })
        return added

    def _sample_from_row(self, row: tuple) -> Sample:
        sid, path, series, slice_index, group, split, shape, spacing, source_shape, modality, is_volume = row
        source_shape = tuple(json.loads(source_shape))
        return Sample(
            id=int(sid), path=path, series_uid=series,
            slice_index=None if slice_index is None else int(slice_index),
            group=group, split=split, shape=tuple(json.loads(shape)), spacing=tuple(json.loads(spacing)),
            modality=modality, is_volume=bool(is_volume),
            n_slices=source_shape[0] if slice_index is not None else None,
        )

    def label_values(self, split: str | None = None) -> set[int]:
        """The values the current labels hold (one query): classes of a classification, label
        values of a segmentation's masks (1-based, background not counted); of ``split`` only."""
        sql = "SELECT DISTINCT l.present FROM labels l JOIN samples s ON s.id = l.sample_id WHERE l.is_current = 1"
        rows = self._query(sql + " AND s.split = ?", (split,)) if split else self._query(sql)
        return {int(v) for (present,) in rows for v in json.loads(present)}

    def samples(self, split: str | None = None, labeled: bool | None = None, ids=None) -> list[Sample]:
        """Samples in id order, optionally only one split, only (un)labeled ones, only ``ids``."""
        where, args = self._sample_filter(split, labeled, ids)
        sql = f"SELECT {_SAMPLE_COLUMNS} FROM samples"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [self._sample_from_row(r) for r in self._query(sql + " ORDER BY id", args)]

    def count_samples(self, split: str | None = None, labeled: bool | None = None) -> int:
        """``len(samples(split, labeled))`` in one count: the learning loop asks at every pass."""
        where, args = self._sample_filter(split, labeled, None)
        sql = "SELECT count(*) FROM samples" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self._query(sql, args)[0][0])

    @staticmethod
    def _sample_filter(split: str | None, labeled: bool | None, ids) -> tuple[list[str], list]:
        where, args = [], []
        if ids is not None:  # one JSON array: no limit on the number of SQL parameters
            where.append("id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps([int(i) for i in ids]))
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            where.append("split = ?")
            args.append(split)
        if labeled is not None:
            exists = "EXISTS (SELECT 1 FROM labels l WHERE l.sample_id = samples.id AND l.is_current = 1)"
            where.append(exists if labeled else f"NOT {exists}")
        return where, args

    def sample(self, sample_id: int) -> Sample:
        """One sample by id; ProjectError if there is none."""
        rows = self._query(f"SELECT {_SAMPLE_COLUMNS} FROM samples WHERE id = ?", (int(sample_id),))
        if not rows:
            raise ProjectError(f"{self.root}: no sample with id {sample_id}")
        return self._sample_from_row(rows[0])

    def verify_sources(self, *, labeled_only: bool = False) -> list[InputError]:
        """One InputError per source that is missing or changed since it was added; with
        ``labeled_only``, of the sources that hold a labeled sample (a cheap check: size, time and
        the file's ends, `files.source_fingerprint`)."""
        return [InputError(path, "source changed since it was added to the project") if isinstance(now, str) else now
                for path, now in self._changed_sources(labeled_only).items()]

    def _changed_sources(self, labeled_only: bool) -> dict[str, str | InputError]:
        """Sources whose fingerprint is not the one recorded at import: path -> the fingerprint now,
        or the InputError of one that is gone or cannot be read."""
        where = (" WHERE EXISTS (SELECT 1 FROM labels l WHERE l.sample_id = samples.id AND l.is_current = 1)"
                 if labeled_only else "")
        changed: dict[str, str | InputError] = {}
        for path, recorded in self._query(f"SELECT DISTINCT path, content_hash FROM samples{where} ORDER BY path"):
            try:
                now = files.source_fingerprint(path)
            except InputError as exc:
                changed[path] = exc
                continue
            if now != recorded:
                changed[path] = now
        return changed

    def check_labeled_sources(self) -> "LabeledSourceCheck":
        """The labeled images (each image, or series of a folder) changed or gone since the import
        that no longer read, each noted (`note_unreadable`): one stops every training run. Only
        sources whose fingerprint changed are read again (fingerprints first, which are cheap), every
        labeled slice of them; those that read as before (only touched or copied) come with their
        fingerprint now, for `refresh_fingerprints`."""
        changed = self._changed_sources(labeled_only=True)
        groups: dict[tuple[str, str], list[Sample]] = {}
        for s in (self.samples(labeled=True) if changed else []):
            if s.path in changed:
                groups.setdefault((s.path, s.series_uid or ""), []).append(s)
        unreadable, failed = [], set()
        for (path, _), samples in sorted(groups.items()):
            try:
                for s in samples:  # a volume is read once (the pixel cache); each slice is checked
                    self.load_pixels(s)
            except InputError as exc:  # what a training run would meet (a new shape too)
                self.note_unreadable(samples[0])
                unreadable.append(([s.id for s in samples], exc))
                failed.add(path)
        readable = {path: now for path, now in changed.items() if path not in failed and isinstance(now, str)}
        return LabeledSourceCheck(unreadable, readable)

    def sources(self) -> list[tuple[str, str | None, tuple[int, ...]]]:
        """(path, series UID, shape) of each image or series the samples are read from."""
        rows = self._query("SELECT DISTINCT path, series_uid, source_shape FROM samples ORDER BY path, series_uid")
        return [(path, series, tuple(json.loads(shape))) for path, series, shape in rows]

    def scan_numbers(self) -> dict[tuple[str, str | None], int]:
        """(path, series UID) -> a scan's number, 1, 2, ... in the order its slices were added
        (so a relink changes none), for a project of slices of more than one scan; else empty.
        What a list shows beside the slice ("scan 3, slice 84"): never the file's name."""
        revision = self._revision
        if self._scan_numbers[0] != revision:
            rows = self._query("SELECT path, series_uid FROM samples WHERE slice_index IS NOT NULL "
                               "GROUP BY path, series_uid ORDER BY MIN(id)")
            numbers = {(path, series): n for n, (path, series) in enumerate(rows, 1)} if len(rows) > 1 else {}
            self._scan_numbers = (revision, numbers)
            self._scan_numbers_read = time.monotonic()
        return self._scan_numbers[1]

    def scan_number(self, sample: Sample) -> int | None:
        """`scan_numbers` of a slice sample (None for a 2D image, or in a project of one scan). A
        source it does not know (added or relinked through another handle: this one's revision
        did not move) reads them again, at most once a second."""
        if sample.slice_index is None:
            return None
        key = (sample.path, sample.series_uid)
        numbers = self.scan_numbers()
        if key not in numbers and time.monotonic() - self._scan_numbers_read > 1.0:
            self._scan_numbers = (None, {})
            numbers = self.scan_numbers()
        return numbers.get(key)

    def missing_sources(self) -> list[tuple[str, str | None, tuple[int, ...]]]:
        """`sources` whose path is gone (moved, renamed or deleted since the import;
        `project.relink` finds moved ones)."""
        return [source for source in self.sources() if not os.path.exists(source[0])]

    def recorded_keys(self, path: str) -> tuple[str, str | None]:
        """`files.source_keys` of ``path`` as recorded: its fingerprint when it was imported (or last
        refreshed), and its content key (None for a source imported before medlabeler kept it, or
        in a database too old to hold it, opened read-only)."""
        key = ", content_key" if self._schema >= 4 else ""
        rows = self._query(f"SELECT content_hash{key} FROM samples WHERE path = ? LIMIT 1", (path,))
        if not rows:
            return "", None
        return rows[0][0], rows[0][1] if key else None

    def count_samples_of(self, paths: Iterable[str]) -> int:
        return sum(self._query("SELECT COUNT(*) FROM samples WHERE path = ?", (p,))[0][0] for p in paths)

    def move_sources(self, moves: Mapping[str, tuple[str, str, str | None]]) -> int:
        """Read the samples of each old path from its new one from now on: old path -> (new path,
        its fingerprint and content key now). Sample ids, labels and scores stay. Returns the
        samples moved."""
        self._check_writable()
        moved: set[int] = set()
        with self._write() as conn:
            for old, (new, fingerprint, key) in sorted(moves.items()):
                new = os.path.abspath(new)
                clash = conn.execute("SELECT 1 FROM samples a JOIN samples b ON b.path = ? AND "
                                     "ifnull(b.series_uid, '') = ifnull(a.series_uid, '') WHERE a.path = ? LIMIT 1",
                                     (new, old)).fetchone()
                if clash:
                    raise InputError(new, "is already in the project (imported from there too): relink to "
                                          "another folder")
                moved.update(int(r[0]) for r in conn.execute("SELECT id FROM samples WHERE path = ?", (old,)))
                conn.execute("UPDATE samples SET path = ?, content_hash = ?, content_key = ifnull(content_key, ?) "
                             "WHERE path = ?", (new, fingerprint, key, old))
            self._insert_audit(conn, "sources_relinked", {"sources": len(moves), "samples": len(moved)})
        for name in ("_unreadable", "_lost_slices"):  # what was noted of the old paths no longer holds
            self._drop_session_ids(name, moved)
        return len(moved)

    def refresh_fingerprints(self, fingerprints: Mapping[str, str]) -> None:
        """Record the fingerprints (path -> `files.source_fingerprint`) of sources changed since the
        import (touched, copied with new times) but found to read as before, so that they are not
        read again at every opening."""
        rows = [(fingerprint, str(path)) for path, fingerprint in fingerprints.items()]
        if rows:
            with self._write() as conn:
                conn.executemany("UPDATE samples SET content_hash = ? WHERE path = ?", rows)
                self._insert_audit(conn, "sources_rechecked", {"sources": len(rows)})

    def load_pixels(self, sample: Sample | int) -> np.ndarray:
        """float32 pixels of a sample: the slice for slice samples, RGB kept as (Y, X, 3)."""
        s = sample if isinstance(sample, Sample) else self.sample(sample)
        try:
            array = self._source_array(s)
        except InputError:  # damaged or gone since the import: never queued again this session
            self.note_unreadable(s)
            raise
        if s.slice_index is not None:
            if array.ndim < 3 or s.slice_index >= array.shape[0]:
                self.note_unreadable(s)
                raise InputError(s.path, f"has no slice {s.slice_index} any more (shape {array.shape}); "
                                         "the file changed since it was added")
            array = array[s.slice_index]
        if tuple(array.shape) != tuple(s.shape):
            raise _sample_error(s, f"image now has shape {tuple(array.shape)} but the project recorded "
                                   f"{tuple(s.shape)}; the file changed since it was added")
        if s.id in self._unreadable:  # put back since: queued, and listed as labeled, as before
            self.note_readable(s)
        return np.array(array, dtype=np.float32)

    def _source_array(self, s: Sample) -> np.ndarray:
        key = (s.path, s.series_uid)
        with self._pixels_mutex:
            if key in self._pixels:
                self._pixels.move_to_end(key)
                return self._pixels[key]
        if not os.path.exists(s.path):
            raise InputError(s.path, "source image is missing: it was moved or deleted after it was "
                                     "added to the project (moved: `medlabeler relink`, or the app's Project tab "
                                     "> Find moved images)")
        from ..io import read_image  # imported late: the store works without the readers loaded

        from ..io.image import display_orientation, screen_markers

        image = read_image(s.path, s.series_uid)
        array = np.asarray(image.array)
        self.note_lost_slices(s, image.metadata.get("blank_slices"))
        with self._pixels_mutex:  # a 2D image with geometry (a CT slice) is turned as its volume would be
            self._display[key] = (display_orientation(image.affine), image.window, screen_markers(image.affine))
        if s.is_volume and self.pixel_cache_size > 0:
            array.flags.writeable = False
            with self._pixels_mutex:
                self._pixels[key] = array
                while len(self._pixels) > self.pixel_cache_size:
                    self._pixels.popitem(last=False)
        return array

    def note_unreadable(self, s: Sample) -> None:
        """Record that the file or series of ``s`` no longer reads (damaged or gone since the import):
        none of its samples is queued again this session (a reader outside the store, such as the
        app's, says so too)."""
        self._add_session_ids("_unreadable", {sample_id for sample_id, _ in self._source_slices(s)} | {s.id})

    def note_readable(self, s: Sample) -> None:
        """Record that the file or series of ``s`` reads again (put back after `note_unreadable`)."""
        self._drop_session_ids("_unreadable", {sample_id for sample_id, _ in self._source_slices(s)} | {s.id})

    def note_lost_slices(self, s: Sample, blank_slices) -> None:
        """Record that the slices ``blank_slices`` of the series of ``s`` were read blank: no readable
        file holds them now (a reader of the series outside the store, such as the app's, says so)."""
        if s.series_uid is None or not blank_slices:
            return
        blank = {int(k) for k in blank_slices}
        self._add_session_ids("_lost_slices", {sample_id for sample_id, k in self._source_slices(s) if k in blank})

    def _source_slices(self, s: Sample) -> list[tuple[int, int | None]]:
        """(id, slice index) of every sample read from the same file or series as ``s``."""
        return [(int(r[0]), None if r[1] is None else int(r[1])) for r in self._query(
            "SELECT id, slice_index FROM samples WHERE path = ? AND series_uid IS ?", (s.path, s.series_uid))]

    def _drop_session_ids(self, name: str, ids: set[int]) -> None:
        with self._pixels_mutex:
            known = getattr(self, name)
            if ids & known:
                setattr(self, name, known - ids)
                self._revision += 1

    def _add_session_ids(self, name: str, ids: set[int]) -> None:
        """Add to one of the sets found while reading in this session (``_unreadable``,
        ``_lost_slices``); the set is replaced, never changed, so readers need no lock."""
        with self._pixels_mutex:
            known = getattr(self, name)
            if not ids <= known:
                setattr(self, name, known | ids)
                self._revision += 1  # a queue ranked before holds them

    def display_orientation(self, sample: Sample | int) -> tuple[str, str]:
        """How the sample's source is shown radiologically (`io.image.display_orientation`), known
        once its pixels were read (read now otherwise); an image without geometry as stored."""
        s = sample if isinstance(sample, Sample) else self.sample(sample)
        return self._display_of(s)[0]

    def display_window(self, sample: Sample | int) -> tuple[float, float] | None:
        """The window (centre, width) the source file of a sample asks to be shown with (a CT's
        DICOM window, an X-ray's), known once its pixels were read (read now otherwise); None
        without one."""
        s = sample if isinstance(sample, Sample) else self.sample(sample)
        return self._display_of(s)[1]

    def display_markers(self, sample: Sample | int) -> tuple[str, str, str, str] | None:
        """The patient directions at the screen's (top, bottom, left, right) edges as a sample is
        shown (`io.image.screen_markers`); None for images without geometry (a photo, an X-ray)."""
        s = sample if isinstance(sample, Sample) else self.sample(sample)
        return self._display_of(s)[2]

    def _display_of(self, s: Sample) -> tuple:
        key = (s.path, s.series_uid)
        if key not in self._display:
            self._source_array(s)
        return self._display[key]

    # --------------------------------------------------------------------------------- labels
    def save_label(self, sample_id: int, value: int | np.ndarray, *, author: str = "",
                   origin: str = "manual") -> LabelVersion:
        """Save a new label version and make it current (atomic; older versions are kept)."""
        self._check_writable()
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
        s = self.sample(sample_id)
        if self.is_missing_slice(s.id):
            raise _sample_error(s, MISSING_SLICE)
        if self.task.kind == "classification":
            class_index = self._check_class(s, value)
            data = checksum = None
            present: tuple[int, ...] = (class_index,)
        else:
            mask = self._check_mask(s, value)
            data = files.encode_mask(mask)
            checksum = files.sha256_bytes(data)
            present = tuple(int(v) for v in np.unique(mask) if v != 0)
            class_index = None
        # The mask file is written and fsynced outside the connection's mutex (other threads read
        # meanwhile); label saves are serialized among themselves, so the version stays free.
        with self._label_saves:
            self._check_writable()
            version = self._next_label_version(s.id)
            relpath = None
            if data is not None:
                name = f"s{s.id}-v{version}-{uuid.uuid4().hex[:12]}.npz"
                files.write_atomic(self.root / MASKS_DIR, name, data)
                relpath = f"{MASKS_DIR}/{name}"
            try:
                with self._write(labels_only=True) as conn:
                    label = self._insert_label(conn, s.id, value=class_index, relpath=relpath,
                                               checksum=checksum, present=present, author=str(author),
                                               origin=origin, version=version)
            except BaseException:
                if relpath is not None:
                    (self.root / relpath).unlink(missing_ok=True)
                raise
        return label

    def _next_label_version(self, sample_id: int) -> int:
        return int(self._query("SELECT ifnull(max(version), 0) + 1 FROM labels WHERE sample_id = ?",
                               (sample_id,))[0][0])

    def _insert_label(self, conn: sqlite3.Connection, sample_id: int, *, value: int | None,
                      relpath: str | None, checksum: str | None, present: tuple[int, ...], author: str,
                      origin: str, version: int | None = None) -> LabelVersion:
        if version is None:
            version = int(conn.execute("SELECT ifnull(max(version), 0) + 1 FROM labels WHERE sample_id = ?",
                                       (sample_id,)).fetchone()[0])
        created = _now()
        _clear_current(conn, sample_id)
        conn.execute(
            "INSERT INTO labels (sample_id, version, value, mask_relpath, checksum, present, author, "
            "created, origin, is_current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            (sample_id, version, value, relpath, checksum, _dumps(list(present)), author, created, origin),
        )
        self._insert_audit(conn, "label_saved", {"sample": sample_id, "version": version, "origin": origin})
        return LabelVersion(sample_id=sample_id, version=version, value=value, mask_relpath=relpath,
                            checksum=checksum, author=author, created=created, origin=origin,
                            is_current=True, present=tuple(present))

    def _check_class(self, s: Sample, value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise _sample_error(s, f"a classification label is a class index (int), got {type(value).__name__}")
        n = len(self.task.names)
        if not 0 <= int(value) < n:
            raise _sample_error(s, f"class index {int(value)} out of range 0..{n - 1} ({', '.join(self.task.names)})")
        return int(value)

    def _check_mask(self, s: Sample, value: Any) -> np.ndarray:
        if value is None or isinstance(value, (int, float, np.integer, np.floating, str, bool)):
            raise _sample_error(s, f"a segmentation label is a mask array, got {type(value).__name__}")
        try:
            mask = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - any array-like that fails to convert
            raise _sample_error(s, f"mask could not be read as an array ({exc})") from None
        if mask.dtype == np.bool_:
            mask = mask.astype(np.uint8)
        if mask.dtype.kind not in "iu":
            raise _sample_error(s, f"mask must hold integers, got dtype {mask.dtype}")
        if tuple(mask.shape) != s.spatial_shape:
            raise _sample_error(s, f"mask shape {tuple(mask.shape)} does not match the image shape {s.spatial_shape}")
        n = len(self.task.names)
        if mask.size:
            low, high = int(mask.min()), int(mask.max())
            if low < 0 or high > n:
                raise _sample_error(s, f"mask values must be 0..{n} (0 = background), found {low}..{high}")
        return np.ascontiguousarray(mask, dtype=np.uint8 if n < 256 else np.uint16)

    def _label_from_row(self, row: tuple) -> LabelVersion:
        sample_id, version, value, relpath, checksum, author, created, origin, is_current, present = row
        return LabelVersion(sample_id=int(sample_id), version=int(version),
                            value=None if value is None else int(value), mask_relpath=relpath,
                            checksum=checksum, author=author, created=created, origin=origin,
                            is_current=bool(is_current), present=tuple(json.loads(present)))

    def label(self, sample_id: int) -> LabelVersion | None:
        """The current label version of a sample, or None."""
        rows = self._query(f"SELECT {_LABEL_COLUMNS} FROM labels WHERE sample_id = ? AND is_current = 1",
                           (int(sample_id),))
        return self._label_from_row(rows[0]) if rows else None

    def label_history(self, sample_id: int) -> list[LabelVersion]:
        """Every saved version of a sample's label, oldest first."""
        rows = self._query(f"SELECT {_LABEL_COLUMNS} FROM labels WHERE sample_id = ? ORDER BY version",
                           (int(sample_id),))
        return [self._label_from_row(r) for r in rows]

    def load_label(self, sample_id: int, version: int | None = None) -> int | np.ndarray | None:
        """The current label (or a given version): a class index or a mask; None if unlabeled.

        A damaged mask file raises ProjectError naming it (and the newest intact older version,
        which ``revert_label`` can make current); it never falls back silently.
        """
        if version is None:
            lv = self.label(sample_id)
            if lv is None:
                self.sample(sample_id)  # ProjectError for an unknown id
                return None
        else:
            lv = self._label_version(sample_id, version)
        return self._label_content(lv)

    def labels_that_read(self, samples, damaged: list) -> Iterator[tuple[Sample, Any]]:
        """(sample, current label) of each of ``samples`` whose label reads, one at a time; the
        error of each whose does not (a damaged or missing mask file, named) goes to ``damaged``:
        an export writes the others."""
        for sample in samples:
            lv = self.label(sample.id)
            try:
                value = None if lv is None else self._label_content(lv, sample)
            except ProjectError as exc:
                damaged.append(exc)
                continue
            yield sample, value

    def _label_version(self, sample_id: int, version: int) -> LabelVersion:
        rows = self._query(f"SELECT {_LABEL_COLUMNS} FROM labels WHERE sample_id = ? AND version = ?",
                           (int(sample_id), int(version)))
        if not rows:
            raise ProjectError(f"{self.root}: sample {sample_id} has no label version {version}")
        return self._label_from_row(rows[0])

    def _label_content(self, lv: LabelVersion, s: Sample | None = None) -> int | np.ndarray:
        if lv.value is not None:
            return lv.value
        problem = self._mask_problem(lv, s)
        if isinstance(problem, np.ndarray):
            return problem
        s = s or self.sample(lv.sample_id)
        intact = next((old.version for old in reversed(self.label_history(lv.sample_id))
                       if old.version < lv.version and not isinstance(self._mask_problem(old, s), str)), None)
        hint = (f"version {intact} is intact: `medlabeler history PROJECT {lv.sample_id} --restore {intact}` (or "
                f"the app's queue: right-click > Restore a saved version) makes it current"
                if intact else "no earlier intact version")
        raise ProjectError(f"{self.root / lv.mask_relpath}: mask of {s.describe()} (sample {lv.sample_id}, "
                           f"label version {lv.version}) {problem}; {hint}")

    def _mask_problem(self, lv: LabelVersion, s: Sample | None) -> np.ndarray | str:
        """The mask of a label version, or a string saying what is wrong with its file."""
        if lv.value is not None:
            return np.asarray(lv.value)
        path = files.resolve_inside(self.root, lv.mask_relpath)  # ProjectError if it escapes
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return "is missing"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        if files.sha256_bytes(data) != lv.checksum:
            return "is damaged (checksum mismatch: torn or changed file)"
        try:
            mask = files.decode_mask(data)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged file
            return f"is damaged ({exc})"
        s = s or self.sample(lv.sample_id)
        if tuple(mask.shape) != s.spatial_shape:
            return f"has shape {mask.shape}, expected {s.spatial_shape}"
        return mask

    def revert_label(self, sample_id: int, version: int) -> LabelVersion:
        """Make an older (intact) version current again, e.g. after a damaged mask is reported."""
        lv = self._label_version(sample_id, version)
        self._label_content(lv)  # refuses a damaged version
        with self._write(labels_only=True) as conn:
            _clear_current(conn, lv.sample_id)
            conn.execute("UPDATE labels SET is_current = 1 WHERE sample_id = ? AND version = ?",
                         (lv.sample_id, lv.version))
            self._insert_audit(conn, "label_reverted", {"sample": lv.sample_id, "version": lv.version})
        return self.label(sample_id)

    def remove_label(self, sample_id: int) -> int | None:
        """Make the sample unlabeled again (a label saved by mistake); its versions stay in the history
        (`label_history`, `revert_label`). Returns the version that was current, None if none was."""
        self.sample(sample_id)  # an unknown id raises
        skipped = int(sample_id) in self.skipped_ids()
        # a skip of the sample goes with its label (to be labeled again, it is not put last): not
        # labels only then, so that rankings kept from before the label see the change
        with self._write(labels_only=not skipped) as conn:
            row = conn.execute("SELECT version FROM labels WHERE sample_id = ? AND is_current = 1",
                               (int(sample_id),)).fetchone()
            if row is None:
                return None
            _clear_current(conn, int(sample_id))
            conn.execute("DELETE FROM skips WHERE sample_id = ?", (int(sample_id),))
            self._insert_audit(conn, "label_removed", {"sample": int(sample_id), "version": int(row[0])})
        return int(row[0])

    def labels(self, split: str | None = None) -> dict[int, int | np.ndarray]:
        """Current labels by sample id (class indices or masks), optionally of one split."""
        samples = {s.id: s for s in self.samples(split=split, labeled=True)}
        rows = self._query(f"SELECT {_LABEL_COLUMNS} FROM labels WHERE is_current = 1 ORDER BY sample_id")
        out: dict[int, int | np.ndarray] = {}
        for row in rows:
            lv = self._label_from_row(row)
            if lv.sample_id in samples:
                out[lv.sample_id] = self._label_content(lv, samples[lv.sample_id])
        return out

    def check_labels(self) -> list[ProjectError]:
        """One ProjectError per current label whose mask file is missing or damaged."""
        problems: list[ProjectError] = []
        for _ in self.labels_that_read(self.samples(labeled=True), problems):
            pass
        return problems

    # --------------------------------------------------------------------------------- models
    def add_model(self, *, method: str, weights_file: str | Path, record: Mapping[str, Any],
                  metrics: Mapping[str, Any], parent: int | None = None,
                  activate: bool = True) -> ModelVersion:
        """Copy a weights file (and its ``.json`` sidecar, if any) into models/ as a new version."""
        self._check_writable()
        source = Path(weights_file)
        if not source.is_file():
            raise InputError(source, "weights file not found")
        record, metrics = dict(record), dict(metrics)
        record_json, metrics_json = _dumps(record), _dumps(metrics)
        with self._mutex:
            version = int(self._query("SELECT ifnull(max(version), 0) + 1 FROM models")[0][0])
            if parent is not None and not self._query("SELECT 1 FROM models WHERE version = ?", (int(parent),)):
                raise ProjectError(f"{self.root}: parent model version {parent} does not exist")
            stem = f"m{version:04d}-{uuid.uuid4().hex[:12]}"
            models_dir = self.root / MODELS_DIR
            written: list[Path] = []
            try:
                final, checksum = files.copy_atomic(source, models_dir, stem + (source.suffix or ".bin"))
                written.append(final)
                for sidecar in (source.with_suffix(".json"), Path(f"{source}.json")):
                    if sidecar.is_file() and sidecar != source:
                        written.append(files.copy_atomic(sidecar, models_dir, stem + ".json")[0])
                        break
                n_labels = int(record.get("n_labels", self._count_labels()))
                created = _now()
                relpath = f"{MODELS_DIR}/{final.name}"
                with self._write() as conn:
                    if activate:
                        conn.execute("UPDATE models SET active = 0 WHERE active = 1")
                    conn.execute(
                        "INSERT INTO models (version, method, relpath, checksum, record, metrics, parent, "
                        "created, active, n_labels, was_active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (version, str(method), relpath, checksum, record_json, metrics_json,
                         None if parent is None else int(parent), created, int(bool(activate)), n_labels,
                         int(bool(activate))),
                    )
                    self._insert_audit(conn, "model_added", {"version": version, "method": str(method),
                                                             "parent": parent, "active": bool(activate)})
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
        return self.model(version)

    def _count_labels(self) -> int:
        return int(self._query("SELECT count(*) FROM labels WHERE is_current = 1")[0][0])

    def _model_from_row(self, row: tuple) -> ModelVersion:
        version, method, relpath, record, metrics, parent, created, n_labels, active, checksum, removed, was_active = row
        return ModelVersion(version=int(version), method=method, path=files.resolve_inside(self.root, relpath),
                            record=json.loads(record), metrics=json.loads(metrics),
                            parent=None if parent is None else int(parent), created=created,
                            n_labels=int(n_labels), active=bool(active), checksum=checksum,
                            removed=removed, was_active=bool(was_active))

    def _models_where(self, where: str = "", args: tuple = ()) -> list[ModelVersion]:
        columns = _MODEL_COLUMNS if self._schema >= 3 else _MODEL_COLUMNS_V2
        return [self._model_from_row(r) for r in
                self._query(f"SELECT {columns} FROM models {where} ORDER BY version", args)]

    def models(self) -> list[ModelVersion]:
        """All model versions, oldest first (those whose weights were removed too)."""
        return self._models_where()

    def model(self, version: int) -> ModelVersion:
        rows = self._models_where("WHERE version = ?", (int(version),))
        if not rows:
            raise ProjectError(f"{self.root}: no model version {version}")
        return rows[0]

    def active_model(self) -> ModelVersion | None:
        rows = self._models_where("WHERE active = 1")
        return rows[0] if rows else None

    def activate(self, version: int) -> None:
        """Make a model version the active one (the one predictions and scores come from)."""
        if (removed := self.model(version).removed) is not None:
            raise ProjectError(f"{self.root}: model v{version} cannot be activated: {weights_removed_text(removed)}")
        with self._write() as conn:
            conn.execute("UPDATE models SET active = 0 WHERE active = 1")
            conn.execute("UPDATE models SET active = 1, was_active = 1 WHERE version = ?", (int(version),))
            self._insert_audit(conn, "model_activated", {"version": int(version)})

    def remove_model_weights(self, versions: Iterable[int]) -> int:
        """Delete the weights (and scores, embeddings) of model versions; their rows stay, marked
        removed, so the history of versions and decisions is kept. Returns the bytes freed.

        The active model is never removed. The rows are marked first: a crash before the files go
        leaves orphans, which the next open removes.
        """
        self._check_writable()
        versions = sorted({int(v) for v in versions})
        with self._mutex:
            targets = [m for m in self._models_where() if m.version in versions and m.removed is None]
            if any(m.active for m in targets):
                raise ProjectError(f"{self.root}: the active model's weights cannot be removed")
            if not targets:
                return 0
            keys = [(m.version,) for m in targets]
            embeddings = [r[0] for v in keys for r in
                          self._query("SELECT relpath FROM embeddings WHERE model_version = ?", v)]
            paths = [m.path for m in targets] + [files.resolve_inside(self.root, r) for r in embeddings]
            paths += [m.path.with_suffix(".json") for m in targets]  # a sidecar record, where one was copied
            size = sum(p.stat().st_size for p in paths if p.is_file())
            with self._write() as conn:
                conn.executemany("UPDATE models SET removed = ? WHERE version = ?", [(_now(), *k) for k in keys])
                conn.executemany("DELETE FROM scores WHERE model_version = ?", keys)
                conn.executemany("DELETE FROM embeddings WHERE model_version = ?", keys)
                self._insert_audit(conn, "model_weights_removed", {"versions": [k[0] for k in keys], "bytes": size})
            for path in paths:
                path.unlink(missing_ok=True)
            files.fsync_dir(self.root / MODELS_DIR)
        return size

    def _model_key(self, model_version: int | None) -> int:
        """The scores/embeddings key: a model version, the active one for None, 0 if none is active."""
        if model_version is None:
            active = self.active_model()
            return active.version if active else 0
        if int(model_version) != 0:
            self.model(model_version)
        return int(model_version)

    # --------------------------------------------------------------------------------- scores
    def write_scores(self, model_version: int | None, scores: Mapping[int, Mapping[str, float]]) -> None:
        """Store (or replace) per-sample scores; None means the active model (0 when there is none)."""
        self._check_writable()
        key = self._model_key(model_version)
        rows = [(int(sid), key, str(name), _finite_or_none(value))
                for sid, named in scores.items() for name, value in named.items()]
        try:
            with self._write() as conn:
                conn.executemany("INSERT OR REPLACE INTO scores (sample_id, model_version, name, value) "
                                 "VALUES (?, ?, ?, ?)", rows)
                self._insert_audit(conn, "scores_written", {"model_version": key, "samples": len(scores)})
        except sqlite3.IntegrityError:
            known = {r[0] for r in self._query("SELECT id FROM samples")}
            unknown = sorted({int(s) for s in scores} - known)[:5]
            raise ProjectError(f"{self.root}: scores for unknown sample ids {unknown}") from None

    def scores(self, model_version: int | None = None, name: str | None = None) -> dict[int, dict[str, float]]:
        """Scores by sample id, of a model version (default: the active model), maybe one name only."""
        key = self._model_key(model_version)
        sql, args = "SELECT sample_id, name, value FROM scores WHERE model_version = ?", [key]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        out: dict[int, dict[str, float]] = {}
        for sid, score_name, value in self._query(sql + " ORDER BY sample_id", args):
            out.setdefault(int(sid), {})[score_name] = math.nan if value is None else float(value)
        return out

    def stale_score_samples(self, unlabeled_only: bool = False, split: str | None = None) -> list[int]:
        """Ids of samples with no score from the active model (new samples, or a new model), of one
        split only with ``split``."""
        where, args = self._sample_filter(split, False if unlabeled_only else None, None)
        where.append("NOT EXISTS (SELECT 1 FROM scores s WHERE s.sample_id = samples.id AND s.model_version = ?)")
        args.append(self._model_key(None))
        return [int(r[0]) for r in self._query(f"SELECT id FROM samples WHERE {' AND '.join(where)} ORDER BY id", tuple(args))]

    # ----------------------------------------------------------------------------- embeddings
    def write_embeddings(self, model_version: int | None, ids: Iterable[int], array: np.ndarray) -> None:
        """Store one (N, D) embedding matrix for a model version (replacing an older one)."""
        self._check_writable()
        key = self._model_key(model_version)
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[0] != ids.shape[0]:
            raise ValueError(f"embeddings must be (N, D) with N = len(ids) = {ids.shape[0]}, got {array.shape}")
        buffer = io.BytesIO()
        np.savez(buffer, ids=ids, embeddings=np.ascontiguousarray(array, dtype=np.float32))
        data = buffer.getvalue()
        with self._mutex:
            name = f"e{key:04d}-{uuid.uuid4().hex[:12]}.npz"
            files.write_atomic(self.root / MODELS_DIR, name, data)
            relpath = f"{MODELS_DIR}/{name}"
            try:
                with self._write() as conn:
                    old = conn.execute("SELECT relpath FROM embeddings WHERE model_version = ?", (key,)).fetchone()
                    conn.execute("INSERT OR REPLACE INTO embeddings (model_version, relpath, checksum, n, dim, "
                                 "created) VALUES (?, ?, ?, ?, ?, ?)",
                                 (key, relpath, files.sha256_bytes(data), int(array.shape[0]),
                                  int(array.shape[1]), _now()))
                    self._insert_audit(conn, "embeddings_written", {"model_version": key, "n": int(array.shape[0])})
            except BaseException:
                (self.root / relpath).unlink(missing_ok=True)
                raise
            if old:
                try:
                    files.resolve_inside(self.root, old[0]).unlink(missing_ok=True)
                except (OSError, ProjectError):
                    pass  # a leftover is removed as an orphan on the next open

    def embeddings(self, model_version: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, (N, D) float32 embeddings) of a model version (default: active), or None."""
        key = self._model_key(model_version)
        rows = self._query("SELECT relpath, checksum FROM embeddings WHERE model_version = ?", (key,))
        if not rows:
            return None
        path = files.resolve_inside(self.root, rows[0][0])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProjectError(f"{path}: embeddings file cannot be read ({exc.strerror or exc})") from None
        if files.sha256_bytes(data) != rows[0][1]:
            raise ProjectError(f"{path}: embeddings file is damaged (checksum mismatch)")
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return archive["ids"], archive["embeddings"]

    # ---------------------------------------------------------------------------------- audit
    def audit(self, action: str, **detail: Any) -> None:
        """Record an event. Keys that suggest identifiers and path-like strings are removed."""
        self._audit_now(action, detail)

    def audit_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit entries, oldest first (the newest ``limit`` when given)."""
        sql = "SELECT time, action, detail FROM audit ORDER BY id"
        if limit is not None:
            sql = (f"SELECT * FROM (SELECT id, time, action, detail FROM audit ORDER BY id DESC "
                   f"LIMIT {int(limit)}) ORDER BY id")
        rows = self._query(sql)
        return [{"time": r[-3], "action": r[-2], "detail": json.loads(r[-1])} for r in rows]

    # --------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Counts: samples, labeled, per_split {split: {samples, labeled}}, per_class {name: count},
        skipped (unlabeled samples skipped with `n`: the queue lists them last).

        per_class counts current labels of each class (classification) or labeled samples whose
        mask contains each label (segmentation); per_class_split {name: {split: count}} the same by
        split (`unmeasured_text` reads it).
        """
        per_split = {split: {"samples": 0, "labeled": 0} for split in SPLITS}
        rows = self._query(
            "SELECT split, count(*), sum(EXISTS (SELECT 1 FROM labels l WHERE l.sample_id = samples.id "
            "AND l.is_current = 1)) FROM samples GROUP BY split")
        for split, n, labeled in rows:
            per_split[split] = {"samples": int(n), "labeled": int(labeled or 0)}
        counts: Counter[tuple[int, str]] = Counter()
        offset = 0 if self.task.kind == "classification" else 1
        for present, split in self._query("SELECT l.present, s.split FROM labels l JOIN samples s ON s.id = l.sample_id "
                                          "WHERE l.is_current = 1"):
            counts.update((int(v) - offset, split) for v in json.loads(present))
        active = self.active_model()
        return {
            "samples": sum(v["samples"] for v in per_split.values()),
            "labeled": sum(v["labeled"] for v in per_split.values()),
            "per_split": per_split,
            "per_class": {name: sum(counts[(i, split)] for split in SPLITS) for i, name in enumerate(self.task.names)},
            "per_class_split": {name: {split: counts[(i, split)] for split in SPLITS}
                                for i, name in enumerate(self.task.names)},
            "models": int(self._query("SELECT count(*) FROM models")[0][0]),
            "active_model": active.version if active else None,
            "skipped": len(set(self.skipped_ids()) - self.labeled_ids() - self.blank_ids()),  # as the queue lists
        }

    def integrity_check(self) -> str:
        """SQLite's own check of the database file: "ok" when healthy."""
        return "; ".join(str(r[0]) for r in self._query("PRAGMA integrity_check"))


def _finite_or_none(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _sample_error(s: Sample, problem: str) -> InputError:
    where = f"slice {s.slice_index}, " if s.slice_index is not None else ""
    return InputError(s.path, f"{where}sample {s.id}: {problem}")


def _check_task(root: Path, kind: str, names: list[str], colors: list[str] | None, unit: str, seed: int,
                fractions: tuple[float, float, float], slabs: int = 0) -> TaskSpec:
    if kind not in TASK_KINDS:
        raise ProjectError(f"{root}: task must be one of {TASK_KINDS}, got {kind!r}")
    if unit not in UNITS:
        raise ProjectError(f"{root}: unit must be one of {UNITS}, got {unit!r}")
    names = [str(n).strip() for n in names]
    minimum = 2 if kind == "classification" else 1
    if len(names) < minimum or any(not n for n in names) or len(set(names)) != len(names):
        raise ProjectError(f"{root}: a {kind} project needs at least {minimum} distinct non-empty names, got {names}")
    if kind == "segmentation" and len(names) > 65535:
        raise ProjectError(f"{root}: at most 65535 segmentation labels")
    if colors is None:
        colors = [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(names))]
    if len(colors) != len(names):
        raise ProjectError(f"{root}: {len(colors)} colors for {len(names)} names")
    try:
        fractions = check_fractions(fractions)
    except ValueError as exc:
        raise ProjectError(f"{root}: {exc}") from None
    if slabs < 0 or (slabs and unit != "slice"):
        raise ProjectError(f"{root}: slabs (split a volume by contiguous slices) needs unit 'slice' and a count >= 0")
    return TaskSpec(kind=kind, names=tuple(names), colors=tuple(str(c) for c in colors), unit=unit,
                    seed=int(seed), split_fractions=fractions, slabs=int(slabs))
