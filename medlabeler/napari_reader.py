"""napari reader contribution (npe2): DICOM files, DICOM folders (one layer per series), NIfTI.

PNG/TIFF/JPEG are left to napari's built-in readers: the manifest names only DICOM and NIfTI
suffixes, and folders (a "*" pattern made napari ask which reader should open every PNG, and fail
when it was this one). A DICOM file without a suffix opens with its folder. ``get_reader`` never raises: it returns
None for anything it will not read. The reader function raises ImageReadError with a message
naming the file and the problem, which napari shows to the user.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

LayerData = tuple[Any, dict[str, Any], str]
_MAX_FILES_PROBED = 2000  # when deciding whether a folder holds DICOM


def get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerData]] | None:
    """The reader function when every path is a DICOM file, a folder with DICOM, or NIfTI."""
    try:
        paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
        if paths and all(_claims(p) for p in paths):
            return read_layers
    except Exception:  # noqa: BLE001 - the reader contract: never raise from get_reader
        return None
    return None


def _claims(path: Path) -> bool:
    from medlabeler.engine.io.dicom import is_image, looks_like_dicom, read_header
    from medlabeler.engine.io.nifti import is_nifti

    if path.is_dir():
        return _folder_has_dicom(path)
    if not path.is_file():
        return False
    if is_nifti(path):
        from medlabeler.engine.io.nifti import describe_nifti

        describe_nifti(path)  # header only; raises for what we cannot read
        return True
    if not looks_like_dicom(path):
        return False
    return is_image(read_header(path))


def _folder_has_dicom(folder: Path) -> bool:
    from medlabeler.engine.io.dicom import looks_like_dicom

    probed = 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            if looks_like_dicom(Path(root) / name):
                return True
            probed += 1
            if probed >= _MAX_FILES_PROBED:
                return False
    return False


def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """Image layer data for each readable series / file; errors of some series become warnings."""
    from medlabeler.engine.errors import ImageReadError
    from medlabeler.engine.io import read_image
    from medlabeler.engine.io.dicom import read_dicom_paths
    from medlabeler.engine.io.nifti import is_nifti

    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    images = [read_image(p) for p in paths if p.is_file() and is_nifti(p)]
    dicom_paths = [p for p in paths if not (p.is_file() and is_nifti(p))]
    errors: list[ImageReadError] = []
    if dicom_paths:
        found, errors = read_dicom_paths(dicom_paths)
        images.extend(found)
    if not images:
        if errors:
            raise errors[0]
        raise ImageReadError(paths[0] if paths else None, "holds no readable image")
    for error in errors:
        warnings.warn(f"skipped: {error}", stacklevel=2)
    return [layer_data(image) for image in images]


def layer_data(image: Any) -> LayerData:
    """(data, kwargs, "image") for one Image: scale from spacing, contrast limits from the window.
    Identifiers (patient name, IDs, UIDs) are never put in the layer, nor the path (DICOM folders
    are often named after the patient; napari keeps the path it opened in `layer.source`)."""
    metadata = {k: v for k, v in image.metadata.items() if v is not None}
    metadata["modality"] = image.modality
    if image.affine is not None:
        metadata["affine"] = [[float(v) for v in row] for row in image.affine]
    kwargs: dict[str, Any] = {
        "name": _layer_name(image),
        "scale": tuple(float(s) for s in image.spacing),
        "metadata": metadata,
    }
    if image.is_rgb:
        kwargs["rgb"] = True
    elif image.window is not None:
        centre, width = image.window
        kwargs["contrast_limits"] = [centre - width / 2.0, centre + width / 2.0]
    return (image.array, kwargs, "image")


def _layer_name(image: Any) -> str:
    description = str(image.metadata.get("SeriesDescription", "") or "").strip()
    if description:
        return description
    source = Path(image.source)
    if source.is_dir():  # folder names are often patient names: use what the series says
        number = image.metadata.get("SeriesNumber")
        return f"{image.modality} series {number}" if number is not None else f"{image.modality} series"
    name = source.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return source.stem
