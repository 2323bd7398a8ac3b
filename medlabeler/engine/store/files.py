"""Files next to the database: atomic durable writes, checksums, safe relative paths, masks.

A file becomes visible under its final name only when it is complete and on disk: it is written to
a temporary name in the same folder, flushed and fsynced, renamed with ``os.replace`` and then the
folder itself is fsynced. Final names are unique, so an older version's file is never overwritten.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from ..errors import InputError, ProjectError

TMP_PREFIX = ".tmp-"
_HEAD_TAIL = 64 * 1024
_COPY_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_name() -> str:
    return f"{TMP_PREFIX}{uuid.uuid4().hex}"


def _write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file, then flush and fsync it (a step tests may interrupt)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _rename(tmp: Path, final: Path) -> None:
    """Publish a complete temporary file under its final name (a step tests may interrupt)."""
    if final.exists():  # names carry a random token, so this means a bug, never a normal case
        raise ProjectError(f"{final}: refusing to overwrite an existing file")
    os.replace(tmp, final)


def write_atomic(directory: Path, final_name: str, data: bytes) -> Path:
    """Write ``data`` as ``directory/final_name`` so that a crash leaves either nothing or all of it."""
    tmp = directory / temp_name()
    final = directory / final_name
    try:
        _write_durable(tmp, data)
        _rename(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, directory) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return final


def _naming(exc: OSError, directory: Path) -> OSError:
    """``exc`` with the folder it failed in: a write or an fsync on a full disk says only "[Errno
    28] No space left on device", and the user cannot tell which disk."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, str(directory))


def copy_atomic(source: Path, directory: Path, final_name: str) -> tuple[Path, str]:
    """Copy ``source`` into ``directory/final_name`` atomically; returns (path, sha256 of the bytes)."""
    tmp = directory / temp_name()
    final = directory / final_name
    digest = hashlib.sha256()
    try:
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            while chunk := src.read(_COPY_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        _rename(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, directory) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return final, digest.hexdigest()


def check_relpath(relpath: str) -> PurePosixPath:
    """Refuse a stored path that is absolute or climbs out (``..``): such a row was tampered with."""
    if not relpath or "\\" in relpath or "\x00" in relpath:
        raise ProjectError(f"{relpath!r}: not a valid path inside the project")
    pure = PurePosixPath(relpath)
    if pure.is_absolute() or PureWindowsPath(relpath).drive or ".." in pure.parts:
        raise ProjectError(f"{relpath}: path escapes the project folder; refusing to use it")
    return pure


def resolve_inside(root: Path, relpath: str) -> Path:
    """The absolute path of a project-relative path, refusing any that lands outside ``root``."""
    pure = check_relpath(relpath)
    candidate = root.joinpath(*pure.parts)
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ProjectError(f"{relpath}: path escapes the project folder (to {resolved}); refusing to use it")
    return candidate


def source_keys(path: str | Path) -> tuple[str, str | None]:
    """A source's `source_fingerprint` and `content_key`, from one stat and one read of its ends."""
    p = Path(path)
    try:
        if p.is_dir():
            children = [(child.name, child.stat()) for child in sorted(p.iterdir()) if child.is_file()]
            timed = "".join(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n" for name, st in children).encode()
            sized = "".join(f"{name}\0{st.st_size}\n" for name, st in children).encode()
            return hashlib.sha1(timed).hexdigest(), hashlib.sha1(sized).hexdigest() if children else None
        st = p.stat()
        with open(p, "rb") as f:
            ends = f.read(_HEAD_TAIL)
            if st.st_size > 2 * _HEAD_TAIL:
                f.seek(-_HEAD_TAIL, os.SEEK_END)
                ends += f.read(_HEAD_TAIL)
    except FileNotFoundError:
        raise InputError(p, "source image is missing (moved or deleted?)") from None
    except OSError as exc:
        raise InputError(p, f"cannot read source: {exc.strerror or exc}") from None
    return (hashlib.sha1(f"{st.st_size}\0{st.st_mtime_ns}\n".encode() + ends).hexdigest(),
            hashlib.sha1(f"{st.st_size}\n".encode() + ends).hexdigest())


def source_fingerprint(path: str | Path) -> str:
    """A cheap content hash of a source: sha1 of size, mtime and the first and last 64 KiB.

    A folder (DICOM series) hashes the names, sizes and mtimes of the files it holds.
    """
    return source_keys(path)[0]


def content_key(path: str | Path) -> str | None:
    """What a source holds, whatever its name, place or time: sha1 of its size and its first and
    last 64 KiB (a DICOM series' folder: the names and sizes of its files). A copy keeps it, where
    `source_fingerprint` changes with the time. None for a folder that holds no file itself, or a
    source that cannot be read."""
    try:
        return source_keys(path)[1]
    except InputError:
        return None


def encode_mask(mask: np.ndarray) -> bytes:
    """A mask as compressed .npz bytes (one array named ``mask``)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, mask=mask)
    return buffer.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """The mask array back from ``encode_mask`` bytes; raises ValueError/OSError/KeyError if broken."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return archive["mask"]
