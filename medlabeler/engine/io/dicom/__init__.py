"""DICOM reading with pydicom: single files, multi-frame files and folders of series.

Geometry follows the DICOM patient coordinate system (LPS, millimetres). Array axes are
(Z, Y, X) = (slice, row, column): ``spacing = (slice distance, PixelSpacing[0], PixelSpacing[1])``
and ``affine`` maps an index (z, y, x, 1) to a patient position. A 2D image gets the affine of a
one-slice volume (index (0, y, x)).

Slices of a series are ordered by ImagePositionPatient projected on the slice normal (the cross
product of the ImageOrientationPatient row and column directions); the slice distance is the
median distance between neighbours, never SliceThickness. Without positions, InstanceNumber
orders the slices.

One module per concern, each importing only those above it in this list:
- `files`: recognising DICOM files, reading headers, what a file holds, its tags.
- `geometry`: positions, orientation, spacing, affines, stacking slices.
- `decoders`: the decoder a transfer syntax needs, stored pixel values to grey or RGB.
- `multiframe`: one file (single or multi-frame) as an Image.
- `series`: folders grouped by series, a series read as one volume, scan descriptions.
"""

from medlabeler.engine.io.dicom.files import is_image, looks_like_dicom, n_frames, read_header
from medlabeler.engine.io.dicom.multiframe import frame_geometry, read_dicom_file
from medlabeler.engine.io.dicom.series import (
    candidate_files,
    describe_dicom_files,
    group_series,
    plan_series,
    read_dicom_folder,
    read_dicom_paths,
    usable_files,
)

__all__ = [
    "candidate_files", "describe_dicom_files", "frame_geometry", "group_series", "is_image",
    "looks_like_dicom", "n_frames", "plan_series", "read_dicom_file", "read_dicom_folder",
    "read_dicom_paths", "read_header", "usable_files",
]
