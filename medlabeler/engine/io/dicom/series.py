"""Folders of DICOM: files grouped by series (SeriesInstanceUID), a series planned and read as one
volume, and the per-file descriptions a project scan shows.

A series with slices missing from its regular grid (a file deleted, or one that cannot be read) is
read with blank slices at the missing positions, so that its geometry stays right; copies of an
instance already read (the same SOPInstanceUID) are read once. Both are said in a note.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from medlabeler.engine.errors import ImageReadError, unexpected_error
from medlabeler.engine.io.dicom.decoders import (
    check_decoder, colour_to_grey, _decode, grey_values, _is_monochrome1, truncation_problem, window_of,
)
from medlabeler.engine.io.dicom.files import (
    description_of, identifiers_of, is_colour, is_image, looks_like_dicom, metadata_of, modality_of,
    n_frames, no_image_problem, _read_full, read_header, silently_skipped,
)
from medlabeler.engine.io.dicom.geometry import (
    _declared_slice_distance, DUPLICATE_TOLERANCE_MM, _instance_number, _normal, _orientation, pixel_spacing,
    plan_stack, _position, slice_position, _StackProblem,
)
from medlabeler.engine.io.dicom.multiframe import file_shape, read_dicom_file
from medlabeler.engine.io.image import Image


@dataclass
class SeriesPlan:
    """A header-only description of one series stacked into a volume.

    files and headers have one entry per volume index (stack order). A slice missing from the
    regular grid (its index in `missing`) has no file (None) and a stand-in header: a copy of a
    neighbour's, at the missing position, with an empty SOPInstanceUID and no InstanceNumber."""

    where: Path
    files: list[Path | None]  # in stack order
    headers: list[Dataset]  # in stack order
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray | None
    how: str
    spacing_source: str
    series_uid: str | None = None
    missing: list[int] = field(default_factory=list)  # volume indices with no file: read as blank

    @property
    def n_files(self) -> int:
        return sum(1 for f in self.files if f is not None)


def plan_series(where: Path, files: Sequence[Path], headers: Sequence[Dataset]) -> SeriesPlan:
    """Check that single-frame files form one regular volume; ImageReadError naming `where`.
    Gaps that are whole multiples of the slice distance become missing slices (`missing`)."""
    if not files:
        raise ImageReadError(where, "holds no DICOM images")
    first = headers[0]
    sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
    if len(sizes) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise ImageReadError(where, f"{_series_label(first, len(files))}: images differ in size (rows x columns: {shown})")
    if len({is_colour(h) for h in headers}) > 1:
        raise ImageReadError(where, f"{_series_label(first, len(files))} mixes colour and greyscale images")
    spacings = [pixel_spacing(h, 0) for h in headers]
    spacing_yx, spacing_source = spacings[0]
    if any(np.max(np.abs(np.subtract(s, spacing_yx))) > 1e-3 * max(spacing_yx) for s, _ in spacings):
        shown = ", ".join(sorted({f"{s[0]:g}x{s[1]:g}" for s, _ in spacings}))
        raise ImageReadError(where, f"{_series_label(first, len(files))}: images differ in pixel spacing ({shown} mm)")
    try:
        geometry = plan_stack(
            [_position(h, 0) for h in headers],
            [_orientation(h, 0) for h in headers],
            spacing_yx,
            [_instance_number(h) for h in headers],
            _declared_slice_distance(first),
            strict=True,
            fill_gaps=True,
        )
    except _StackProblem as problem:
        text = f"{_series_label(first, len(files))}: {problem}"
        if problem.pairs:
            shown = ", ".join(f"{_relative(files[a], where)} and {_relative(files[b], where)}"
                              for a, b in problem.pairs[:_LISTED])
            text += f": {shown}" + (f" and {len(problem.pairs) - _LISTED} more" if len(problem.pairs) > _LISTED else "")
        raise ImageReadError(where, text) from None
    rows, cols = sizes.pop()
    layout = geometry.layout()
    stand_ins: dict[int, Dataset] = {}
    below = layout[0]  # the first and last indices always hold a file
    for index, given in enumerate(layout):
        if given is None:
            stand_ins[index] = _stand_in(headers[below], geometry.position_of(index))  # type: ignore[index]
        else:
            below = given
    return SeriesPlan(
        where=where,
        files=[None if i is None else files[i] for i in layout],
        headers=[stand_ins[index] if i is None else headers[i] for index, i in enumerate(layout)],
        shape=(geometry.size, rows, cols),
        spacing=(geometry.spacing_z, *spacing_yx),
        affine=geometry.affine,
        how=geometry.how,
        spacing_source=spacing_source,
        series_uid=str(first.get("SeriesInstanceUID", "")) or None,
        missing=list(geometry.missing),
    )


