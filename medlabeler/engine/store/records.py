"""Plain records the store hands out: the task, samples, label versions and model versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_KINDS = ("classification", "segmentation")
UNITS = ("image", "slice")
SPLITS = ("train", "val", "test")
ORIGINS = ("manual", "accepted_prediction", "corrected_prediction", "imported")

def samples_text(ids, at_most: int | None = None) -> str:
    """Sample ids as messages name them: "sample 3", "samples 3, 5" ("… and 12 more" past ``at_most``)."""
    ids = list(ids)
    shown = ids if at_most is None else ids[:at_most]
    more = f" and {len(ids) - len(shown)} more" if len(ids) > len(shown) else ""
    return f"sample{'s' * (len(ids) > 1)} {', '.join(map(str, shown))}{more}"


DEFAULT_COLORS = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
)


@dataclass(frozen=True)
class TaskSpec:
    """What is labeled: the kind, the class (or foreground label) names and their colours.

    Segmentation: mask value 0 is background and value i+1 is ``names[i]``.
    Classification: value i is ``names[i]``.
    """

    kind: str
    names: tuple[str, ...]
    colors: tuple[str, ...]
    unit: str = "image"
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    slabs: int = 0
    """Slice projects only: > 0 splits each volume into this many contiguous slabs of slices,
    each its own split group (for a project of one scan, where a split by volume is impossible)."""

    @property
    def num_classes(self) -> int:
        """Network outputs: the names, plus background for segmentation."""
        return len(self.names) + (1 if self.kind == "segmentation" else 0)


@dataclass(frozen=True)
class Sample:
    """One thing to label: a 2D image, a whole volume (unit "image") or one slice of a volume.

    ``shape`` and ``spacing`` describe the sample's own pixels (a slice is 2D; RGB stays (Y, X, 3)).
    ``n_slices`` is the depth of the source volume for slice samples (None otherwise).
    """

    id: int
    path: str
    series_uid: str | None
    slice_index: int | None
    group: str
    split: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    modality: str
    is_volume: bool
    n_slices: int | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape a mask of this sample must have (no colour axis)."""
        if self.slice_index is None and self.is_volume:
            return tuple(self.shape[:3])
        return tuple(self.shape[:2])

    @property
    def slice_position(self) -> float | None:
        """Position of a slice in its volume in (0, 1], None for 2D images and whole volumes."""
        if self.slice_index is None or not self.n_slices:
            return None
        return (self.slice_index + 1) / self.n_slices

    def describe(self) -> str:
        """Where the sample lives, for messages: the path, plus the slice when there is one."""
        return self.path if self.slice_index is None else f"{self.path} [slice {self.slice_index}]"


@dataclass(frozen=True)
class LabelVersion:
    """One saved version of a sample's label. Exactly one of ``value`` and ``mask_relpath`` is set.

    ``mask_relpath`` is relative to the project folder; ``checksum`` is the sha256 of the mask file.
    """

    sample_id: int
    version: int
    value: int | None
    mask_relpath: str | None
    checksum: str | None
    author: str
    created: str
    origin: str
    is_current: bool
    present: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class ModelVersion:
    """A trained model kept in ``models/``; ``path`` is absolute.

    ``removed``: when its weights were removed to save space (None while they are kept); the
    record and metrics stay. ``was_active``: it is or was once the active model.
    """

    version: int
    method: str
    path: Path
    record: dict[str, Any]
    metrics: dict[str, Any]
    parent: int | None
    created: str
    n_labels: int
    active: bool = False
    checksum: str = ""
    removed: str | None = None
    was_active: bool = False
