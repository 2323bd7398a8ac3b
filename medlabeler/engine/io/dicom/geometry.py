"""DICOM geometry in patient coordinates (LPS, mm): positions, orientation, pixel spacing, affines,
and how slices stack into a volume (ordered along the slice normal, median slice distance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pydicom.dataset import Dataset

from medlabeler.engine.io.dicom.files import _group_item


# Slice positions closer than this (mm) along the normal count as the same position.
DUPLICATE_TOLERANCE_MM = 0.01


# Neighbour distances may differ from their median by this much before a series counts as uneven.
SPACING_TOLERANCE_MM = 0.02


SPACING_TOLERANCE_REL = 0.02


ORIENTATION_TOLERANCE = 1e-3


# A series whose gaps are whole multiples of its spacing has slices missing; they are filled with
# blank slices as long as they make at most this fraction of the filled volume.
MAX_FILLED_FRACTION = 0.25


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
    """Why slices make no regular stack; `pairs`: (index, index) of given slices that share a
    position, for a caller that can name their files."""

    def __init__(self, text: str, pairs: Sequence[tuple[int, int]] = ()):
        super().__init__(text)
        self.pairs = list(pairs)


@dataclass
class StackGeometry:
    """How slices or frames make a volume: their order, slice distance and affine."""

    order: list[int]
    spacing_z: float
    affine: np.ndarray | None
    how: str
    #: volume indices that no given slice fills (slices missing from a regular grid), ascending;
    #: the given slices take the other indices, in `order`
    missing: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Slices in the volume: the given ones and the missing ones."""
        return len(self.order) + len(self.missing)

    def layout(self) -> list[int | None]:
        """For each volume index, the given slice stored there (None: a missing slice)."""
        missing = set(self.missing)
        given = iter(self.order)
        return [None if index in missing else next(given) for index in range(self.size)]

    def position_of(self, index: int) -> np.ndarray | None:
        """The patient position (LPS, mm) of a volume index's first pixel; None without an affine."""
        return None if self.affine is None else slice_position(self.affine, index)


def slice_position(affine: np.ndarray, index: int) -> np.ndarray:
    """The patient position (LPS, mm) of the first pixel of slice `index` of a volume with `affine`."""
    return (affine @ np.array([index, 0.0, 0.0, 1.0]))[:3]


