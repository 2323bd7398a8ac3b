"""DICOM reading with pydicom: single files, multi-frame files and folders of series.

Geometry follows the DICOM patient coordinate system (LPS, millimetres). Array axes are
(Z, Y, X) = (slice, row, column): ``spacing = (slice distance, PixelSpacing[0], PixelSpacing[1])``
and ``affine`` maps an index (z, y, x, 1) to a patient position. A 2D image gets the affine of a
one-slice volume (index (0, y, x)).

Slices of a series are ordered by ImagePositionPatient projected on the slice normal (the cross
product of the ImageOrientationPatient row and column directions); the slice distance is the
median distance between neighbours, never SliceThickness. Without positions, InstanceNumber
orders the slices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medlabeler.engine.errors import ImageReadError, MissingDecoderError
from medlabeler.engine.io.image import Image
from medlabeler.engine.io.reader import unexpected_error

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Slice positions closer than this (mm) along the normal count as the same position.
DUPLICATE_TOLERANCE_MM = 0.01
# Neighbour distances may differ from their median by this much before a series counts as uneven.
SPACING_TOLERANCE_MM = 0.02
SPACING_TOLERANCE_REL = 0.02
ORIENTATION_TOLERANCE = 1e-3

# Attributes that may identify a person or a visit: kept in Image.identifiers only.
IDENTIFIER_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "ContentDate",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "StationName",
    "DeviceSerialNumber",
)

# Facts about the acquisition that identify no one: kept in Image.metadata.
METADATA_KEYWORDS = (
    "Modality",
    "SeriesDescription",
    "StudyDescription",
    "ProtocolName",
    "BodyPartExamined",
    "SeriesNumber",
    "ImageType",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "KVP",
    "SliceThickness",
    "SpacingBetweenSlices",
    "PatientPosition",
    "PhotometricInterpretation",
    "BitsStored",
    "RescaleType",
    "FrameTime",
    "SOPClassUID",
)

# pip packages that bring a decoder, per compressed transfer syntax.
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}
_ALL_DECODERS = "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls"

# Attributes a scan uses, converted while the header is read: pydicom converts values lazily, so a
# damaged value (unknown VR, odd byte count ...) is found here, and its file reported on its own,
# instead of failing the series it belongs to. (Most are converted by the scan anyway.)
_SCANNED_TAGS = frozenset(
    tag_for_keyword(keyword)
    for keyword in (
        "SOPClassUID", "SeriesInstanceUID", "PatientID", "Modality", "SeriesDescription", "SeriesNumber",
        "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
        "BitsAllocated", "BitsStored", "PixelRepresentation", "PlanarConfiguration", "PixelSpacing",
        "ImagerPixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber",
        "SliceThickness", "SpacingBetweenSlices",
    )
)

# SOP classes that hold no image by design (reports, RT plans, presentation states, DICOMDIR ...):
# a scan passes over them silently. Any other file without Rows/Columns is reported.
_NON_IMAGE_SOP_WORDS = ("SR Storage", "Presentation State", "RT Plan", "RT Structure", "RT Beams",
                        "RT Treatment", "Encapsulated", "Waveform", "Key Object", "Directory",
                        "Raw Data", "Spectroscopy", "Registration", "Segmentation", "Measurement")


# ----------------------------------------------------------------------------- headers


def looks_like_dicom(path: Path) -> bool:
    """True for a DICOM file name suffix or the 'DICM' marker after the 128-byte preamble."""
    if path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_header(path: Path) -> Dataset:
    """The dataset without pixel data; ImageReadError if the file is not DICOM."""
    try:
        ds, stop = _parse_header(path, force=False)
    except InvalidDicomError:
        try:
            ds, stop = _parse_header(path, force=True)
        except Exception as exc:  # noqa: BLE001 - any parser failure means "not DICOM"
            raise ImageReadError(path, f"not a DICOM file ({exc})") from exc
        if "SOPClassUID" not in ds and "Rows" not in ds:
            raise ImageReadError(path, "not a DICOM file (no DICOM marker and no image attributes)")
    except Exception as exc:  # noqa: BLE001 - OSError, EOFError, bad values ...
        raise ImageReadError(path, f"DICOM header could not be read ({exc})") from exc
    try:
        for tag in _SCANNED_TAGS.intersection(ds.keys()):
            ds[tag]  # noqa: B018 - converts the raw value
        _ensure_transfer_syntax(ds)
    except Exception as exc:  # noqa: BLE001 - NotImplementedError, BytesLengthException ...
        raise ImageReadError(
            path, f"DICOM header could not be read: a value is damaged ({type(exc).__name__}: {exc})"
        ) from exc
    ds._medlabeler_pixel_offset = stop  # where the pixel data element starts
    try:
        ds._medlabeler_file_size = os.path.getsize(path)
    except OSError:
        ds._medlabeler_file_size = None
    return ds


def _parse_header(path: Path, *, force: bool) -> tuple[Dataset, int]:
    with open(path, "rb") as handle:
        ds = pydicom.dcmread(handle, stop_before_pixels=True, force=force)
        return ds, handle.tell()


def _read_full(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"DICOM file could not be read ({exc})") from exc
    if not is_image(ds):  # the header alone parsed, so what follows it is damaged
        raise ImageReadError(path, "pixel data is missing, truncated or damaged")
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a file meta header still decode: infer the syntax from how they were read."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(uid)) if uid else None


def is_image(ds: Dataset) -> bool:
    """Whether the dataset carries an image (not a report, plan, DICOMDIR ...)."""
    if str(ds.get("SOPClassUID", "")) == DICOMDIR_SOP_CLASS:
        return False
    return bool(ds.get("Rows")) and bool(ds.get("Columns"))


def no_image_problem(ds: Dataset) -> str:
    """Why a header read by read_header gives no image: cut short, a zero size, or a non-image class."""
    size = getattr(ds, "_medlabeler_file_size", None)
    offset = getattr(ds, "_medlabeler_pixel_offset", None)
    sop = _sop_name(ds)
    if "Rows" in ds and "Columns" in ds:
        return f"holds no image (Rows {ds.get('Rows')!r}, Columns {ds.get('Columns')!r}; SOP class {sop})"
    if offset is not None and size is not None and offset >= size and _expects_image(ds):
        return (
            f"holds no image: the DICOM header is truncated (the file ends after {size} bytes, "
            f"before Rows and Columns; SOP class {sop})"
        )
    return f"holds no image (SOP class {sop})"


def _expects_image(ds: Dataset) -> bool:
    """True unless the SOP class is one that holds no image by design."""
    uid = ds.get("SOPClassUID")
    if not uid:
        return True
    name = UID(str(uid)).name
    if str(uid) == DICOMDIR_SOP_CLASS:
        return False
    return not any(word in name for word in _NON_IMAGE_SOP_WORDS)


def silently_skipped(ds: Dataset) -> bool:
    """A header without an image that a scan need not report: a report, plan, DICOMDIR ...
    (a file cut short, with a zero size, or of an image class, is reported)."""
    if "Rows" in ds or "Columns" in ds or "PixelData" in ds:
        return False
    return not _expects_image(ds)


def n_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def is_colour(ds: Dataset) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    return int(ds.get("SamplesPerPixel", 1) or 1) > 1 or photometric.startswith("PALETTE")


def known_transfer_syntax(path: Path, ds: Dataset) -> UID | None:
    """The transfer syntax, or ImageReadError when its UID is not a transfer syntax pydicom knows."""
    uid = transfer_syntax(ds)
    if uid is not None and not uid.is_transfer_syntax:
        raise ImageReadError(path, f"unknown transfer syntax {uid} (not a DICOM transfer syntax UID)")
    return uid


def check_decoder(path: Path, ds: Dataset) -> None:
    """MissingDecoderError when the pixel data is compressed and no decoder is installed;
    ImageReadError for an unknown transfer syntax."""
    uid = known_transfer_syntax(path, ds)
    if uid is None or not uid.is_compressed:
        return
    from pydicom.pixels import get_decoder

    package = _DECODER_PACKAGES.get(str(uid), _ALL_DECODERS)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise MissingDecoderError(
            path, f"pixel data uses transfer syntax {uid.name} ({uid}), which pydicom cannot decode"
        ) from exc
    if not decoder.is_available:
        raise MissingDecoderError(path, _missing_decoder_text(uid, package))


def _missing_decoder_text(uid: UID, package: str) -> str:
    return (
        f"pixel data is compressed with transfer syntax {uid.name} ({uid}) and no decoder for it "
        f"is installed; install one with: pip install {package} "
        f"(or pip install \"medlabeler[dicom-codecs]\")"
    )


def truncation_problem(path: Path, ds: Dataset) -> str | None:
    """For uncompressed pixel data: a problem text if the file is shorter than its pixels."""
    uid = known_transfer_syntax(path, ds)
    if uid is None or uid.is_compressed or uid.is_deflated:
        return None
    offset = getattr(ds, "_medlabeler_pixel_offset", None)
    if offset is None:
        return None
    size = getattr(ds, "_medlabeler_file_size", None)
    if size is not None and offset >= size:  # the header reaches the end: no pixel data element
        return "has no pixel data (the file ends after its header)"
    try:
        from pydicom.pixels.utils import get_expected_length

        expected = get_expected_length(ds, "bytes")
        available = os.path.getsize(path) - offset - 8  # 8: the smallest element header
    except Exception:  # noqa: BLE001 - attributes missing: the pixel read will tell
        return None
    if available < expected:
        return (
            f"file is truncated: its pixel data needs {expected} bytes but at most "
            f"{max(available, 0)} follow the header"
        )
    return None


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a DICOM value."""
    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return None
    return str(value)


