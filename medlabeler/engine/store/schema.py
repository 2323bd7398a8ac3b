"""The SQLite schema, versioned with ``PRAGMA user_version``; one list of statements per version.

To change the schema add ``MIGRATIONS[n + 1]`` (statements taking a version-n database to n + 1)
and bump nothing else: ``SCHEMA_VERSION`` follows the list. Never edit an applied migration.
"""

from __future__ import annotations

import sqlite3

from ..errors import ProjectError

_V1 = [
    """CREATE TABLE task (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        kind TEXT NOT NULL CHECK (kind IN ('classification', 'segmentation')),
        names TEXT NOT NULL,
        colors TEXT NOT NULL,
        unit TEXT NOT NULL CHECK (unit IN ('image', 'slice')),
        seed INTEGER NOT NULL,
        split_fractions TEXT NOT NULL,
        slabs INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE groups (
        key TEXT PRIMARY KEY,
        split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test'))
    )""",
    """CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        series_uid TEXT,
        slice_index INTEGER,
        group_key TEXT NOT NULL REFERENCES groups(key),
        split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
        shape TEXT NOT NULL,
        spacing TEXT NOT NULL,
        source_shape TEXT NOT NULL,
        modality TEXT NOT NULL,
        is_volume INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        added TEXT NOT NULL
    )""",
    """CREATE UNIQUE INDEX samples_source ON samples
        (path, ifnull(series_uid, ''), ifnull(slice_index, -1))""",
    "CREATE INDEX samples_split ON samples (split)",
    """CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        sample_id INTEGER NOT NULL REFERENCES samples(id),
        version INTEGER NOT NULL,
        value INTEGER,
        mask_relpath TEXT,
        checksum TEXT,
        present TEXT NOT NULL DEFAULT '[]',
        author TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN
            ('manual', 'accepted_prediction', 'corrected_prediction', 'imported')),
        is_current INTEGER NOT NULL DEFAULT 0,
        CHECK ((value IS NULL) != (mask_relpath IS NULL)),
        UNIQUE (sample_id, version)
    )""",
    "CREATE UNIQUE INDEX labels_one_current ON labels (sample_id) WHERE is_current = 1",
    """CREATE TABLE models (
        version INTEGER PRIMARY KEY,
        method TEXT NOT NULL,
        relpath TEXT NOT NULL,
        checksum TEXT NOT NULL,
        record TEXT NOT NULL,
        metrics TEXT NOT NULL,
        parent INTEGER REFERENCES models(version),
        created TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        n_labels INTEGER NOT NULL
    )""",
    "CREATE UNIQUE INDEX models_one_active ON models (active) WHERE active = 1",
    """CREATE TABLE scores (
        sample_id INTEGER NOT NULL REFERENCES samples(id),
        model_version INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (sample_id, model_version, name)
    )""",
    "CREATE INDEX scores_model ON scores (model_version, name)",
    """CREATE TABLE embeddings (
        model_version INTEGER PRIMARY KEY,
        relpath TEXT NOT NULL,
        checksum TEXT NOT NULL,
        n INTEGER NOT NULL,
        dim INTEGER NOT NULL,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
]

# Facts about a sample's pixels, found once (at import): a blank image (one value everywhere, such
# as the empty slices padding a registered MRI) is never worth a clinician's label.
_V2 = [
    """CREATE TABLE sample_facts (
        sample_id INTEGER PRIMARY KEY REFERENCES samples(id),
        blank INTEGER NOT NULL CHECK (blank IN (0, 1))
    )""",
]

# A model's history outlives its weights: a learning loop that runs all day makes a version every
# few labels (45 MB each for a ResNet-18), so old weights are removed and the row stays, with
# `removed` (when) set. `was_active` keeps which versions were ever active, the roll-back history.
_V3 = [
    "ALTER TABLE models ADD COLUMN removed TEXT",
    "ALTER TABLE models ADD COLUMN was_active INTEGER NOT NULL DEFAULT 0",
    """UPDATE models SET was_active = 1 WHERE active = 1 OR version IN (
        SELECT json_extract(detail, '$.version') FROM audit WHERE action = 'model_activated'
        OR (action = 'model_added' AND json_extract(detail, '$.active')))""",
]

# What a source's bytes are, whatever its name and time (`files.content_key`): an image moved or
# renamed is found again by it, and another patient's scan of the same name and size is not taken
# for it (`project.relink`). Sources imported before it was kept have none.
_V4 = [
    "ALTER TABLE samples ADD COLUMN content_key TEXT",
]

# Samples the clinician passed over unlabeled (`n` on them): the queue puts them behind every other
# sample, so one that cannot be labeled (an artefact, no anatomy) is not asked for again at each save.
_V5 = [
    """CREATE TABLE skips (
        id INTEGER PRIMARY KEY,
        sample_id INTEGER NOT NULL UNIQUE REFERENCES samples(id),
        time TEXT NOT NULL
    )""",
]

# MIGRATIONS[n] takes a database at version n - 1 to version n.
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5}
SCHEMA_VERSION = max(MIGRATIONS)
#: the oldest schema a read-only handle still opens: version 2 only adds sample_facts, which such a
#: handle reads as empty (nothing known to be blank); version 3 the models' `removed` and
#: `was_active`, read as "weights present" and "active now"; version 4 the samples' `content_key`,
#: which only a relink reads (as unknown); version 5 the skipped samples, read as none
OLDEST_READABLE = 1


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the database up to ``SCHEMA_VERSION``, one transaction per step; returns the old version.

    ``conn`` must be in autocommit mode (isolation_level=None). ``where`` names the project in errors.
    """
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise ProjectError(
            f"{where}: project was written by a newer medlabeler (schema {current}, "
            f"this version knows up to {SCHEMA_VERSION}); update medlabeler to open it"
        )
    for target in range(current + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return current