class MissingSliceHeader(Dataset):
    """The header standing in for a slice missing from a series. It names no instance (an empty
    SOPInstanceUID, no SOPClassUID): whatever would reference it as an image (a DICOM-SEG frame)
    fails with an AttributeError saying why, rather than referencing nothing."""

    def __getattr__(self, name: str):  # noqa: ANN204 - Dataset's own signature
        if name == "SOPClassUID":
            raise AttributeError("a slice missing from the series (shown blank) has no DICOM image to reference")
        return super().__getattr__(name)


def _stand_in(neighbour: Dataset, position: np.ndarray | None) -> Dataset:
    """The header of a missing slice: its neighbour's, at the missing position, naming no instance."""
    ds = MissingSliceHeader(copy.deepcopy(neighbour))
    ds.SOPInstanceUID = ""
    for keyword in ("SOPClassUID", "InstanceNumber", "SliceLocation"):
        if keyword in ds:
            delattr(ds, keyword)
    if position is not None:
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
    return ds


def _series_label(ds: Dataset, n_files: int | None = None) -> str:
    """``series 3 'T1 axial' (5 files)``: what tells two series of one folder apart."""
    number = str(ds.get("SeriesNumber", "") or "").strip()
    description = description_of(ds)
    label = "series" + (f" {number}" if number else "") + (f" '{description}'" if description else "")
    return label + (f" ({n_files} files)" if n_files else "")


def read_series(plan: SeriesPlan) -> Image:
    """Decode the files of a planned series and stack them (each slice rescaled on its own)."""
    n, rows, cols = plan.shape
    colour = is_colour(plan.headers[0])
    volume = np.empty((n, rows, cols), dtype=np.float32)
    first_full: Dataset | None = None
    for index, path in enumerate(plan.files):
        if path is None:
            continue  # a missing slice: filled below
        ds = _read_full(path)
        plane = colour_to_grey(path, ds) if colour else grey_values(path, ds, _decode(path, ds))
        if plane.shape != (rows, cols):
            raise ImageReadError(path, f"decoded pixel array of shape {plane.shape}, expected {(rows, cols)}")
        volume[index] = plane
        if first_full is None:
            first_full = ds
    assert first_full is not None
    if plan.missing:
        volume[plan.missing] = blank_value(volume, plan.missing, modality_of(first_full))
    metadata = metadata_of(first_full)
    metadata.update(files=plan.n_files, slice_order=plan.how, spacing_source=plan.spacing_source)
    if plan.missing:
        metadata["blank_slices"] = list(plan.missing)  # missing from the series, filled blank
    if colour:
        metadata["converted_to_grey"] = True
    if _is_monochrome1(first_full) and not colour:
        metadata["inverted_monochrome1"] = True
    if plan.affine is not None:
        metadata["space"] = "LPS"
    return Image(
        array=volume,
        spacing=tuple(float(s) for s in plan.spacing),
        affine=plan.affine,
        modality=modality_of(first_full),
        window=None if colour else window_of(first_full, 0),
        metadata=metadata,
        identifiers=identifiers_of(first_full, series=True),
        source=str(plan.where),
    )


# The value of a CT slice filled in for a missing one: air, in Hounsfield units.
AIR_HU = -1024.0