def identifiers_of(ds: Dataset, *, series: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword in IDENTIFIER_KEYWORDS:
        if series and keyword == "SOPInstanceUID":
            continue
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value)
        if text:
            out[keyword] = text
    return out


def metadata_of(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {"format": "DICOM"}
    for keyword in METADATA_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        plain = _plain(value)
        if plain is not None:
            out[keyword] = plain
    uid = transfer_syntax(ds)
    if uid is not None:
        out["TransferSyntax"] = uid.name
    return out


def description_of(ds: Dataset) -> str:
    return str(ds.get("SeriesDescription", "") or "").strip()


def modality_of(ds: Dataset) -> str:
    return str(ds.get("Modality", "") or "OT").strip() or "OT"


# ----------------------------------------------------------------------------- geometry


def _group_item(ds: Dataset, frame: int | None, keyword: str) -> Dataset | None:
    """First item of a functional-group macro for a frame: per-frame first, then shared."""
    if frame is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame and frame < len(per_frame):
            seq = per_frame[frame].get(keyword)
            if seq:
                return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(keyword)
        if seq:
            return seq[0]
    return None


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        return None
    return out


def _position(ds: Dataset, frame: int | None) -> np.ndarray | None:
    item = _group_item(ds, frame, "PlanePositionSequence")
    if item is not None and item.get("ImagePositionPatient") is not None:
        return _floats(item.get("ImagePositionPatient"), 3)
    return _floats(ds.get("ImagePositionPatient"), 3)


def _orientation(ds: Dataset, frame: int | None) -> np.ndarray | None:
    item = _group_item(ds, frame, "PlaneOrientationSequence")
    if item is not None and item.get("ImageOrientationPatient") is not None:
        iop = _floats(item.get("ImageOrientationPatient"), 6)
    else:
        iop = _floats(ds.get("ImageOrientationPatient"), 6)
    if iop is None:
        return None
    if np.linalg.norm(np.cross(iop[:3], iop[3:])) < 0.5:  # not two orthogonal unit vectors
        return None
    return iop


def pixel_spacing(ds: Dataset, frame: int | None = 0) -> tuple[tuple[float, float], str]:
    """(row spacing, column spacing) in mm, and which attribute gave it."""
    item = _group_item(ds, frame, "PixelMeasuresSequence")
    for source, name in ((item, "PixelSpacing"), (ds, "PixelSpacing"), (ds, "ImagerPixelSpacing")):
        if source is None:
            continue
        values = _floats(source.get(name), 2)
        if values is not None and np.all(values > 0):
            return (float(values[0]), float(values[1])), name
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        if region.get("PhysicalUnitsXDirection") == 3 and region.get("PhysicalUnitsYDirection") == 3:
            dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
            if dx and dy and float(dx) > 0 and float(dy) > 0:  # centimetres
                return (float(dy) * 10.0, float(dx) * 10.0), "SequenceOfUltrasoundRegions"
    return (1.0, 1.0), "unknown"


def _declared_slice_distance(ds: Dataset) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        item = _group_item(ds, 0, "PixelMeasuresSequence")
        for source in (item, ds):
            if source is None:
                continue
            try:
                value = float(source.get(keyword) or 0)
            except (TypeError, ValueError):
                continue
            if value > 0 and np.isfinite(value):
                return value
    return None


def _affine(iop: np.ndarray, origin: np.ndarray, step: np.ndarray, spacing_yx: tuple[float, float]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = iop[3:] * spacing_yx[0]  # down the rows: column direction cosine
    affine[:3, 2] = iop[:3] * spacing_yx[1]  # along a row: row direction cosine
    affine[:3, 3] = origin
    return affine


def _normal(iop: np.ndarray) -> np.ndarray:
    normal = np.cross(iop[:3], iop[3:])
    return normal / np.linalg.norm(normal)


def affine_2d(ds: Dataset, spacing_yx: tuple[float, float]) -> np.ndarray | None:
    iop, ipp = _orientation(ds, 0), _position(ds, 0)
    if iop is None or ipp is None:
        return None
    thickness = _declared_slice_distance(ds) or 1.0
    return _affine(iop, ipp, _normal(iop) * thickness, spacing_yx)


class _StackProblem(Exception):
    pass


@dataclass
class StackGeometry:
    """How slices or frames make a volume: their order, slice distance and affine."""

    order: list[int]
    spacing_z: float
    affine: np.ndarray | None
    how: str


def plan_stack(
    positions: Sequence[np.ndarray | None],
    orientations: Sequence[np.ndarray | None],
    spacing_yx: tuple[float, float],
    instance_numbers: Sequence[int | None],
    declared_z: float | None,
    *,
    strict: bool,
) -> StackGeometry:
    """Order slices in space. strict: raise _StackProblem for an irregular stack; else keep
    the given order and note why."""
    n = len(positions)
    try:
        if all(p is not None for p in positions) and all(o is not None for o in orientations):
            return _stack_by_position(positions, orientations, spacing_yx)  # type: ignore[arg-type]
        numbers = list(instance_numbers)
        if all(v is not None for v in numbers):
            if len(set(numbers)) != n:
                raise _StackProblem(
                    "slices carry no ImagePositionPatient and their InstanceNumbers repeat, "
                    "so their order is unknown"
                )
            order = sorted(range(n), key=lambda i: numbers[i])  # type: ignore[arg-type,return-value]
            return StackGeometry(order, declared_z or 1.0, None, "InstanceNumber")
        if strict:
            raise _StackProblem("slices carry neither ImagePositionPatient nor InstanceNumber")
        return StackGeometry(list(range(n)), declared_z or 1.0, None, "frame order")
    except _StackProblem as problem:
        if strict:
            raise
        return StackGeometry(list(range(n)), declared_z or 1.0, None, f"frame order ({problem})")


def _stack_by_position(
    positions: Sequence[np.ndarray], orientations: Sequence[np.ndarray], spacing_yx: tuple[float, float]
) -> StackGeometry:
    iops = np.stack(orientations)
    distinct = _count_distinct(iops)
    if distinct > 1:
        raise _StackProblem(
            f"mixed orientation: the slices have {distinct} different ImageOrientationPatient "
            "values (a localizer or several planes in one series?)"
        )
    iop = iops[0]
    normal = _normal(iop)
    ipps = np.stack(positions)
    along = ipps @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    n = len(order)
    if n == 1:
        return StackGeometry(order, 1.0, _affine(iop, ipps[0], normal, spacing_yx), "ImagePositionPatient")
    gaps = np.diff(along[order])
    duplicates = int(np.sum(gaps < DUPLICATE_TOLERANCE_MM))
    if duplicates:
        raise _StackProblem(
            f"duplicate slice positions: {duplicates} slice(s) share a position along the slice "
            "normal with another (copied files, or several stacks or time points in one series?)"
        )
    spacing = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_REL * spacing)
    if np.any(np.abs(gaps - spacing) > tolerance):
        seen = sorted({round(float(g), 3) for g in gaps})
        shown = ", ".join(f"{g:g}" for g in seen[:8]) + (", ..." if len(seen) > 8 else "")
        raise _StackProblem(
            f"uneven slice spacing: distances between neighbouring slices of {shown} mm "
            f"(median {spacing:g} mm); a slice may be missing"
        )
    step = (ipps[order[-1]] - ipps[order[0]]) / (n - 1)
    return StackGeometry(order, spacing, _affine(iop, ipps[order[0]], step, spacing_yx), "ImagePositionPatient")


def _count_distinct(iops: np.ndarray) -> int:
    groups: list[np.ndarray] = []
    for iop in iops:
        if not any(np.max(np.abs(iop - g)) <= ORIENTATION_TOLERANCE for g in groups):
            groups.append(iop)
    return len(groups)


def _instance_number(ds: Dataset) -> int | None:
    try:
        value = ds.get("InstanceNumber")
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def frame_geometry(ds: Dataset) -> tuple[StackGeometry, tuple[float, float], str]:
    """Frame order and geometry of a multi-frame file (lenient: irregular stacks keep file order)."""
    frames = n_frames(ds)
    spacing_yx, spacing_source = pixel_spacing(ds, 0)
    has_groups = ds.get("PerFrameFunctionalGroupsSequence") is not None
    if has_groups:
        positions = [_position(ds, i) for i in range(frames)]
        orientations = [_orientation(ds, i) for i in range(frames)]
    else:
        positions, orientations = [None] * frames, [None] * frames
    geometry = plan_stack(
        positions, orientations, spacing_yx, [None] * frames, _declared_slice_distance(ds), strict=False
    )
    return geometry, spacing_yx, spacing_source


# ----------------------------------------------------------------------------- series plans


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


def file_shape(ds: Dataset) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Array shape and spacing that reading this one file gives (header only)."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = n_frames(ds)
    if frames == 1:
        spacing_yx, _ = pixel_spacing(ds, 0)
        shape: tuple[int, ...] = (rows, cols, 3) if is_colour(ds) else (rows, cols)
        return shape, spacing_yx
    geometry, spacing_yx, _ = frame_geometry(ds)
    return (frames, rows, cols), (geometry.spacing_z, *spacing_yx)


# ----------------------------------------------------------------------------- pixels


_LUMA_PHOTOMETRICS = ("YBR_FULL", "YBR_FULL_422")
_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _decode(path: Path, ds: Dataset, *, luma: bool = False) -> np.ndarray:
    """Decoded stored values. luma: for YBR_FULL(_422) colour return the Y channel only (the
    BT.601 grey), skipping the costly conversion to RGB."""
    check_decoder(path, ds)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(path, "holds no pixel data")
    options: dict[str, Any] = {}
    if luma:
        options["as_rgb"] = False
    uid = transfer_syntax(ds)
    if uid is not None and str(uid) == _JPEG_BASELINE:
        from pydicom.pixels import get_decoder

        if "pillow" in get_decoder(uid).available_plugins:  # several times faster for 8-bit JPEG
            options["decoding_plugin"] = "pillow"
    try:
        if options:
            ds.pixel_array_options(**options)
        arr = ds.pixel_array
        return arr[..., 0] if luma else arr
    except RuntimeError as exc:
        uid = transfer_syntax(ds)
        if "missing dependencies" in str(exc) and uid is not None:
            raise MissingDecoderError(
                path, _missing_decoder_text(uid, _DECODER_PACKAGES.get(str(uid), _ALL_DECODERS))
            ) from exc
        raise ImageReadError(path, f"pixel data could not be decoded ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - truncated data, bad attributes ...
        raise ImageReadError(path, f"pixel data could not be decoded ({exc})") from exc


def _rescale(ds: Dataset, frame: int | None) -> tuple[float, float]:
    item = _group_item(ds, frame, "PixelValueTransformationSequence")
    for source in (item, ds):
        if source is None:
            continue
        slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
        if slope is not None or intercept is not None:
            try:
                slope_f = 1.0 if slope in (None, "") else float(slope)
                intercept_f = 0.0 if intercept in (None, "") else float(intercept)
            except (TypeError, ValueError):
                continue
            if slope_f == 0 or not np.isfinite(slope_f) or not np.isfinite(intercept_f):
                continue
            return slope_f, intercept_f
    return 1.0, 0.0


def _stored_range(ds: Dataset) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _is_monochrome1(ds: Dataset) -> bool:
    return str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"


def _inversion_sum(ds: Dataset, frame: int | None) -> float:
    """lo + hi of the physical value range: MONOCHROME1 values v become (lo + hi) - v."""
    lo, hi = _stored_range(ds)
    slope, intercept = _rescale(ds, frame)
    return (lo + hi) * slope + 2 * intercept


def grey_values(path: Path, ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """Physical float32 values: modality LUT or rescale slope/intercept (per frame), then
    MONOCHROME1 inverted so that higher always means brighter."""
    frames = n_frames(ds)
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        try:
            out = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"modality LUT could not be applied ({exc})") from exc
    else:
        out = np.asarray(raw, dtype=np.float32)
        if frames > 1 and out.ndim == 3:
            for i in range(frames):
                slope, intercept = _rescale(ds, i)
                if (slope, intercept) != (1.0, 0.0):
                    out[i] = out[i] * np.float32(slope) + np.float32(intercept)
        else:
            slope, intercept = _rescale(ds, 0)
            if (slope, intercept) != (1.0, 0.0):
                out = out * np.float32(slope) + np.float32(intercept)
    if _is_monochrome1(ds):
        if frames > 1 and out.ndim == 3:
            for i in range(frames):
                out[i] = np.float32(_inversion_sum(ds, i)) - out[i]
        else:
            out = np.float32(_inversion_sum(ds, 0)) - out
    return np.ascontiguousarray(out, dtype=np.float32)


def rgb_values(path: Path, ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3): palettes applied, YBR already converted by pydicom, alpha dropped."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    arr = raw
    maximum: float | None = None
    if photometric.startswith("PALETTE"):
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(raw, ds)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"palette colour table could not be applied ({exc})") from exc
        maximum = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else None
    elif arr.dtype.kind in "ui":
        maximum = 2.0 ** int(ds.get("BitsStored", 8) or 8) - 1
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype == np.uint8 and (maximum is None or maximum == 255):
        return np.ascontiguousarray(arr)
    if maximum is None:  # float samples
        maximum = float(arr.max()) if arr.size and arr.max() > 1 else 1.0
    scaled = np.clip(np.rint(arr.astype(np.float64) * (255.0 / maximum)), 0, 255)
    return np.ascontiguousarray(scaled.astype(np.uint8))


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of uint8 RGB, float32 in 0..255."""
    out = np.empty(rgb.shape[:-1], dtype=np.float32)
    flat_in, flat_out = rgb.reshape(-1, rgb.shape[-2], 3), out.reshape(-1, rgb.shape[-2])
    for i in range(flat_in.shape[0]):  # row by row: no full float copy of the colour array
        row = flat_in[i].astype(np.float32)
        flat_out[i] = row[:, 0] * 0.299 + row[:, 1] * 0.587 + row[:, 2] * 0.114
    return out


def colour_to_grey(path: Path, ds: Dataset) -> np.ndarray:
    """Grey float32 frames of a colour dataset (luma)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric in _LUMA_PHOTOMETRICS and int(ds.get("BitsAllocated", 8) or 8) == 8:
        return np.ascontiguousarray(_decode(path, ds, luma=True), dtype=np.float32)
    return rgb_to_grey(rgb_values(path, ds, _decode(path, ds)))


def window_of(ds: Dataset, frame: int | None = 0) -> tuple[float, float] | None:
    item = _group_item(ds, frame, "FrameVOILUTSequence")
    for source in (item, ds):
        if source is None:
            continue
        centre, width = source.get("WindowCenter"), source.get("WindowWidth")
        if centre is None or width is None or centre == "" or width == "":
            continue
        try:
            c = float(centre[0] if isinstance(centre, MultiValue) else centre)
            w = float(width[0] if isinstance(width, MultiValue) else width)
        except (TypeError, ValueError, IndexError):
            continue
        if w > 0 and np.isfinite(c) and np.isfinite(w):
            if _is_monochrome1(ds):
                c = _inversion_sum(ds, frame) - c
            return (c, w)
    return None


# ----------------------------------------------------------------------------- readers


def read_dicom_file(path: Path) -> Image:
    """One DICOM file: a 2D image, or a volume for a multi-frame file."""
    header = read_header(path)
    if not is_image(header):
        raise ImageReadError(path, no_image_problem(header))
    ds = _read_full(path)
    frames = n_frames(ds)
    metadata = metadata_of(ds)
    metadata["frames"] = frames
    colour = is_colour(ds)
    raw = colour_to_grey(path, ds) if colour and frames > 1 else _decode(path, ds)
    if frames == 1:
        spacing_yx, spacing_source = pixel_spacing(ds, 0)
        if raw.ndim == (4 if colour else 3) and raw.shape[0] == 1:
            raw = raw[0]
        array = rgb_values(path, ds, raw) if colour else grey_values(path, ds, raw)
        spacing: tuple[float, ...] = spacing_yx
        affine = affine_2d(ds, spacing_yx)
        window = None if colour else window_of(ds, 0)
    else:
        geometry, spacing_yx, spacing_source = frame_geometry(ds)
        if colour:
            array = raw
            metadata["converted_to_grey"] = True
        else:
            array = grey_values(path, ds, raw)
        if array.ndim != 3 or array.shape[0] != frames:
            raise ImageReadError(path, f"expected {frames} frames but decoded an array of shape {raw.shape}")
        window = None if colour else window_of(ds, geometry.order[0])
        if geometry.order != list(range(frames)):
            array = np.ascontiguousarray(array[geometry.order])
        spacing = (geometry.spacing_z, *spacing_yx)
        affine = geometry.affine
        metadata["slice_order"] = geometry.how
    metadata["spacing_source"] = spacing_source
    if _is_monochrome1(ds) and not colour:
        metadata["inverted_monochrome1"] = True
    if affine is not None:
        metadata["space"] = "LPS"
    return Image(
        array=array,
        spacing=tuple(float(s) for s in spacing),
        affine=affine,
        modality=modality_of(ds),
        window=window,
        metadata=metadata,
        identifiers=identifiers_of(ds),
        source=str(path),
    )


def _sop_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    return UID(str(uid)).name if uid else "unknown"


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


# ----------------------------------------------------------------------------- folders


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


# ----------------------------------------------------------------------------- scanning


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
