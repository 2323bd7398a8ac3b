"""Find images that moved since they were imported, and point the project at them again.

A project keeps its images where they were imported from. A folder moved to another disk, a
project opened on another machine with the data mounted elsewhere, or a renamed file leaves
every sample of those images unreadable (and a labeled one stops every training run). Given
the folder the images are in now, each missing image (a file, or a DICOM series' folder) is
looked for there:

1. by the end of its old path (``old/root/ct/series1`` is found as ``NEW/ct/series1``, then as
   ``NEW/series1``), then by its name alone when one file under the folder has it;
2. else by its fingerprint (size, modification time and the file's ends: what `mv` and
   `cp -p` keep), which finds a renamed file or series folder (under a folder of at most
   FINGERPRINTS_AT_MOST files).

A candidate replaces the old path only if its headers describe the same image: the same shape
(and the same DICOM series UID). Nothing is decoded, and labels, scores and models stay as they
are: they belong to the sample ids, which do not change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from medlabeler.engine.errors import InputError
from medlabeler.engine.io.sources import classify, scan_sources
from medlabeler.engine.store import files


#: Renamed images are looked for by fingerprint under a folder of at most this many files and folders
FINGERPRINTS_AT_MOST = 20_000


@dataclass
class RelinkReport:
    """What `relink_images` did: old path -> new path of each image found, the images still
    missing, the candidates refused (each names the file and why) and the samples moved."""

    found: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    refused: list[InputError] = field(default_factory=list)
    samples: int = 0

    def summary(self, folder: str | Path) -> str:
        looked = len(self.found) + len(self.missing)
        text = (f"found {len(self.found)} of {looked} missing image{'s' * (looked != 1)} under {folder}: "
                f"{self.samples} sample{'s' * (self.samples != 1)} read from there now")
        if self.missing:
            text += f"; {len(self.missing)} still missing"
        return text

    def lines(self) -> list[str]:
        """A line per image still missing and per candidate refused."""
        return ([f"still missing: {path}" for path in self.missing]
                + [f"not the same image: {error}" for error in self.refused])


def relink_images(project, folder: str | Path, *, dry_run: bool = False) -> RelinkReport:
    """Look for the project's missing images under ``folder`` and read them from there from now
    on (unless ``dry_run``)."""
    folder = Path(os.path.abspath(folder))
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    report = RelinkReport()
    sources = project.sources()
    lost = [source for source in sources if not os.path.exists(source[0])]
    if not lost:
        return report
    tree = _Tree(folder, in_use={path for path, _, _ in sources})
    taken: set[tuple[str, str | None]] = set()
    for old in sorted({path for path, _, _ in lost}):
        wanted = [(series, shape) for path, series, shape in lost if path == old]
        new, refusal = _find(old, wanted, tree, project)
        if new is None:
            report.missing.append(old)
            if refusal is not None:
                report.refused.append(refusal)
            continue
        if any((new, series) in taken for series, _ in wanted):
            report.missing.append(old)  # found where another old image was found: not guessed
            continue
        taken.update((new, series) for series, _ in wanted)
        report.found[old] = new
    if report.found:
        fingerprints = {new: files.source_fingerprint(new) for new in report.found.values()}
        report.samples = project.count_samples_of(report.found) if dry_run else project.move_sources(
            {old: (new, fingerprints[new]) for old, new in report.found.items()})
    return report


class _Tree:
    """The files and folders under the folder searched, listed once; fingerprints on demand."""

    def __init__(self, root: Path, in_use: set[str]):
        self.root = root
        self.in_use = in_use  # images the project reads already: never another one's new place
        self.by_name: dict[str, list[str]] = {}
        self.paths: list[str] = [str(root)]
        for where, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(dirs) + sorted(n for n in names if not n.startswith(".")):
                path = os.path.join(where, name)
                self.paths.append(path)
                self.by_name.setdefault(name, []).append(path)
        self._fingerprints: dict[str, str | None] | None = None

    def by_fingerprint(self, fingerprint: str) -> list[str]:
        if len(self.paths) > FINGERPRINTS_AT_MOST:
            return []  # a home folder: reading the ends of every file would take minutes
        if self._fingerprints is None:
            self._fingerprints = {}
            for path in self.paths:
                try:
                    self._fingerprints[path] = files.source_fingerprint(path)
                except InputError:
                    self._fingerprints[path] = None
        return [p for p, f in self._fingerprints.items() if f == fingerprint and p not in self.in_use]


def _find(old: str, wanted: list[tuple[str | None, tuple[int, ...]]], tree: _Tree,
          project) -> tuple[str | None, InputError | None]:
    """The path ``old`` is found at under the tree, checked to hold the same image(s); or None and
    why the one candidate there was refused."""
    parts = Path(old).parts[1:]  # without the root ('/', a drive)
    candidates = [str(tree.root.joinpath(*parts[-k:])) for k in range(len(parts), 0, -1)]
    if tree.root.name == Path(old).name:
        candidates.append(str(tree.root))  # the folder chosen is the series' folder itself
    candidates = [c for c in candidates if os.path.exists(c) and c not in tree.in_use]
    if not candidates:
        candidates = [c for c in tree.by_name.get(Path(old).name, []) if c not in tree.in_use]
        if len(candidates) > 1:
            candidates = []  # several files of that name: not guessed
    if not candidates:
        recorded = project.source_fingerprint_recorded(old)
        candidates = tree.by_fingerprint(recorded)
    refusal = None
    for candidate in candidates[:3]:
        refusal = _differs(candidate, wanted)
        if refusal is None:
            return candidate, None
    return None, refusal


def _differs(candidate: str, wanted: list[tuple[str | None, tuple[int, ...]]]) -> InputError | None:
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
