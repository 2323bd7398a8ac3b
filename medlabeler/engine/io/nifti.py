"""NIfTI reading with nibabel, reordered to the (Z, Y, X) array convention.

nibabel indexes voxels (i, j, k); the array here is the transpose, (k, j, i), so that axis 0
is the slice axis as for DICOM. Spacing follows (zooms[2], zooms[1], zooms[0]) and the affine
columns are permuted the same way. The affine is turned from NIfTI's RAS+ world into the DICOM
patient system (LPS) so that a NIfTI and the DICOM series it came from give the same geometry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medlabeler.engine.errors import ImageReadError
from medlabeler.engine.io.image import Image

NIFTI_SUFFIXES = (".nii", ".nii.gz")
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _load(path: Path) -> Any:
    import nibabel

    try:
        image = nibabel.load(str(path))
    except Exception as exc:  # noqa: BLE001 - ImageFileError, gzip errors, EOF ...
        raise ImageReadError(path, f"not a readable NIfTI file ({exc})") from exc
    if not hasattr(image, "dataobj") or not hasattr(image, "affine"):
        raise ImageReadError(path, "not a NIfTI image")
    return image


def _spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    """(i, j, k) or (i, j): trailing size-1 dimensions dropped; 4D and more refused."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 3:
        raise ImageReadError(
            path,
            f"is a {len(shape)}D image of shape {tuple(shape)}; only 2D and 3D images can be read "
            "(split the volumes first, e.g. with nibabel.funcs.four_to_three)",
        )
    if len(dims) < 2 or min(dims) < 1:
        raise ImageReadError(path, f"has an unusable shape {tuple(shape)}")
    return tuple(dims)


def _spacing(image: Any, ndim: int) -> tuple[float, ...]:
    zooms = [float(z) for z in image.header.get_zooms()[:ndim]]
    zooms += [1.0] * (ndim - len(zooms))
    zooms = [z if z > 0 and np.isfinite(z) else 1.0 for z in zooms]
    return tuple(reversed(zooms))


def describe_nifti(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Array shape and spacing that read_nifti gives, from the header alone."""
    image = _load(path)
    shape = _spatial_shape(path, tuple(int(n) for n in image.shape))
    if image.get_data_dtype().fields:
        raise ImageReadError(path, "holds RGB voxels, which are not supported; save one channel")
    return tuple(reversed(shape)), _spacing(image, len(shape))


def read_nifti(path: Path) -> Image:
    image = _load(path)
    shape = _spatial_shape(path, tuple(int(n) for n in image.shape))
    if image.get_data_dtype().fields:
        raise ImageReadError(path, "holds RGB voxels, which are not supported; save one channel")
    try:
        data = np.asanyarray(image.dataobj)  # scl_slope / scl_inter applied by nibabel
    except Exception as exc:  # noqa: BLE001 - truncated or damaged data
        raise ImageReadError(path, f"voxel data is truncated or damaged ({exc})") from exc
    data = np.asarray(data, dtype=np.float32).reshape(shape)
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise ImageReadError(path, f"holds {bad} NaN or infinite voxel values")
    ndim = len(shape)
    array = np.ascontiguousarray(data.transpose(tuple(reversed(range(ndim)))))
    affine = RAS_TO_LPS @ np.asarray(image.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
    header = image.header
    metadata: dict[str, Any] = {
        "format": "NIfTI",
        "datatype": str(image.get_data_dtype()),
        "space": "LPS",
    }
    for code in ("qform_code", "sform_code"):
        try:
            metadata[code] = int(header[code])
        except (KeyError, TypeError, ValueError):
            pass
    return Image(
        array=array,
        spacing=_spacing(image, ndim),
        affine=affine,
        modality="OT",
        window=_window(header),
        metadata=metadata,
        identifiers={},
        source=str(path),
    )


def _window(header: Any) -> tuple[float, float] | None:
    try:
        low, high = float(header["cal_min"]), float(header["cal_max"])
    except (KeyError, TypeError, ValueError):
        return None
    if np.isfinite(low) and np.isfinite(high) and high > low:
        return ((low + high) / 2.0, high - low)
    return None
