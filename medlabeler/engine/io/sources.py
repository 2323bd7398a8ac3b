"""Finding readable sources in a file or folder tree without decoding any pixels."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from medlabeler.engine.errors import ImageReadError, InputError

_IGNORED_NAMES = {"DICOMDIR"}


@dataclass(frozen=True)
class SourceInfo:
    """One readable image, volume or DICOM series, described from headers only.

    path: the file, or the folder holding a DICOM series (``read_image(path, series_uid)``).
    shape / spacing: as ``read_image`` will return them. group: a non-identifying key (sha1 of
    the PatientID, else of the series UID or the file's path below the scanned folder) so one
    patient never spans splits.
    label_hint: the parent folder name of a PNG/JPEG/TIFF/BMP, or of a 2D DICOM file, below the
    scanned folder (ISIC-style ``class_name/*.png``, ``class_name/*.dcm``). description: series
    description or file name, for lists. n_files: how many files it is made of (a DICOM series:
    one per slice, the ones read).
    blank_slices: slice indices of a DICOM series that no file holds (a slice missing from its
    regular grid), read as blank. duplicates: files ignored as copies of instances already read.
    notes: what a user should be told about how it is read (missing slices, duplicates).
    """

    path: str
    series_uid: str | None
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    modality: str
    is_volume: bool
    group: str
    label_hint: str | None = None
    description: str = ""
    n_files: int = 1
    blank_slices: tuple[int, ...] = ()
    duplicates: int = 0
    notes: tuple[str, ...] = ()


def group_key(text: str) -> str:
    """First 16 hex digits of sha1(text): stable, and not the identifier itself."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def classify(path: Path) -> str | None:
    """'nifti', 'raster', 'dicom' or None (not something medlabeler reads)."""
    from medlabeler.engine.io.dicom import looks_like_dicom
    from medlabeler.engine.io.nifti import is_nifti
    from medlabeler.engine.io.raster import is_raster

    if path.name in _IGNORED_NAMES:
        return None
    if is_nifti(path):
        return "nifti"
    if is_raster(path):
        return "raster"
    if looks_like_dicom(path):
        return "dicom"
    return None


def _walk(root: Path, errors: list[InputError]) -> list[Path]:
    files: list[Path] = []

    def on_error(exc: OSError) -> None:
        errors.append(InputError(getattr(exc, "filename", None) or root, f"folder could not be listed ({exc.strerror or exc})"))

    for folder, dirs, names in os.walk(root, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                files.append(Path(folder) / name)
    return files


def scan_sources(
    path: str | Path, ignored: list[Path] | None = None
) -> tuple[list[SourceInfo], list[InputError]]:
    """Readable sources under a file or folder, and one InputError per unreadable one.

    Reads headers only: DICOM without pixel data (series checked for a regular geometry,
    compressed syntaxes checked for an installed decoder), the NIfTI header, the image size
    through Pillow/tifffile. Never raises for a bad file. Files of a folder that hold no image
    and need no report (a readme, a DICOMDIR, a DICOM structured report; hidden files aside) are
    appended to `ignored`.
    """
    root = Path(os.path.abspath(path))
    errors: list[InputError] = []
    if not root.exists():
        return [], [InputError(root, "does not exist")]
    walked = root.is_dir()
    candidates = _walk(root, errors) if walked else [root]
    dicom_files: list[Path] = []
    infos: list[SourceInfo] = []
    guessed = False
    for file in candidates:
        try:
            kind = classify(file)
        except OSError as exc:
            errors.append(InputError(file, f"could not be read ({exc})"))
            continue
        guessed = kind is None and not walked
        if guessed:
            kind = "dicom"  # a single file given explicitly: let the DICOM reader judge it
        if kind is None and ignored is not None:
            ignored.append(file)
        if kind == "dicom":
            dicom_files.append(file)
        elif kind == "nifti":
            _add(infos, errors, file, lambda f=file: _nifti_info(f, _stable_key(f, root)))
        elif kind == "raster":
            hint = file.parent.name if walked and file.parent != root else None
            _add(infos, errors, file, lambda f=file, h=hint: _raster_info(f, h, _stable_key(f, root)))
    if dicom_files:
        dicom_infos, dicom_errors = _dicom_infos(dicom_files, root if walked else None, ignored)
        if not walked and guessed:  # "not a DICOM file" alone read oddly for notes.txt
            dicom_errors = [ImageReadError(e.path, f"not an image medlabeler reads (PNG, JPEG, TIFF, BMP, NIfTI, "
                                                   f"DICOM): {e.problem}")
                            if isinstance(e, InputError) and e.problem.startswith("not a DICOM file") else e
                            for e in dicom_errors]
        infos.extend(dicom_infos)
        errors.extend(dicom_errors)
    if not walked and not infos and not errors:
        errors.append(ImageReadError(root, "holds no image"))
    infos.sort(key=lambda info: (info.path, info.series_uid or ""))
    return infos, errors


def _add(infos: list[SourceInfo], errors: list[InputError], file: Path, make) -> None:  # noqa: ANN001
    try:
        infos.append(make())
    except InputError as exc:
        errors.append(exc)
    except Exception as exc:  # noqa: BLE001 - never raise for one bad file
        errors.append(ImageReadError(file, f"unexpected error while scanning ({type(exc).__name__}: {exc})"))


def _stable_key(file: Path, root: Path) -> str:
    """The file's path below the scanned folder (its name when a file was given): the same
    wherever the data lives, so a project's splits do not depend on where it was installed."""
    if file.resolve() == root.resolve():
        return file.name
    try:
        return file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return file.name


def _nifti_info(file: Path, key: str) -> SourceInfo:
    from medlabeler.engine.io.nifti import describe_nifti

    shape, spacing = describe_nifti(file)
    return SourceInfo(
        path=str(file),
        series_uid=None,
        shape=shape,
        spacing=spacing,
        modality="OT",
        is_volume=len(shape) == 3,
        group=group_key(key),
        description=file.name,
    )


def _raster_info(file: Path, hint: str | None, key: str) -> SourceInfo:
    from medlabeler.engine.io.raster import describe_raster

    shape, colour = describe_raster(file)
    volume = len(shape) == 3 and not colour
    return SourceInfo(
        path=str(file),
        series_uid=None,
        shape=shape,
        spacing=(1.0,) * (3 if volume else 2),
        modality="RGB" if colour else "OT",
        is_volume=volume,
        group=group_key(key),
        label_hint=hint,
        description=file.name,
    )


def _dicom_hint(path: Path, is_volume: bool, root: Path | None) -> str | None:
    """The class folder of a 2D DICOM file below the scanned folder (``class_name/*.dcm``).
    Volumes get none: their folders are series or patients, not classes."""
    if root is None or is_volume or not path.is_file() or path.parent == root:
        return None
    return path.parent.name


def _dicom_infos(
    files: list[Path], root: Path | None = None, ignored: list[Path] | None = None
) -> tuple[list[SourceInfo], list[InputError]]:
    from medlabeler.engine.io.dicom import describe_dicom_files

    try:
        sources, errors = describe_dicom_files(files, ignored)  # reports bad files and series one by one
    except Exception as exc:  # noqa: BLE001 - a last resort: never raise from a scan, name every file
        problem = f"could not be scanned (unexpected {type(exc).__name__} while scanning DICOM: {exc})"
        return [], [ImageReadError(file, problem) for file in files]
    infos = []
    for source in sources:
        colour = len(source.shape) == 3 and source.shape[-1] == 3 and len(source.spacing) == 2
        key = source.patient_id or source.series_uid or str(source.path.resolve())
        is_volume = len(source.shape) == 3 and not colour
        infos.append(
            SourceInfo(
                path=str(source.path),
                series_uid=source.series_uid,
                shape=source.shape,
                spacing=source.spacing,
                modality=source.modality,
                is_volume=is_volume,
                group=group_key(key),
                label_hint=_dicom_hint(source.path, is_volume, root),
                description=source.description,
                n_files=source.n_files,
                blank_slices=source.blank_slices,
                duplicates=source.duplicates,
                notes=source.notes,
            )
        )
    return infos, list(errors)
