"""Makers of small real-format test files: DICOM series, NIfTI volumes, PNG/JPEG folders.

Import from tests: ``from tests.engine.io_fixtures import write_dicom_series, write_nifti, ...``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

MNI_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def mni_file(name: str = MNI_T1) -> Path:
    """A file shipped inside nilearn (found without importing nilearn, which is slow)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the IO tests need nilearn (pip install nilearn), which carries the MNI152 MRI")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.exists():
        raise RuntimeError(f"nilearn is installed but {path} is missing")
    return path


def mni_volume(step: int = 6) -> np.ndarray:
    """The MNI152 T1 brain MRI as a (Z, Y, X) float32 volume in 0..255, every `step`-th voxel."""
    return _mni_volume(step).copy()


@functools.lru_cache(maxsize=4)
def _mni_volume(step: int) -> np.ndarray:
    import nibabel

    data = np.asarray(nibabel.load(str(mni_file())).dataobj, dtype=np.float32)  # (i, j, k)
    return np.ascontiguousarray(data[::step, ::step, ::step].transpose(2, 1, 0))


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def write_dicom_series(
    folder: str | Path,
    volume: np.ndarray,
    spacing: Sequence[float] = (2.5, 1.0, 1.0),
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str = "PAT-0001",
    patient_name: str = "Doe^Jane",
    modality: str = "CT",
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    rescale: tuple[float, float] = (1.0, -1024.0),
    window: tuple[float, float] | None = (40.0, 400.0),
    series_description: str = "test series",
    series_number: int = 1,
    shuffle: bool = True,
    seed: int = 0,
    positions: Sequence[Sequence[float] | None] | None = None,
    orientations: Sequence[Sequence[float]] | None = None,
    instance_numbers: bool = True,
    prefix: str = "",
) -> list[Path]:
    """Write volume (Z, Y, X) as one uncompressed single-frame DICOM file per slice.

    Slice k sits at origin + k * spacing[0] * normal (normal = row x column direction) unless
    `positions` gives them (None entries leave ImagePositionPatient out). Stored values are
    round((value - intercept) / slope) as int16. Files are named in shuffled order (shuffle=True)
    so that file order says nothing about slice order. Returns the paths in slice order.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = np.asarray(volume)
    n, rows, cols = volume.shape
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    iop = np.asarray(orientation, dtype=np.float64)
    row_dir, col_dir = _unit(iop[:3]), _unit(iop[3:])
    normal = np.cross(row_dir, col_dir)
    slope, intercept = rescale
    sop_class = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}.get(
        modality, "1.2.840.10008.5.1.4.1.1.7"
    )
    names = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    paths: list[Path] = []
    for k in range(n):
        stored = np.rint((volume[k].astype(np.float64) - intercept) / slope)
        if stored.min() < -32768 or stored.max() > 32767:
            raise ValueError("volume values do not fit int16 with this rescale")
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}IM{int(names[k]):04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.AccessionNumber = "ACC123"
        ds.Modality = modality
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        if instance_numbers:
            ds.InstanceNumber = k + 1
        if positions is None:
            ipp = np.asarray(origin, dtype=np.float64) + k * spacing[0] * normal
        else:
            ipp = None if positions[k] is None else np.asarray(positions[k], dtype=np.float64)
        if ipp is not None:
            ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        slice_iop = iop if orientations is None else np.asarray(orientations[k], dtype=np.float64)
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in slice_iop]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[2]:g}"]
        ds.SliceThickness = "99"  # deliberately wrong: the reader must use positions
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        if window is not None:
            ds.WindowCenter = f"{window[0]:g}"
            ds.WindowWidth = f"{window[1]:g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.PixelData = stored.astype("<i2").tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_nifti(
    path: str | Path,
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    affine: np.ndarray | None = None,
    dtype: str | np.dtype | None = None,
) -> Path:
    """Write volume (Z, Y, X) so that read_image gives it back: nibabel's data is its transpose
    (i, j, k) = (X, Y, Z). affine (nibabel's RAS+, on (i, j, k)) defaults to the diagonal of the
    spacing, reversed to (i, j, k) order."""
    import nibabel

    volume = np.asarray(volume)
    data = volume.transpose(tuple(reversed(range(volume.ndim))))
    if dtype is not None:
        data = data.astype(dtype)
    if affine is None:
        affine = np.diag([*reversed([float(s) for s in spacing]), *([1.0] * (4 - volume.ndim))])
    image = nibabel.Nifti1Image(data, affine)
    zooms = list(reversed([float(s) for s in spacing]))
    image.header.set_zooms(zooms[: data.ndim])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(image, str(path))
    return path


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Grey (Y, X) uint8/uint16 or RGB(A) (Y, X, 3|4) uint8 as a PNG (or by suffix)."""
    from PIL import Image as PILImage

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.asarray(array)).save(path)
    return path


def make_isic_folder(
    root: str | Path,
    classes: dict[str, int],
    *,
    size: tuple[int, int] = (24, 32),
    seed: int = 0,
    jpeg_every: int = 3,
) -> dict[Path, str]:
    """An ISIC-style folder root/<class>/*.png|jpg of small RGB images; returns {file: class}."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    made: dict[Path, str] = {}
    for name, count in classes.items():
        for i in range(count):
            suffix = ".jpg" if jpeg_every and i % jpeg_every == jpeg_every - 1 else ".png"
            pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            made[write_png(root / name / f"{name}_{i:03d}{suffix}", pixels)] = name
    return made
