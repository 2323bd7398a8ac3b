"""DICOM files: recognising them, reading headers, what a file holds (image or not), its tags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medlabeler.engine.errors import ImageReadError


DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")


DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


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


# Objects with pixels that are not images to label: what a scan says when it passes over each.
_NOT_TO_LABEL = {
    "Segmentation Storage": "is a DICOM-SEG: labels, not an image to label (add them to a project of its "
                            "images with `medlabeler import-labels`)",
    "RT Dose Storage": "is an RT dose grid, not an image to label",
}


def _sop_class(ds: Dataset) -> str:
    """The SOP class UID, from the dataset or else its file meta (a DICOMDIR has it only there)."""
    uid = ds.get("SOPClassUID")
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return str(uid or "")


def _not_to_label(ds: Dataset) -> str | None:
    """What a dataset with pixels that is no image to label is (a SEG, a dose grid); None otherwise."""
    uid = _sop_class(ds)
    return _NOT_TO_LABEL.get(UID(uid).name) if uid else None


def is_image(ds: Dataset) -> bool:
    """Whether the dataset carries an image to label (not a report, plan, DICOMDIR, SEG, dose ...)."""
    if _sop_class(ds) == DICOMDIR_SOP_CLASS or _not_to_label(ds):
        return False
    return bool(ds.get("Rows")) and bool(ds.get("Columns"))


def no_image_problem(ds: Dataset) -> str:
    """Why a header read by read_header gives no image: cut short, a zero size, or a non-image class."""
    size = getattr(ds, "_medlabeler_file_size", None)
    offset = getattr(ds, "_medlabeler_pixel_offset", None)
    sop = _sop_name(ds)
    if what := _not_to_label(ds):
        return what
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
    uid = _sop_class(ds)
    if not uid:
        return True
    name = UID(uid).name
    if uid == DICOMDIR_SOP_CLASS:
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


def _sop_name(ds: Dataset) -> str:
    uid = _sop_class(ds)
    return UID(uid).name if uid else "unknown"
