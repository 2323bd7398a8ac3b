"""read_image: one entry point for every supported format."""

from __future__ import annotations

from pathlib import Path

from medlabeler.engine.errors import ImageReadError, InputError, unexpected_error
from medlabeler.engine.io.image import Image
from medlabeler.engine.io.sources import classify

SUPPORTED = "DICOM, NIfTI (.nii, .nii.gz), PNG, JPEG, TIFF or BMP"


def read_image(path: str | Path, series_uid: str | None = None) -> Image:
    """Read a file (DICOM single or multi-frame, NIfTI, PNG/JPEG/TIFF/BMP) or a folder holding
    DICOM (series_uid picks the series; None means the folder must hold exactly one).

    Raises ImageReadError (MissingDecoderError for a compressed DICOM without its decoder) naming
    the file or folder and the problem; never another exception type for a bad file.
    """
    try:
        return _read(Path(path), series_uid)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged files make libraries raise anything
        raise unexpected_error(path, exc) from exc


def _read(target: Path, series_uid: str | None) -> Image:
    if not target.exists():
        raise ImageReadError(target, "does not exist")
    if target.is_dir():
        from medlabeler.engine.io.dicom import read_dicom_folder

        return read_dicom_folder(target, series_uid)
    try:
        kind = classify(target)
    except OSError as exc:
        raise ImageReadError(target, f"could not be read ({exc})") from exc
    if kind == "nifti":
        from medlabeler.engine.io.nifti import read_nifti

        return read_nifti(target)
    if kind == "raster":
        from medlabeler.engine.io.raster import read_raster

        return read_raster(target)
    from medlabeler.engine.io.dicom import read_dicom_file

    try:
        image = read_dicom_file(target)
    except ImageReadError as exc:
        if kind is None:
            raise ImageReadError(target, f"unsupported file type; expected {SUPPORTED}") from exc
        raise
    if series_uid is not None and image.identifiers.get("SeriesInstanceUID") != series_uid:
        raise ImageReadError(target, "does not belong to the requested series (SeriesInstanceUID differs)")
    return image
