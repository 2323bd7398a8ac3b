"""Find images that moved since they were imported, and point the project at them again.

A project keeps its images where they were imported from. A folder moved to another disk, a
project opened on another machine with the data mounted elsewhere (Windows paths included), or a
renamed file leaves every sample of those images unreadable (and a labeled one stops every
training run). Given the folder the images are in now, the missing images (files, or DICOM
series' folders) are looked for there in three rounds, each only among the files no other image
of the project reads or was given in an earlier round:

1. by the end of its old path, a folder and more (``old/root/ct/series1`` is found as
   ``NEW/ct/series1``), or the folder chosen itself when it bears the series folder's name;
2. by its name alone, when no other missing image has that name and one free file under the
   folder has it;
3. by its fingerprint (size, modification time and the file's ends: what `mv` and `cp -p` keep),
   which finds a renamed file or series folder (under a folder of at most FINGERPRINTS_AT_MOST
   files and folders).

A candidate is taken only if its headers describe the same image: the same shape (and the same
DICOM series UID). Nothing is decoded, and labels, scores and models stay as they are: they
belong to the sample ids, which do not change.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from medlabeler.engine.errors import InputError
from medlabeler.engine.io.sources import classify, scan_sources
from medlabeler.engine.store import files

#: Renamed images are looked for by fingerprint under a folder of at most this many files and folders
FINGERPRINTS_AT_MOST = 20_000
#: The fingerprint of a folder holding no file itself (a series kept in subfolders): matches any such folder
_NOTHING = hashlib.sha1().hexdigest()

Wanted = list[tuple[str | None, tuple[int, ...]]]  # (series UID, shape) of each image read from one path


@dataclass
class RelinkReport:
    """What `relink_images` did: old path -> new path of each image found, the images still
    missing, the candidates refused (each names the file and why) and the samples moved."""

    found: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    refused: list[InputError] = field(default_factory=list)
    samples: int = 0
    fingerprints_skipped: bool = False  # the folder was too large to look for renamed images in
    by_name_only: list[str] = field(default_factory=list)  # old paths found by name, their contents unknown
    dry_run: bool = False

    def summary(self, folder: str | Path) -> str:
        looked = len(self.found) + len(self.missing)
        read = "would be read from there (a dry run: nothing changed)" if self.dry_run else "read from there now"
        text = (f"found {len(self.found)} of {looked} missing image{'s' * (looked != 1)} under {folder}: "
                f"{self.samples} sample{'s' * (self.samples != 1)} {read}")
        if self.missing:
            text += f"; {len(self.missing)} still missing"
        return text

    def lines(self) -> list[str]:
        """A line per image still missing, per candidate refused, per image found by its name only
        (and, in a dry run, per image found)."""
        lines = ([f"still missing: {path}" for path in self.missing]
                 + [f"not the same image: {error}" for error in self.refused]
                 + [f"found by its name only, check it: {self.found[old]} (for {old}; the project was made before "
                    "medlabeler kept what its images hold)" for old in self.by_name_only])
        if self.dry_run:
            lines += [f"would read {old} from {new}" for old, new in self.found.items()]
        if self.fingerprints_skipped:
            lines.append(f"renamed images were not looked for: the folder holds more than {FINGERPRINTS_AT_MOST:,} "
                         "files and folders (choose one closer to the images)")
        return lines


def relink_images(project, folder: str | Path, *, dry_run: bool = False) -> RelinkReport:
    """Look for the project's missing images under ``folder`` and read them from there from now
    on (unless ``dry_run``)."""
    folder = Path(os.path.abspath(folder))
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    report = RelinkReport(dry_run=dry_run)
    sources = project.sources()
    lost: dict[str, Wanted] = {}
    for path, series, shape in sources:
        if not os.path.exists(path):
            lost.setdefault(path, []).append((series, shape))
    if not lost:
        return report
    tree = _Tree(folder, in_use={_real(path) for path, _, _ in sources if path not in lost})
    shared_names = {name for name, n in Counter(_pure(old).name for old in lost).items() if n > 1}
    refusals: dict[str, InputError] = {}
    pending = sorted(lost)
    recorded = {old: project.recorded_keys(old) for old in lost}  # (fingerprint, content key) at import
    for candidates_of in (_by_place, lambda old, tree: _by_name(old, tree, shared_names),
                          lambda old, tree: _by_contents(tree, *recorded[old])):
        pending = [old for old in pending
                   if not _take(old, (lost[old], recorded[old][1]), candidates_of, tree, report, refusals)]
    report.by_name_only = [old for old in report.found
                           if recorded[old][1] is None and _found_by_name_only(old, report)]
    report.missing = pending
    report.refused = [refusals[old] for old in pending if old in refusals]
    report.fingerprints_skipped = tree.fingerprints_skipped
    if report.found:
        now = {new: files.source_keys(new) for new in report.found.values()}
        report.samples = project.count_samples_of(report.found) if dry_run else project.move_sources(
            {old: (new, *now[new]) for old, new in report.found.items()})
    return report


def _found_by_name_only(old: str, report: RelinkReport) -> bool:
    """Its new place shares no folder with its old one: the name alone was the clue."""
    return Path(report.found[old]).parent.name != _pure(old).parent.name


def _take(old: str, known: tuple[Wanted, str | None], candidates_of: Callable, tree: "_Tree", report: RelinkReport,
          refusals: dict[str, InputError]) -> bool:
    """Give ``old`` the first free candidate of this round that holds the same image(s): the same
    bytes where the project kept what it held (``known``: its images, and its content key)."""
    wanted, key = known
    for candidate in [c for c in candidates_of(old, tree) if tree.is_free(c)][:3]:
        refusal = _differs(candidate, wanted) or _other_bytes(candidate, key)
        if refusal is None:
            report.found[old] = candidate
            tree.claim(candidate)
            refusals.pop(old, None)
            return True
        refusals[old] = refusal
    return False


class _Tree:
    """The files and folders under the folder searched, listed once; fingerprints on demand; which
    of them the project reads already or were given to a missing image."""

    def __init__(self, root: Path, in_use: set[str]):
        self.root = root
        self._taken = set(in_use)  # real paths: a symlinked folder names the same file otherwise
        self.by_name: dict[str, list[str]] = {}
        self.paths: list[str] = [str(root)]
        for where, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(dirs) + sorted(n for n in names if not n.startswith(".")):
                path = os.path.join(where, name)
                self.paths.append(path)
                self.by_name.setdefault(name, []).append(path)
        self._keys: dict[str, tuple[str | None, str | None]] | None = None  # path -> `files.source_keys`
        self.fingerprints_skipped = False

    def is_free(self, path: str) -> bool:
        return _real(path) not in self._taken

    def claim(self, path: str) -> None:
        self._taken.add(_real(path))

    def holding(self, fingerprint: str, key: str | None) -> list[str]:
        """The paths whose content key is ``key``, or without one, whose fingerprint is
        ``fingerprint`` (both read once for every path, on first use)."""
        if len(self.paths) > FINGERPRINTS_AT_MOST:
            self.fingerprints_skipped = True  # a home folder: reading the ends of every file would take minutes
            return []
        if self._keys is None:
            self._keys = {path: _quietly(path) for path in self.paths}
        which, value = (1, key) if key is not None else (0, fingerprint)
        return [path for path, keys in self._keys.items() if keys[which] == value]


def _by_place(old: str, tree: _Tree) -> list[str]:
    """Where the end of the old path (a folder and more, longest first) lies under the tree."""
    pure = _pure(old)
    parts = pure.parts[1:] if pure.anchor else pure.parts
    candidates = [str(tree.root.joinpath(*parts[-k:])) for k in range(len(parts), 1, -1)]
    if tree.root.name == pure.name:
        candidates.append(str(tree.root))  # the folder chosen is the series' folder itself
    return [c for c in candidates if os.path.exists(c)]


def _by_name(old: str, tree: _Tree, shared_names: set[str]) -> list[str]:
    """The one free file or folder of the old path's name (none when several missing images, or
    several free files, have that name: not guessed)."""
    name = _pure(old).name
    found = [c for c in tree.by_name.get(name, []) if tree.is_free(c)]
    return found if name not in shared_names and len(found) == 1 else []


def _by_contents(tree: _Tree, fingerprint: str, key: str | None) -> list[str]:
    """The files holding what the old one held (its content key: a copy that lost its time too),
    or, for a source imported before keys were kept, of its fingerprint (a move or `cp -p`)."""
    if key is None and (not fingerprint or fingerprint == _NOTHING):
        return []
    return tree.holding(fingerprint, key)


def _other_bytes(candidate: str, key: str | None) -> InputError | None:
    if key is None or files.content_key(candidate) == key:
        return None
    return InputError(candidate, "its size or bytes differ from the image imported (another patient's scan of the "
                                 "same name and size?)")


def _quietly(path: str) -> tuple[str | None, str | None]:
    try:
        return files.source_keys(path)
    except InputError:
        return None, None


def _pure(path: str) -> PurePath:
    """The stored path as the system that wrote it spells it (a project made on Windows keeps
    ``D:\\scans\\a.nii.gz``)."""
    return PureWindowsPath(path) if "\\" in path or re.match(r"[A-Za-z]:", path) else PurePosixPath(path)


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _differs(candidate: str, wanted: Wanted) -> InputError | None:
    """Why ``candidate`` is not the image(s) the project had (None: it is), from headers only."""
    if os.path.isfile(candidate) and classify(Path(candidate)) is None:
        return InputError(candidate, "not an image medlabeler reads")
    infos, _ = scan_sources(candidate)
    found = {(info.series_uid, tuple(info.shape)) for info in infos}
    for series, shape in wanted:
        if (series, shape) in found:
            continue
        same_series = [s for u, s in found if u == series]
        if same_series:
            return InputError(candidate, f"its image is {_size(same_series[0])}; the project's was {_size(shape)}")
        if series:
            return InputError(candidate, "holds no DICOM series with the UID the project's had")
        return InputError(candidate, f"holds no image of {_size(shape)}")
    return None


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)