def blank_value(volume: np.ndarray, missing: Sequence[int], modality: str) -> float:
    """What a missing slice is filled with: the series' minimum, or air (-1024 HU) for a CT whose
    minimum lies below it (the padding outside a scanner's field of view, -2048 or -3024)."""
    gone = set(missing)
    # slice by slice, NaN ignored (fmin), no copy of a whole CT
    lows = [float(np.fmin.reduce(volume[k], axis=None)) for k in range(volume.shape[0]) if k not in gone]
    lowest = min((v for v in lows if np.isfinite(v)), default=0.0)
    return max(lowest, AIR_HU) if modality == "CT" and lowest < AIR_HU else lowest


@dataclass
class SeriesGroup:
    """The image files of one SeriesInstanceUID found under a folder.

    duplicates: (copy, the file kept) for files holding an instance (SOPInstanceUID) already found."""

    series_uid: str | None
    single: list[tuple[Path, Dataset]] = field(default_factory=list)
    multi: list[tuple[Path, Dataset]] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)

    @property
    def description(self) -> str:
        items = self.single or self.multi
        return description_of(items[0][1]) if items else ""


def candidate_files(folder: Path) -> list[Path]:
    """Files under folder (recursively, hidden entries skipped) that look like DICOM."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.is_file() and looks_like_dicom(path):
                found.append(path)
    return found


# path -> (mtime_ns, size, SeriesInstanceUID or a marker): lets read_image(folder, series_uid)
# skip parsing the headers of other series in a big flat folder on every call.
_UID_CACHE: dict[str, tuple[int, int, str]] = {}


_UID_CACHE_LIMIT = 500_000


_NOT_IMAGE = "\0not-an-image"


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _cached_uid(path: Path) -> str | None:
    entry = _UID_CACHE.get(str(path))
    if entry is None or entry[:2] != _file_key(path):
        return None
    return entry[2]


def _remember_uid(path: Path, uid: str) -> None:
    key = _file_key(path)
    if key is None:
        return
    if len(_UID_CACHE) >= _UID_CACHE_LIMIT:
        _UID_CACHE.clear()
    _UID_CACHE[str(path)] = (*key, uid)


def group_series(
    files: Sequence[Path],
    errors: list[ImageReadError] | None = None,
    *,
    wanted_uid: str | None = None,
    ignored: list[Path] | None = None,
) -> dict[str, SeriesGroup]:
    """Read headers and group image files by SeriesInstanceUID (a file without one is its own
    group, keyed by its path). Unreadable files go to `errors` (or are skipped); DICOM files that
    hold no image and need no report (a structured report, a plan) go to `ignored`. With
    wanted_uid, files known (from earlier reads) to belong elsewhere are not parsed again.

    A file holding an instance already found in its series with the same bytes (a plain copy) is
    listed in the group's `duplicates`, not read twice. Other files of one instance (stored in
    another encoding, cut short, or slices an anonymiser gave one SOPInstanceUID) are kept: the
    checks of each report them, or the series' duplicate positions do."""
    groups: dict[str, SeriesGroup] = {}
    instances: dict[tuple[str, ...], Path] = {}
    for path in files:
        if wanted_uid is not None:
            known = _cached_uid(path)
            if known is not None and known != wanted_uid:
                continue
        try:
            ds = read_header(path)
            image = is_image(ds)
            if not image and not silently_skipped(ds):
                raise ImageReadError(path, no_image_problem(ds))
            uid = str(ds.get("SeriesInstanceUID", "") or "") if image else ""
        except ImageReadError as exc:
            if errors is not None:
                errors.append(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - one damaged header never stops the others
            if errors is not None:
                errors.append(unexpected_error(path, exc))
            continue
        if not image:
            _remember_uid(path, _NOT_IMAGE)
            if ignored is not None:
                ignored.append(path)
            continue
        _remember_uid(path, uid)
        if wanted_uid is not None and uid != wanted_uid:
            continue
        key = f"file:{path}" if not uid or stands_alone(ds) else uid
        group = groups.setdefault(key, SeriesGroup(series_uid=uid or None))
        instance = _copy_key(uid or key, ds)
        if instance is not None:
            kept = instances.get(instance)
            if kept is not None and _same_bytes(path, kept):
                group.duplicates.append((path, kept))
                continue
            instances.setdefault(instance, path)
        (group.multi if n_frames(ds) > 1 else group.single).append((path, ds))
    return groups


#: Modalities whose single-frame images are pictures of their own, never slices of a volume: the
#: PA and lateral views of a chest X-ray share a series, as do the stills of an ultrasound exam
#: or the photos of a skin lesion (projection radiography, mammography, dental, angiography and
#: fluoroscopy stills, ultrasound, photography, microscopy).
PLANAR_MODALITIES = frozenset({"CR", "DX", "MG", "IO", "PX", "RG", "XA", "RF", "US", "XC", "OP", "ES", "GM",
                               "SM", "BMD", "DOC"})


def stands_alone(ds: Dataset) -> bool:
    """A single-frame image that is a 2D sample of its own even when its series holds others."""
    return n_frames(ds) == 1 and str(ds.get("Modality", "") or "").upper() in PLANAR_MODALITIES


def _copy_key(series_key: str, ds: Dataset) -> tuple[str, ...] | None:
    """What two plain copies of one instance share: series, SOPInstanceUID, transfer syntax and
    file size (None without a SOPInstanceUID). Files sharing it are compared byte for byte."""
    instance = str(ds.get("SOPInstanceUID", "") or "").strip()
    if not instance:
        return None
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") if meta is not None else "")
    return series_key, instance, syntax, str(getattr(ds, "_medlabeler_file_size", None))


def _placed_instance(series_key: str, ds: Dataset) -> tuple | None:
    """What two encodings of one instance share: series, SOPInstanceUID, position and size (None
    without a UID or a position). An anonymiser that gives every slice one UID leaves their
    positions apart, so those slices are kept."""
    instance = str(ds.get("SOPInstanceUID", "") or "").strip()
    position = ds.get("ImagePositionPatient")
    if not instance or position is None or n_frames(ds) > 1:
        return None
    try:
        where = tuple(round(float(v), 3) for v in position)
    except (TypeError, ValueError):
        return None
    # echoes or time points at one place that an anonymiser gave one UID differ in these
    told_apart = tuple(str(ds.get(k, "")) for k in ("InstanceNumber", "EchoTime", "AcquisitionNumber",
                                                    "TemporalPositionIdentifier"))
    return "placed", series_key, instance, where, ds.get("Rows"), ds.get("Columns"), told_apart


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes: only then is one a copy of the other. Some
    anonymisers give every slice of a series one SOPInstanceUID, and uncompressed slices share
    their size, so the key alone would drop real slices."""
    import filecmp

    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


@dataclass
class _Usable:
    """The files of a series that can be read, and those that cannot (with their headers)."""

    single: list[tuple[Path, Dataset]] = field(default_factory=list)
    multi: list[tuple[Path, Dataset]] = field(default_factory=list)
    rejected: list[tuple[Path, Dataset, ImageReadError]] = field(default_factory=list)
    encodings: list[tuple[Path, Path]] = field(default_factory=list)  # (ignored, kept): one instance twice

    def duplicates(self, group: SeriesGroup) -> list[tuple[Path, Path]]:
        """(ignored, kept) for plain copies and for instances stored again in another encoding."""
        return group.duplicates + self.encodings


def usable_files(group: SeriesGroup) -> _Usable:
    """Split a group's files into readable ones and those whose decoder is missing or whose pixel
    data is cut short (header-only checks). Reading a series and describing it use the same
    split, so both give the same volume. A readable file holding an instance already read at the
    same place (stored in another encoding) is read once."""
    usable = _Usable()
    placed: dict[tuple, Path] = {}
    for path, ds in group.single + group.multi:
        try:
            check_decoder(path, ds)
            problem = truncation_problem(path, ds)
            if problem:
                raise ImageReadError(path, problem)
        except ImageReadError as exc:
            usable.rejected.append((path, ds, exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one damaged file never drops the others
            usable.rejected.append((path, ds, unexpected_error(path, exc)))
            continue
        key = _placed_instance(group.series_uid or str(path), ds)
        if key is not None and key in placed:
            usable.encodings.append((path, placed[key]))
            continue
        if key is not None:
            placed[key] = path
        (usable.multi if n_frames(ds) > 1 else usable.single).append((path, ds))
    return usable


def common_folder(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def read_dicom_folder(folder: Path, series_uid: str | None = None) -> Image:
    """The one series in folder (or the series `series_uid`), stacked into a volume."""
    files = candidate_files(folder)
    if not files:
        raise ImageReadError(folder, "holds no DICOM files")
    unreadable: list[ImageReadError] = []
    groups = group_series(files, unreadable, wanted_uid=series_uid)
    if series_uid is not None:
        chosen = [g for g in groups.values() if g.series_uid == series_uid]
        if not chosen:
            raise ImageReadError(folder, "holds no DICOM series with the requested SeriesInstanceUID")
        # images that stand alone now (X-ray views) were stacked as a volume by an older import: a
        # project made then reads its series as it was made
        group = chosen[0] if len(chosen) == 1 else SeriesGroup(
            series_uid, single=[f for g in chosen for f in g.single], multi=[f for g in chosen for f in g.multi],
            duplicates=[f for g in chosen for f in g.duplicates])
    else:
        if not groups:
            detail = f"; {len(unreadable)} file(s) could not be read" if unreadable else ""
            raise ImageReadError(folder, f"holds no DICOM images{detail}")
        if len(groups) > 1:
            listed = "; ".join(
                f"'{g.description or 'no description'}' ({len(g.single) + len(g.multi)} files)"
                for g in groups.values()
            )
            raise ImageReadError(
                folder,
                f"holds {len(groups)} DICOM series ({listed}); choose one with series_uid "
                "(scan_sources lists them)",
            )
        group = next(iter(groups.values()))
    return read_group(folder, group)


def read_group(folder: Path, group: SeriesGroup, usable: _Usable | None = None) -> Image:
    """The series of a group as one Image: files that cannot be read are left out (as a scan
    leaves them out), their positions read as blank slices when they leave a gap. `usable`: the
    group's `usable_files`, when the caller has them already."""
    usable = usable_files(group) if usable is None else usable
    if not usable.single and not usable.multi:
        raise usable.rejected[0][2]
    if usable.single:
        if len(usable.single) == 1:
            return read_dicom_file(usable.single[0][0])
        paths = [p for p, _ in usable.single]
        plan = plan_series(folder, paths, [h for _, h in usable.single])
        image = read_series(plan)
        if usable.rejected:
            image.metadata["unreadable_files"] = len(usable.rejected)
        if duplicates := usable.duplicates(group):
            image.metadata["duplicate_files"] = len(duplicates)
        return image
    if len(usable.multi) == 1:
        return read_dicom_file(usable.multi[0][0])
    raise ImageReadError(
        folder, f"the series is stored as {len(usable.multi)} multi-frame files; open one file at a time"
    )


def read_dicom_paths(paths: Sequence[Path]) -> tuple[list[Image], list[ImageReadError]]:
    """Every series found in files and folders (one Image per series); errors collected."""
    files: list[Path] = []
    for path in paths:
        files.extend(candidate_files(path) if path.is_dir() else [path])
    errors: list[ImageReadError] = []
    groups = group_series(files, errors)
    images: list[Image] = []
    for group in groups.values():
        members = [p for p, _ in group.single] or [p for p, _ in group.multi]
        try:
            usable = usable_files(group)
            errors.extend(exc for _, _, exc in usable.rejected)  # the files the group leaves out
            if not usable.single and not usable.multi:
                continue
            if not usable.single and len(usable.multi) > 1:
                images.extend(read_dicom_file(p) for p, _ in usable.multi)
            else:
                images.append(read_group(common_folder(members), group, usable))
        except ImageReadError as exc:
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - one damaged series never drops the others
            errors.append(unexpected_error(common_folder(members), exc))
    return images, errors


@dataclass
class DicomSource:
    """Header-only facts about one readable DICOM source (a file or a series folder)."""

    path: Path
    series_uid: str | None
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    modality: str
    patient_id: str | None
    description: str
    n_files: int = 1
    blank_slices: tuple[int, ...] = ()  # slices missing from the series, read as blank
    duplicates: int = 0  # files holding an instance already read, ignored
    notes: tuple[str, ...] = ()  # what a user should know about how it was read


def describe_dicom_files(
    files: Sequence[Path], ignored: list[Path] | None = None
) -> tuple[list[DicomSource], list[ImageReadError]]:
    """Sources among DICOM files without decoding pixels: headers, decoder and size checks.
    Never raises: a file or series that fails unexpectedly becomes one error naming it.
    DICOM files without an image that need no report go to `ignored`."""
    errors: list[ImageReadError] = []
    groups = group_series(files, errors, ignored=ignored)
    sources: list[DicomSource] = []
    for group in groups.values():
        usable = usable_files(group)
        duplicates = usable.duplicates(group)
        errors.extend(exc for _, _, exc in usable.rejected)
        first_of_group = len(sources)
        for path, ds in usable.multi:
            try:
                shape, spacing = file_shape(ds)
                sources.append(_source(path, ds, shape, spacing))
            except ImageReadError as exc:
                errors.append(exc)
            except Exception as exc:  # noqa: BLE001 - one damaged file never drops the others
                errors.append(unexpected_error(path, exc))
        good_single = usable.single
        if not good_single:
            if len(sources) > first_of_group:
                sources[first_of_group] = _with_duplicates(sources[first_of_group], duplicates, usable.multi[0][1])
            continue
        paths = [p for p, _ in good_single]
        where = paths[0] if len(paths) == 1 else common_folder(paths)
        try:
            if len(good_single) == 1:
                shape, spacing = file_shape(good_single[0][1])
                sources.append(_with_duplicates(_source(where, good_single[0][1], shape, spacing), duplicates,
                                                good_single[0][1]))
            else:
                plan = plan_series(where, paths, [h for _, h in good_single])
                source = replace(_source(where, plan.headers[0], plan.shape, plan.spacing), n_files=len(paths))
                if plan.missing:
                    source = replace(source, blank_slices=tuple(plan.missing),
                                     notes=(missing_note(plan, usable.rejected),))
                sources.append(_with_duplicates(source, duplicates, plan.headers[0]))
        except ImageReadError as exc:
            exc.files = len(paths)
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - one damaged series never drops the others
            error = unexpected_error(where, exc)
            error.files = len(paths)
            errors.append(error)
    return sources, errors


def missing_note(plan: SeriesPlan, rejected: Sequence[tuple[Path, Dataset, ImageReadError]] = ()) -> str:
    """What a user reads about a series read with blank slices: where they are, and which
    unreadable files sat there (a file named, never a patient)."""
    first = next(h for h, f in zip(plan.headers, plan.files) if f is not None)
    n = len(plan.missing)
    where_text = _positions_text(plan, plan.missing)
    indices = ", ".join(str(i) for i in plan.missing[:_LISTED]) + (", ..." if n > _LISTED else "")
    text = (f"{plan.where}: {_series_label(first, plan.n_files)}: {n} slice{'s' * (n != 1)} missing at "
            f"{where_text} (slice {'indices' if n != 1 else 'index'} {indices} of {plan.shape[0]}), "
            f"shown blank")
    there = _files_at(plan, rejected)
    if there:
        shown = ", ".join(f"{_relative(path, plan.where)} ({exc.problem})" for path, exc in there[:_LISTED])
        more = f" and {len(there) - _LISTED} more" if len(there) > _LISTED else ""
        text += f"; the file{'s' * (len(there) != 1)} that {'were' if len(there) != 1 else 'was'} there " \
                f"{'are' if len(there) != 1 else 'is'} unreadable: {shown}{more}"
    else:
        text += "; no file holds them (deleted, or not copied?)" if n != 1 else \
                "; no file holds it (deleted, or not copied?)"
    return text


_LISTED = 10


def _positions_text(plan: SeriesPlan, indices: Sequence[int]) -> str:
    """``z=12.5, 15 mm``: the missing slices' coordinate on the patient axis closest to the slice
    normal (z for axial slices), else the index when the series has no geometry."""
    if plan.affine is None:
        return "unknown positions"
    step = plan.affine[:3, 0]
    axis = int(np.argmax(np.abs(step)))
    values = [float(slice_position(plan.affine, i)[axis]) for i in indices]
    shown = ", ".join(f"{round(v, 2):g}" for v in values[:_LISTED]) + (", ..." if len(values) > _LISTED else "")
    return f"{'xyz'[axis]}={shown} mm"


def _files_at(
    plan: SeriesPlan, rejected: Sequence[tuple[Path, Dataset, ImageReadError]]
) -> list[tuple[Path, ImageReadError]]:
    """The unreadable files whose header puts them at a missing slice."""
    if plan.affine is None or not rejected:
        return []
    iop = _orientation(plan.headers[0], 0)
    if iop is None:
        return []
    normal = _normal(iop)
    spots = [float(slice_position(plan.affine, i) @ normal) for i in plan.missing]
    tolerance = max(DUPLICATE_TOLERANCE_MM, 0.25 * abs(float(plan.spacing[0])))
    found = []
    for path, ds, exc in rejected:
        position = _position(ds, 0)
        if position is not None and any(abs(float(position @ normal) - spot) <= tolerance for spot in spots):
            found.append((path, exc))
    return found


def _relative(path: Path, where: Path) -> str:
    try:
        return path.relative_to(where).as_posix()
    except ValueError:
        return str(path)


def duplicates_note(where: Path, duplicates: list[tuple[Path, Path]], first: Dataset, n_files: int) -> str:
    """``5 duplicate files of instances already read, ignored``, naming a few of them."""
    n = len(duplicates)
    shown = ", ".join(f"{_relative(copy_, where)} repeats {_relative(kept, where)}"
                      for copy_, kept in duplicates[:3])
    more = ", ..." if n > 3 else ""
    return (f"{where}: {_series_label(first, n_files)}: {n} duplicate file{'s' * (n != 1)} of instances already "
            f"read (the same SOPInstanceUID), ignored: {shown}{more}")


def _with_duplicates(source: DicomSource, duplicates: list[tuple[Path, Path]], first: Dataset) -> DicomSource:
    if not duplicates:
        return source
    note = duplicates_note(source.path if source.path.is_dir() else source.path.parent, duplicates, first,
                           source.n_files)
    return replace(source, duplicates=len(duplicates), notes=(*source.notes, note))


def _source(path: Path, ds: Dataset, shape: tuple[int, ...], spacing: Sequence[float]) -> DicomSource:
    patient = str(ds.get("PatientID", "") or "").strip()
    uid = str(ds.get("SeriesInstanceUID", "") or "") or None
    return DicomSource(
        path=path,
        series_uid=uid,
        shape=tuple(int(s) for s in shape),
        spacing=tuple(float(s) for s in spacing),
        modality=modality_of(ds),
        patient_id=patient or None,
        description=display_name(ds, path),
    )


def display_name(ds: Dataset, path: Path) -> str:
    """SeriesDescription, else modality and series number, else the file name; never a folder
    name (folders are often named after the patient)."""
    description = description_of(ds)
    if description:
        return description
    number = str(ds.get("SeriesNumber", "") or "").strip()
    if number:
        return f"{modality_of(ds)} series {number}"
    return path.name if path.is_file() else f"{modality_of(ds)} series"