def plan_stack(
    positions: Sequence[np.ndarray | None],
    orientations: Sequence[np.ndarray | None],
    spacing_yx: tuple[float, float],
    instance_numbers: Sequence[int | None],
    declared_z: float | None,
    *,
    strict: bool,
    fill_gaps: bool = False,
) -> StackGeometry:
    """Order slices in space. strict: raise _StackProblem for an irregular stack; else keep
    the given order and note why. fill_gaps: gaps that are whole multiples of the regular slice
    distance are missing slices (listed in `missing`), not an irregular stack."""
    n = len(positions)
    try:
        if all(p is not None for p in positions) and all(o is not None for o in orientations):
            return _stack_by_position(positions, orientations, spacing_yx, fill_gaps,  # type: ignore[arg-type]
                                      instance_numbers)
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
    positions: Sequence[np.ndarray],
    orientations: Sequence[np.ndarray],
    spacing_yx: tuple[float, float],
    fill_gaps: bool = False,
    instance_numbers: Sequence[int | None] = (),
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
        pairs = [(order[i], order[i + 1]) for i in np.flatnonzero(gaps < DUPLICATE_TOLERANCE_MM)]
        raise _StackProblem(
            f"duplicate slice positions: {duplicates} slice(s) share a position along the slice "
            "normal with another (copied files, or several stacks or time points in one series?)",
            pairs,
        )
    spacing = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_REL * spacing)
    missing: list[int] = []
    if np.any(np.abs(gaps - spacing) > tolerance):
        steps = None
        # the median gap is the spacing unless most gaps hold a missing slice; then the smallest is
        for base in ((spacing, float(gaps.min())) if fill_gaps else ()):
            base_tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_REL * base)
            steps = _whole_steps(gaps, base, base_tolerance)
            if steps is not None:
                spacing, tolerance = base, base_tolerance
                break
        if steps is None:
            seen = sorted({round(float(g), 3) for g in gaps})
            shown = ", ".join(f"{g:g}" for g in seen[:8]) + (", ..." if len(seen) > 8 else "")
            raise _StackProblem(
                f"uneven slice spacing: distances between neighbouring slices of {shown} mm "
                f"(median {spacing:g} mm){_irregular_places(along[order], spacing, tolerance)}"
            )
        run_on = _numbers_run_on(instance_numbers, order, steps)
        if run_on:
            raise _StackProblem(
                f"uneven slice spacing: the distance between neighbouring slices changes from {spacing:g} mm to "
                f"{float(gaps[run_on[0]]):g} mm, and their InstanceNumbers run on across the wider gaps ({len(run_on)}), "
                "so no slice is missing there: the series has two spacings"
            )
        first = np.concatenate([[0], np.cumsum(steps)])  # volume index of each given slice
        size = int(first[-1]) + 1
        missing = sorted(set(range(size)) - {int(i) for i in first})
        spacing = float(along[order[-1]] - along[order[0]]) / (size - 1)
        if len(missing) > MAX_FILLED_FRACTION * size:
            raise _StackProblem(
                f"uneven slice spacing: {len(missing)} of {size} slices are missing at a regular "
                f"distance of {spacing:g} mm, too many to fill with blank slices"
            )
    size = n + len(missing)
    step = (ipps[order[-1]] - ipps[order[0]]) / (size - 1)
    affine = _affine(iop, ipps[order[0]], step, spacing_yx)
    return StackGeometry(order, spacing, affine, "ImagePositionPatient", missing)


def _irregular_places(along: np.ndarray, spacing: float, tolerance: float) -> str:
    """Where a stack's spacing breaks, as positions along the slice normal (z for axial slices)."""
    gaps = np.diff(along)
    steps = np.maximum(np.rint(gaps / spacing), 1)
    odd = [int(i) for i in np.flatnonzero(np.abs(gaps - steps * spacing) > tolerance)]
    if not odd:  # whole multiples (a stack read without filling): slices are missing
        return "; a slice may be missing"
    places = ", at ".join(f"{round(float(along[i]), 2):g} and {round(float(along[i + 1]), 2):g} mm" for i in odd[:3])
    more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
    return (f"; not a whole number of slices between the slices at {places}{more} (positions along the "
            "slice normal), so no missing slice can be filled in")


def _numbers_run_on(instance_numbers: Sequence[int | None], order: Sequence[int], steps: np.ndarray) -> list[int]:
    """Indices of the gaps spanning several steps across which the slices' InstanceNumbers differ by
    fewer than the steps: nothing was numbered in between, so no slice is missing there (a series
    whose spacing changes, 2.5 mm then 5 mm). Empty when the numbers are absent or repeat."""
    numbers = [instance_numbers[i] for i in order] if len(instance_numbers) == len(order) else []
    if not numbers or any(v is None for v in numbers) or len(set(numbers)) != len(numbers):
        return []
    return [k for k, step in enumerate(steps) if step > 1 and abs(numbers[k + 1] - numbers[k]) < step]


def _whole_steps(gaps: np.ndarray, spacing: float, tolerance: float) -> np.ndarray | None:
    """How many regular steps each gap spans, when every gap is a whole multiple of the slice
    distance (within tolerance of the distance the whole stack gives); else None."""
    steps = np.rint(gaps / spacing).astype(np.int64)
    if np.any(steps < 1):
        return None
    refined = float(np.sum(gaps)) / float(np.sum(steps))  # the distance the whole stack gives
    if np.any(np.abs(gaps - steps * refined) > tolerance):
        return None
    return steps


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
