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
MAX_VOXELS = 2**31  # a header claiming more voxels than this is refused before any allocation
# deflate never compresses better than about 1032:1, so a .nii.gz cannot hold more than this
# many bytes per compressed byte
MAX_GZIP_RATIO = 1100


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


def _check_data_size(path: Path, image: Any) -> None:
    """Refuse a header that claims more voxel bytes than the file holds, before nibabel
    allocates them: for .nii the file size, for .nii.gz the gzip ISIZE trailer (the
    uncompressed size modulo 2**32) and the best possible compression ratio."""
    voxels = 1
    for n in image.shape:
        voxels *= max(int(n), 0)
    if voxels > MAX_VOXELS:
        raise ImageReadError(
            path, f"header claims {voxels} voxels (shape {tuple(image.shape)}), more than the {MAX_VOXELS} "
            "that can be read; the header may be damaged"
        )
    try:
        offset = int(getattr(image.dataobj, "offset", None) or image.header.get_data_offset())
        itemsize = int(image.get_data_dtype().itemsize)
        size = path.stat().st_size
    except Exception as exc:  # noqa: BLE001 - damaged header fields
        raise ImageReadError(path, f"not a readable NIfTI file ({exc})") from exc
    expected = offset + voxels * itemsize
    if not path.name.lower().endswith(".gz"):
        if expected > size:
            raise ImageReadError(
                path, f"voxel data is truncated or damaged: the header needs {expected} bytes ({voxels} "
                f"voxels of {itemsize} bytes from offset {offset}) but the file holds {size}"
            )
        return
    if expected > size * MAX_GZIP_RATIO:
        raise ImageReadError(
            path, f"file is truncated or its header damaged: the header needs {expected} bytes "
            f"({voxels} voxels), more than {size} compressed bytes can hold"
        )
    if expected >= 2**32 or _gzip_size(path, expected) >= expected:
        return
    raise ImageReadError(
        path, f"compressed file is truncated: its header needs {expected} bytes ({voxels} voxels "
        f"of {itemsize} bytes from offset {offset}) but it decompresses to fewer"
    )


def _gzip_size(path: Path, expected: int) -> int:
    """The uncompressed size of a gzip file (at most `expected`): the ISIZE trailer when it
    agrees, else counted by decompressing in chunks (several gzip members, or damage)."""
    import gzip

    try:
        with open(path, "rb") as handle:
            handle.seek(-4, 2)
            trailer = int.from_bytes(handle.read(4), "little")
    except OSError:  # shorter than a gzip trailer
        return 0
    if trailer >= expected:
        return trailer
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while total < expected:
                chunk = stream.read(min(1 << 20, expected - total))
                if not chunk:
                    break
                total += len(chunk)
    except (OSError, EOFError, ValueError):  # corrupt or cut short: what came out so far
        pass
    return total


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
    _check_data_size(path, image)
    return tuple(reversed(shape)), _spacing(image, len(shape))


def read_nifti(path: Path) -> Image:
    image = _load(path)
    shape = _spatial_shape(path, tuple(int(n) for n in image.shape))
    if image.get_data_dtype().fields:
        raise ImageReadError(path, "holds RGB voxels, which are not supported; save one channel")
    _check_data_size(path, image)
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
    spacing = _spacing(image, ndim)
    header = image.header
    metadata: dict[str, Any] = {
        "format": "NIfTI",
        "datatype": str(image.get_data_dtype()),
        "space": "LPS",
    }
    ras, how = _finite_affine(image, spacing)
    if how:
        metadata["affine"] = how
    affine = RAS_TO_LPS @ ras[:, [2, 1, 0, 3]]
    for code in ("qform_code", "sform_code"):
        try:
            metadata[code] = int(header[code])
        except (KeyError, TypeError, ValueError):
            pass
    return Image(
        array=array,
        spacing=spacing,
        affine=affine,
        modality="OT",
        window=_window(header),
        metadata=metadata,
        identifiers={},
        source=str(path),
    )


def _finite_affine(image: Any, spacing: tuple[float, ...]) -> tuple[np.ndarray, str | None]:
    """nibabel's affine (sform, else qform, else zooms) in RAS+ voxel order (i, j, k), and a note
    when a damaged one (NaN or inf) was replaced: by the qform or sform if finite, else by the
    spacing alone."""
    affine = np.asarray(image.affine, dtype=np.float64)
    if affine.shape == (4, 4) and np.all(np.isfinite(affine)):
        return affine, None
    header = image.header
    for kind in ("qform", "sform"):
        try:
            code = int(header[f"{kind}_code"])
            other = np.asarray(getattr(header, f"get_{kind}")(), dtype=np.float64) if code > 0 else None
        except Exception:  # noqa: BLE001 - a damaged quaternion
            other = None
        if other is not None and other.shape == (4, 4) and np.all(np.isfinite(other)):
            return other, f"header affine not finite; the {kind} was used"
    zooms = list(reversed(spacing)) + [1.0] * (3 - len(spacing))
    return np.diag([*zooms, 1.0]), "header affine (sform/qform) not finite; an affine from the voxel spacing alone was used"


def _window(header: Any) -> tuple[float, float] | None:
    try:
        low, high = float(header["cal_min"]), float(header["cal_max"])
    except (KeyError, TypeError, ValueError):
        return None
    if np.isfinite(low) and np.isfinite(high) and high > low:
        return ((low + high) / 2.0, high - low)
    return None
