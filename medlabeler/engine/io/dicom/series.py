"""Folders of DICOM: files grouped by series (SeriesInstanceUID), a series planned and read as one
volume, and the per-file descriptions a project scan shows.
"""

from __future__ import annotations

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
    _declared_slice_distance, _instance_number, _orientation, pixel_spacing, plan_stack, _position,
    _StackProblem,
)
from medlabeler.engine.io.dicom.multiframe import file_shape, read_dicom_file
from medlabeler.engine.io.image import Image


@dataclass
class SeriesPlan:
    """A header-only description of one series stacked into a volume."""

    where: Path
    files: list[Path]  # in stack order
    headers: list[Dataset]  # in stack order
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray | None
    how: str
    spacing_source: str
    series_uid: str | None = None


def plan_series(where: Path, files: Sequence[Path], headers: Sequence[Dataset]) -> SeriesPlan:
    """Check that single-frame files form one regular volume; ImageReadError naming `where`."""
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
        )
    except _StackProblem as problem:
        raise ImageReadError(where, f"{_series_label(first, len(files))}: {problem}") from None
    rows, cols = sizes.pop()
    return SeriesPlan(
        where=where,
        files=[files[i] for i in geometry.order],
        headers=[headers[i] for i in geometry.order],
        shape=(len(files), rows, cols),
        spacing=(geometry.spacing_z, *spacing_yx),
        affine=geometry.affine,
        how=geometry.how,
        spacing_source=spacing_source,
        series_uid=str(first.get("SeriesInstanceUID", "")) or None,
    )


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
        ds = _read_full(path)
        plane = colour_to_grey(path, ds) if colour else grey_values(path, ds, _decode(path, ds))
        if plane.shape != (rows, cols):
            raise ImageReadError(path, f"decoded pixel array of shape {plane.shape}, expected {(rows, cols)}")
        volume[index] = plane
        if first_full is None:
            first_full = ds
    assert first_full is not None
    metadata = metadata_of(first_full)
    metadata.update(files=n, slice_order=plan.how, spacing_source=plan.spacing_source)
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


@dataclass
class SeriesGroup:
    """The image files of one SeriesInstanceUID found under a folder."""

    series_uid: str | None
    single: list[tuple[Path, Dataset]] = field(default_factory=list)
    multi: list[tuple[Path, Dataset]] = field(default_factory=list)

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
) -> dict[str, SeriesGroup]:
    """Read headers and group image files by SeriesInstanceUID (a file without one is its own
    group, keyed by its path). Unreadable files go to `errors` (or are skipped). With
    wanted_uid, files known (from earlier reads) to belong elsewhere are not parsed again."""
    groups: dict[str, SeriesGroup] = {}
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
            continue
        _remember_uid(path, uid)
        if wanted_uid is not None and uid != wanted_uid:
            continue
        key = uid or f"file:{path}"
        group = groups.setdefault(key, SeriesGroup(series_uid=uid or None))
        (group.multi if n_frames(ds) > 1 else group.single).append((path, ds))
    return groups


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
        group = chosen[0]
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


def read_group(folder: Path, group: SeriesGroup) -> Image:
    if group.single:
        if len(group.single) == 1:
            return read_dicom_file(group.single[0][0])
        paths = [p for p, _ in group.single]
        plan = plan_series(folder, paths, [h for _, h in group.single])
        return read_series(plan)
    if len(group.multi) == 1:
        return read_dicom_file(group.multi[0][0])
    raise ImageReadError(
        folder, f"the series is stored as {len(group.multi)} multi-frame files; open one file at a time"
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
            if not group.single and len(group.multi) > 1:
                images.extend(read_dicom_file(p) for p in members)
            else:
                images.append(read_group(common_folder(members), group))
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


def describe_dicom_files(files: Sequence[Path]) -> tuple[list[DicomSource], list[ImageReadError]]:
    """Sources among DICOM files without decoding pixels: headers, decoder and size checks.
    Never raises: a file or series that fails unexpectedly becomes one error naming it."""
    errors: list[ImageReadError] = []
    groups = group_series(files, errors)
    sources: list[DicomSource] = []
    for group in groups.values():
        good_single: list[tuple[Path, Dataset]] = []
        for path, ds in group.single + group.multi:
            try:
                check_decoder(path, ds)
                problem = truncation_problem(path, ds)
                if problem:
                    raise ImageReadError(path, problem)
                if n_frames(ds) > 1:
                    shape, spacing = file_shape(ds)
                    sources.append(_source(path, ds, shape, spacing))
                else:
                    good_single.append((path, ds))
            except ImageReadError as exc:
                errors.append(exc)
            except Exception as exc:  # noqa: BLE001 - one damaged file never drops the others
                errors.append(unexpected_error(path, exc))
        if not good_single:
            continue
        paths = [p for p, _ in good_single]
        where = paths[0] if len(paths) == 1 else common_folder(paths)
        try:
            if len(good_single) == 1:
                shape, spacing = file_shape(good_single[0][1])
                sources.append(_source(where, good_single[0][1], shape, spacing))
            else:
                plan = plan_series(where, paths, [h for _, h in good_single])
                sources.append(replace(_source(where, plan.headers[0], plan.shape, plan.spacing), n_files=len(paths)))
        except ImageReadError as exc:
            exc.files = len(paths)
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - one damaged series never drops the others
            error = unexpected_error(where, exc)
            error.files = len(paths)
            errors.append(error)
    return sources, errors


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
