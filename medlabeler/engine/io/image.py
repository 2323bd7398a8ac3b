"""The one record every reader returns: pixels, geometry, and metadata kept apart from identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Standard CT windows (centre, width) in HU: the radiologist's presets, for display (`w` in the
#: app) and as a training normalisation (`Preprocess.window`).
CT_WINDOWS = {"soft_tissue": (40.0, 400.0), "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0),
              "brain": (40.0, 80.0)}


@dataclass(repr=False)
class Image:
    """A 2D image or a 3D volume.

    array: (Z, Y, X) for volumes, (Y, X) for grey 2D, (Y, X, 3) for RGB 2D. Values are
        physical where the format defines them (CT in HU after rescale slope/intercept).
    spacing: millimetres per voxel along each spatial axis of ``array`` (Z, Y, X) or (Y, X).
    affine: 4x4 voxel-index (array axis order) to patient/world mm, or None if unknown. World is
        the DICOM patient system (LPS) for DICOM and NIfTI alike; a 2D image gets the affine of a
        one-slice volume (index (0, y, x)).
    modality: DICOM modality ("CT", "MR", "CR", "US", ...) or "RGB"/"OT" for plain images.
    window: (centre, width) for display, from the file when it has one.
    metadata: non-identifying facts (series description, transfer syntax, ...), safe to log.
    identifiers: patient name/ID, accession number, UIDs that may identify a person. Never
        logged or exported unless the user asks; kept out of ``repr``.
    source: the path it was read from (file or folder).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None = None
    modality: str = "OT"
    window: tuple[float, float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def is_rgb(self) -> bool:
        return self.array.ndim == 3 and self.array.shape[-1] in (3, 4) and self.array.dtype == np.uint8

    @property
    def ndim_spatial(self) -> int:
        return self.array.ndim - 1 if self.is_rgb else self.array.ndim

    @property
    def is_volume(self) -> bool:
        return self.ndim_spatial == 3

    def __repr__(self) -> str:  # identifiers deliberately left out
        return (
            f"Image(shape={self.array.shape}, dtype={self.array.dtype}, spacing={self.spacing}, "
            f"modality={self.modality!r}, source={self.source!r})"
        )


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of uint8 RGB, float32 in 0..255."""
    out = np.empty(rgb.shape[:-1], dtype=np.float32)
    flat_in, flat_out = rgb.reshape(-1, rgb.shape[-2], 3), out.reshape(-1, rgb.shape[-2])
    for i in range(flat_in.shape[0]):  # row by row: no full float copy of the colour array
        row = flat_in[i].astype(np.float32)
        flat_out[i] = row[:, 0] * 0.299 + row[:, 1] * 0.587 + row[:, 2] * 0.114
    return out


#: Where the radiological convention puts each plane's axes on screen, in the DICOM patient system
#: (LPS: +x the patient's left, +y posterior, +z superior): (screen-down, screen-right) directions.
#: Axial: anterior up, the patient's right on the screen's left; coronal: superior up, right on
#: the left; sagittal: superior up, anterior on the left (as a scanner's own series are stored).
_SCREEN_AXES = {
    2: (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])),   # axial (slices along z)
    1: (np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])),  # coronal (slices along y)
    0: (np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])),  # sagittal (slices along x)
}


def display_orientation(affine: np.ndarray | None) -> tuple[str, str]:
    """How a volume's slices (rows: array axis 1, columns: axis 2) are shown in the radiological
    convention: napari's 2D camera orientation, ("down" or "up", "right" or "left"). An array
    stored as a scanner stores it gives ("down", "right"), the default; a NIfTI in RAS order
    (anterior and the patient's right at high indices) gives ("up", "left"). An axis that does not
    run along the screen direction it is drawn in (an oblique or transposed plane), or no affine,
    keeps the default (napari's camera can turn an axis, not swap the two)."""
    if affine is None or np.shape(affine) != (4, 4) or not np.all(np.isfinite(affine)):
        return ("down", "right")
    directions = np.asarray(affine, dtype=float)[:3, :3]
    norms = np.linalg.norm(directions, axis=0)
    if np.any(norms == 0):
        return ("down", "right")
    directions = directions / norms
    down, right = _SCREEN_AXES[int(np.argmax(np.abs(directions[:, 0])))]
    rows, columns = directions[:, 1], directions[:, 2]
    # an axis is turned only when it runs more along its screen direction than across it
    vertical = "up" if rows @ down < 0 and abs(rows @ down) > abs(rows @ right) else "down"
    horizontal = "left" if columns @ right < 0 and abs(columns @ right) > abs(columns @ down) else "right"
    return (vertical, horizontal)


#: The patient direction letters along DICOM's LPS axes: (towards -, towards +).
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def _letter(direction: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(direction)))
    return _LETTERS[axis][int(direction[axis] > 0)]


def screen_markers(affine: np.ndarray | None) -> tuple[str, str, str, str] | None:
    """The patient directions at the (top, bottom, left, right) edges of the screen when the
    volume's slices are shown turned as `display_orientation` says: ("A", "P", "R", "L") for an
    axial slice read radiologically. An oblique plane gets the direction it runs most along. None
    without a usable affine (nothing is known then, so nothing is claimed)."""
    if affine is None or np.shape(affine) != (4, 4) or not np.all(np.isfinite(affine)):
        return None
    directions = np.asarray(affine, dtype=float)[:3, :3]
    norms = np.linalg.norm(directions, axis=0)
    if np.any(norms == 0):
        return None
    directions = directions / norms
    vertical, horizontal = display_orientation(affine)
    down = directions[:, 1] if vertical == "down" else -directions[:, 1]
    right = directions[:, 2] if horizontal == "right" else -directions[:, 2]
    return (_letter(-down), _letter(down), _letter(-right), _letter(right))
