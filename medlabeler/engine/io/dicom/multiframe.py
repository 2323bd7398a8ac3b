"""One DICOM file as an Image: a single frame, or a multi-frame file whose frames stack as slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medlabeler.engine.errors import ImageReadError
from medlabeler.engine.io.dicom.decoders import (
    colour_to_grey, _decode, grey_values, _is_monochrome1, rgb_values, window_of,
)
from medlabeler.engine.io.dicom.files import (
    identifiers_of, is_colour, is_image, metadata_of, modality_of, n_frames, no_image_problem, _read_full,
    read_header,
)
from medlabeler.engine.io.dicom.geometry import (
    affine_2d, _declared_slice_distance, _orientation, pixel_spacing, plan_stack, _position, StackGeometry,
)
from medlabeler.engine.io.image import Image


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
