"""Torch datasets over a project's samples, and the in-process batch sampler.

Preprocessing (one place, used for training, validation and prediction alike):
- grey images and slices -> 1 channel: clip to the 1st-99th percentile of the sample's VOLUME
  (every slice of a volume shares its statistics; a 2D image uses its own), then z-score.
  With a CT window (center, width) the window replaces the percentile clip and maps to [-1, 1].
- RGB (Y, X, 3) -> 3 channels: /255, then per-channel standardisation over the image.
- geometry: "letterbox" (default) scales the longer side to `size` keeping the aspect ratio and
  pads the rest with 0 (the normalised mean; background for masks); "stretch" resizes each axis
  to `size`; "crop" (segmentation, the default there) keeps the native resolution (2D images
  whose longer side exceeds `max_side` are first scaled down to it), pads images smaller than
  `size`, trains on random `size` crops and predicts 2D images whole (the U-Net is fully
  convolutional; without a `max_side`, by sliding window) and volumes with a sliding window. "auto" in a run config means "crop" for
  segmentation and "letterbox" for classification.
  Images use bilinear (antialiased) interpolation, masks nearest. `Geometry` maps
  model-resolution outputs back to the sample's original size.
- whole volumes (unit "image", 3D) get the same treatment in 3D with `volume_size`.

Datasets yield tuples: labeled (image (C,*S) float32, label: () long class or (*S) long mask),
unlabeled (image, slice position float: (i+1)/n_slices, NaN for 2D). Preprocessed tensors are
cached in memory (up to `cache_mb`) so epochs do not re-read files. No worker processes: batches
come from `InfiniteBatches`, an in-process shuffled sampler driven by a torch.Generator.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medlabeler.engine.errors import InputError
from medlabeler.engine.io.image import CT_WINDOWS

log = logging.getLogger(__name__)

RESIZE_MODES = ("letterbox", "stretch", "crop")
#: A `max_side` up to this lets 2D inputs go through the network whole, not by sliding window.
WHOLE_IMAGE_MAX_SIDE = 1024


def resize_for(task: str, resize: str) -> str:
    """A run config's resize mode for `task`: "auto" is native resolution ("crop") for
    segmentation, where letterboxing a slice to 128 px loses small structures (docs/benchmarks.md,
    "Native resolution"), and "letterbox" for classification, which needs whole images."""
    if resize != "auto":
        return resize
    return "crop" if task == "segmentation" else "letterbox"


@dataclass(frozen=True)
class Preprocess:
    """How samples become model tensors. `window`: None, (center, width), or a name in
    CT_WINDOWS (applied to CT samples only). `max_side` ("crop" mode, 2D): images with a longer
    side above it are scaled down to it first (None: never). `grey_as_rgb`: 2D grey images get
    three equal channels, so that they train with the colour ones of the same project (a grey
    photo among dermatology photos); set by `input_kind`, recorded with the model."""

    size: int = 128
    volume_size: int = 64
    resize: str = "letterbox"
    window: Any = None
    percentiles: tuple[float, float] = (1.0, 99.0)
    max_side: int | None = None
    grey_as_rgb: bool = False

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, not {self.resize!r}")
        if self.size < 8 or self.volume_size < 8:
            raise ValueError("image size must be at least 8 pixels")
        if self.max_side is not None and self.max_side < self.size:
            raise ValueError(f"max_side ({self.max_side}) must be at least the image size ({self.size})")

    @classmethod
    def from_config(cls, config: dict | None, task: str = "segmentation") -> "Preprocess":
        """From a run config; its resize "auto" is settled for `task` (`resize_for`)."""
        config = config or {}
        window = config.get("ct_window", config.get("window"))
        if isinstance(window, list):
            window = tuple(window)
        resize = resize_for(task, config.get("resize", "letterbox"))
        max_side = config.get("max_side") if resize == "crop" else None
        return cls(size=int(config.get("image_size", config.get("size", 128))),
                   volume_size=int(config.get("volume_size", 64)), resize=resize, window=window,
                   percentiles=tuple(config.get("percentiles", (1.0, 99.0))),
                   max_side=None if max_side is None else int(max_side))

    def window_size(self, spatial_dims: int) -> int | None:
        """The sliding-window side for model inputs of `spatial_dims` (None: whole inputs). Only
        "crop" models slide: volumes always; 2D inputs only without a `max_side` up to
        WHOLE_IMAGE_MAX_SIDE (models saved before `max_side` existed predicted that way)."""
        if self.resize != "crop":
            return None
        if spatial_dims == 3:
            return self.volume_size
        if self.max_side is not None and self.max_side <= WHOLE_IMAGE_MAX_SIDE:
            return None
        return self.size

    def to_dict(self) -> dict:
        out = asdict(self)
        out["percentiles"] = list(self.percentiles)
        out["window"] = list(self.window) if isinstance(self.window, tuple) else self.window
        return out

    def ct_window(self, modality: str) -> tuple[float, float] | None:
        if self.window is None:
            return None
        if isinstance(self.window, str):
            if (modality or "").upper() != "CT":
                return None
            if self.window not in CT_WINDOWS:
                raise ValueError(f"unknown CT window {self.window!r}; known: {sorted(CT_WINDOWS)}")
            return CT_WINDOWS[self.window]
        center, width = self.window
        return float(center), float(width)


# --- intensity --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntensityStats:
    low: float
    high: float
    mean: float
    std: float


def intensity_stats(values: np.ndarray, percentiles=(1.0, 99.0), max_values: int = 2_000_000) -> IntensityStats:
    """Percentile clip range and mean/std after clipping (subsampled evenly for big arrays)."""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return IntensityStats(0.0, 1.0, 0.0, 1.0)
    if flat.size > max_values:
        flat = flat[:: int(math.ceil(flat.size / max_values))]
    low, high = (float(v) for v in np.percentile(flat, percentiles))
    clipped = np.clip(flat, low, high)
    mean, std = float(clipped.mean()), float(clipped.std())
    return IntensityStats(low, high, mean, std if std > 1e-6 else 1.0)


def normalise_grey(pixels: np.ndarray, stats: IntensityStats | None = None,
                   window: tuple[float, float] | None = None, percentiles=(1.0, 99.0)) -> np.ndarray:
    """Grey pixels -> float32: CT window to [-1, 1], else percentile clip + z-score."""
    pixels = np.nan_to_num(np.asarray(pixels, dtype=np.float32))
    if window is not None:
        center, width = window
        return ((np.clip(pixels, center - width / 2, center + width / 2) - center) / (width / 2)).astype(np.float32)
    stats = stats or intensity_stats(pixels, percentiles)
    return ((np.clip(pixels, stats.low, stats.high) - stats.mean) / stats.std).astype(np.float32)


def normalise_rgb(pixels: np.ndarray) -> np.ndarray:
    """(Y, X, 3) -> (3, Y, X) float32: /255 then per-channel standardisation."""
    x = np.asarray(pixels, dtype=np.float32)
    if x.max(initial=0) > 1.0 or np.issubdtype(np.asarray(pixels).dtype, np.integer):
        x = x / 255.0
    x = np.moveaxis(x, -1, 0)
    mean = x.reshape(3, -1).mean(1)[:, None, None]
    std = x.reshape(3, -1).std(1)[:, None, None]
    return ((x - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def is_rgb(sample_shape: Sequence[int], is_volume: bool = False) -> bool:
    return len(sample_shape) == 3 and sample_shape[-1] in (3, 4) and not is_volume


# --- geometry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """Maps a sample's spatial shape to the model's square/cubic input and back."""

    original: tuple[int, ...]
    resized: tuple[int, ...]
    pad_before: tuple[int, ...]
    size: tuple[int, ...]

    @classmethod
    def fit(cls, original: Sequence[int], size: int, resize: str = "letterbox",
            max_side: int | None = None) -> "Geometry":
        """`max_side` ("crop" only): a longer side above it is scaled down to it, keeping the aspect."""
        original = tuple(int(s) for s in original)
        if resize == "crop":
            resized = original
            if max_side is not None and max(original) > max_side:
                scale = max_side / max(original)
                resized = tuple(max(1, min(max_side, int(round(s * scale)))) for s in original)
            full = tuple(max(s, size) for s in resized)
            return cls(original, resized, tuple((f - s) // 2 for f, s in zip(full, resized)), full)
        if resize == "stretch":
            resized = (size,) * len(original)
        else:
            scale = size / max(original)
            resized = tuple(max(1, min(size, int(round(s * scale)))) for s in original)
        pad = tuple((size - r) // 2 for r in resized)
        return cls(original, resized, pad, (size,) * len(original))

    def _window(self) -> tuple[slice, ...]:
        return tuple(slice(p, p + r) for p, r in zip(self.pad_before, self.resized))

    def _mode(self) -> str:
        return "bilinear" if len(self.original) == 2 else "trilinear"

    def image_to_model(self, image: torch.Tensor) -> torch.Tensor:
        """(C, *original) float -> (C, *size), 0 outside the letterbox."""
        x = image[None].float()
        if self.resized != self.original:
            antialias = len(self.original) == 2 and any(r < o for r, o in zip(self.resized, self.original))
            x = F.interpolate(x, size=self.resized, mode=self._mode(), align_corners=False, antialias=antialias)
        out = x.new_zeros((1, x.shape[1], *self.size))
        out[(slice(None), slice(None), *self._window())] = x
        return out[0]

    def mask_to_model(self, mask: torch.Tensor) -> torch.Tensor:
        """(*original) integer mask -> (*size) long, nearest neighbour, 0 outside."""
        m = mask[None, None].float()
        if self.resized != self.original:
            m = F.interpolate(m, size=self.resized, mode="nearest-exact")
        out = torch.zeros(self.size, dtype=torch.long)
        out[self._window()] = m[0, 0].round().long()
        return out

    def to_original(self, output: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """(..., *size) model output (probabilities, logits; any leading axes) -> (..., *original):
        the letterbox padding is cropped away, then the rest is resized (bilinear/trilinear)."""
        lead = output.shape[: output.ndim - len(self.size)]
        x = output.reshape(1, -1, *self.size)[(slice(None), slice(None), *self._window())]
        if self.resized != self.original:
            x = F.interpolate(x.float(), size=self.original, mode=mode or self._mode(), align_corners=False)
        return x.reshape(*lead, *self.original)


# --- per-sample tensors -----------------------------------------------------------------------

_STATS_CACHE: "OrderedDict[tuple, IntensityStats]" = OrderedDict()
_STATS_LOCK = threading.Lock()


def _file_key(path: str) -> tuple:
    try:
        info = os.stat(path)
        return (str(path), info.st_mtime_ns, info.st_size)
    except OSError:
        return (str(path), None, None)



class SampleTensors:
    """Preprocessed, cached image/label tensors of a project's samples."""

    def __init__(self, project, preprocess: Preprocess | None = None, cache_mb: float = 1024.0):
        self.project = project
        self.preprocess = preprocess or Preprocess()
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[Any, torch.Tensor] = {}
        self._cached_bytes = 0
        self._volumes: dict[tuple, list] | None = None

    # -- helpers
    def _volume_key(self, sample) -> tuple:
        return (sample.path, sample.series_uid)

    def _volume_slices(self, sample) -> list:
        if self._volumes is None:
            self._volumes = {}
            for s in self.project.samples():
                if s.slice_index is not None:
                    self._volumes.setdefault(self._volume_key(s), []).append(s)
            for group in self._volumes.values():
                group.sort(key=lambda s: s.slice_index)
        return self._volumes.get(self._volume_key(sample), [sample])

    def stats(self, sample) -> IntensityStats:
        """Intensity statistics of the sample's volume (up to 32 evenly spaced slices) or image.

        Shared between instances (keyed by file, modification time and size), so repeated
        predictions on slices of one volume do not recompute them."""
        key = (*_file_key(sample.path), sample.series_uid, sample.slice_index is not None,
               None if sample.slice_index is not None else sample.id, tuple(self.preprocess.percentiles))
        with _STATS_LOCK:
            if key in _STATS_CACHE:
                _STATS_CACHE.move_to_end(key)
                return _STATS_CACHE[key]
        if sample.slice_index is not None:
            n = getattr(sample, "n_slices", None) or len(self._volume_slices(sample))
            picks = range(0, n, max(1, math.ceil(n / 32)))
            values = np.concatenate([
                np.asarray(self.project.load_pixels(dataclasses.replace(sample, slice_index=i)), np.float32).reshape(-1)
                for i in picks])
        else:
            values = self.project.load_pixels(sample)
        stats = intensity_stats(values, self.preprocess.percentiles)
        with _STATS_LOCK:
            _STATS_CACHE[key] = stats
            while len(_STATS_CACHE) > 512:
                _STATS_CACHE.popitem(last=False)
        return stats

    def spatial_shape(self, sample) -> tuple[int, ...]:
        shape = tuple(sample.shape)
        return shape[:2] if is_rgb(shape, sample.is_volume and sample.slice_index is None) else shape

    def geometry(self, sample) -> Geometry:
        shape = self.spatial_shape(sample)
        if len(shape) == 3:
            return Geometry.fit(shape, self.preprocess.volume_size, self.preprocess.resize)
        return Geometry.fit(shape, self.preprocess.size, self.preprocess.resize, self.preprocess.max_side)

    def crop_size(self, spatial_dims: int) -> int:
        """Side of the training window / model input for 2D or 3D samples."""
        return self.preprocess.volume_size if spatial_dims == 3 else self.preprocess.size

    def channels(self, sample) -> int:
        if is_rgb(sample.shape, sample.is_volume and sample.slice_index is None):
            return 3
        return 3 if self.preprocess.grey_as_rgb and len(self.spatial_shape(sample)) == 2 else 1

    def position(self, sample) -> float:
        pos = getattr(sample, "slice_position", None)
        if pos is None and sample.slice_index is not None:
            pos = (sample.slice_index + 1) / len(self._volume_slices(sample))
        return float("nan") if pos is None else float(pos)

    def _remember(self, key, tensor: torch.Tensor) -> torch.Tensor:
        size = tensor.element_size() * tensor.nelement()
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[key] = tensor
            self._cached_bytes += size
        return tensor

    # -- public
    def normalised(self, sample) -> torch.Tensor:
        """(C, *original) float32 normalised pixels (not resized). InputError for a slice missing
        from its DICOM series (read blank): a model must neither learn from it nor be measured on it."""
        pixels = np.asarray(self.project.load_pixels(sample))
        if sample.series_uid is not None and sample.slice_index is not None \
                and self.project.is_missing_slice(sample.id):
            from medlabeler.engine.store.project import MISSING_SLICE

            raise InputError(sample.path, f"slice {sample.slice_index}, sample {sample.id}: {MISSING_SLICE}")
        if is_rgb(pixels.shape, sample.is_volume and sample.slice_index is None):
            return torch.from_numpy(normalise_rgb(pixels[..., :3]))
        window = self.preprocess.ct_window(sample.modality)
        stats = None if window is not None else self.stats(sample)
        grey = torch.from_numpy(normalise_grey(pixels, stats, window))[None]
        return grey.expand(3, *grey.shape[1:]).contiguous() if self.channels(sample) == 3 else grey

    def image(self, sample) -> torch.Tensor:
        """(C, *size) float32 model input of `sample` (cached)."""
        key = ("image", sample.id)
        if key in self._cache:
            return self._cache[key]
        return self._remember(key, self.geometry(sample).image_to_model(self.normalised(sample)).contiguous())

    def mask(self, sample, mask: np.ndarray) -> torch.Tensor:
        """A label mask of `sample` at model resolution (long)."""
        mask = np.asarray(mask)
        if mask.shape != self.spatial_shape(sample):
            raise InputError(sample.path, f"mask shape {mask.shape} differs from the image {self.spatial_shape(sample)}")
        return self.geometry(sample).mask_to_model(torch.from_numpy(mask.astype(np.int64)))


# --- datasets ---------------------------------------------------------------------------------


def random_window(shape: Sequence[int], crop: int, generator: torch.Generator) -> tuple[slice, ...]:
    """A random `crop`-sized window inside `shape` (every axis must be >= crop)."""
    starts = [int(torch.randint(0, s - crop + 1, (1,), generator=generator)) for s in shape]
    return tuple(slice(a, a + crop) for a in starts)


#: Share of segmentation training crops centred on a pixel of one of the labels the mask holds
#: (the label drawn uniformly among those present), as nnU-Net oversamples foreground (Isensee
#: et al., Nature Methods 2021): a small or rare structure is in a third of the crops however
#: little of the image it covers; the rest are uniform, so background is still seen everywhere.
FOREGROUND_CROPS = 1 / 3


def label_window(label: torch.Tensor, crop: int, generator: torch.Generator,
                 foreground: float = FOREGROUND_CROPS, pixels: dict | None = None) -> tuple[slice, ...]:
    """A `crop`-sized window inside `label`'s shape: with probability `foreground` centred
    (clamped to the image) on a random pixel of a label drawn uniformly from the labels present,
    else uniform. `pixels` caches each label's flat pixel indices between calls."""
    if foreground <= 0 or float(torch.rand(1, generator=generator)) >= foreground:
        return random_window(label.shape, crop, generator)
    if pixels is None:
        pixels = {}
    if not pixels:
        flat = label.reshape(-1)
        for value in torch.unique(flat).tolist():
            if value > 0:
                pixels[int(value)] = torch.nonzero(flat == value).reshape(-1)
        pixels.setdefault(0, torch.empty(0, dtype=torch.long))  # marks "computed" for an empty mask
    present = [v for v in sorted(pixels) if v > 0]
    if not present:
        return random_window(label.shape, crop, generator)
    where = pixels[present[int(torch.randint(0, len(present), (1,), generator=generator))]]
    centre = np.unravel_index(int(where[int(torch.randint(0, len(where), (1,), generator=generator))]), label.shape)
    starts = [min(max(0, int(c) - crop // 2), s - crop) for c, s in zip(centre, label.shape)]
    return tuple(slice(a, a + crop) for a in starts)


class LabeledDataset(Dataset):
    """(image, label) of labeled samples; labels read once when the dataset is built.

    With `crop` (resize "crop"), items are windows (`tensors.crop_size`) of the native-resolution
    image and mask, drawn from a generator seeded with `seed`: a `foreground` share of them
    centred on a label (`label_window`), the rest uniform."""

    def __init__(self, project, samples: Sequence, tensors: SampleTensors, task: str | None = None,
                 crop: bool = False, seed: int = 0, foreground: float = FOREGROUND_CROPS):
        self.tensors = tensors
        self.crop = crop
        self.foreground = float(foreground)
        self.generator = torch.Generator().manual_seed(seed)
        self.task = task or project.task.kind
        self.samples, self._labels = [], []
        for sample in samples:
            value = project.load_label(sample.id)
            if value is None:
                continue
            self.samples.append(sample)
            if self.task == "classification":
                self._labels.append(torch.tensor(int(value), dtype=torch.long))
            else:
                self._labels.append(tensors.mask(sample, value))
        self.ids = [s.id for s in self.samples]
        self._pixels: list[dict] = [{} for _ in self.samples]  # per sample: label -> flat pixel indices

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            image = self.tensors.image(sample)
        except InputError as exc:  # a labeled image cannot be passed over: its label would go unseen
            raise InputError(exc.path, f"{exc.problem}; sample {sample.id} is labeled: put the file back, or "
                                       f"take its label back (in the app: right-click its row in the queue's "
                                       f"labeled list > Remove label; or medlabeler remove-label PROJECT "
                                       f"{sample.id})") from exc
        label = self._labels[index]
        if self.crop and label.ndim > 0:
            window = label_window(label, self.tensors.crop_size(label.ndim), self.generator, self.foreground,
                                  self._pixels[index])
            image, label = image[(slice(None), *window)], label[window]
        return image, label


class UnlabeledDataset(Dataset):
    """(image, slice position) of any samples (their labels are not read)."""

    def __init__(self, samples: Sequence, tensors: SampleTensors, crop: bool = False, seed: int = 0):
        self.tensors = tensors
        self.crop = crop
        self.generator = torch.Generator().manual_seed(seed)
        self.samples = list(samples)
        self.ids = [s.id for s in self.samples]
        self._positions = torch.tensor([tensors.position(s) for s in self.samples], dtype=torch.float32)
        self.unreadable: dict[int, InputError] = {}  # sample id -> why its image did not read

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image, index = self._readable(index)
        if self.crop:
            crop = self.tensors.crop_size(image.ndim - 1)
            image = image[(slice(None), *random_window(image.shape[1:], crop, self.generator))]
        return image, self._positions[index]

    def _readable(self, index: int) -> tuple[torch.Tensor, int]:
        """The image at ``index``, or at the next index whose file still reads: an unlabeled image
        damaged or deleted since the import is passed over (its id kept in ``unreadable``) rather
        than stopping the run; only a pool with no readable image stops it."""
        for step in range(len(self.samples)):
            at = (index + step) % len(self.samples)
            if self.ids[at] in self.unreadable:
                continue
            try:
                return self.tensors.image(self.samples[at]), at
            except InputError as exc:
                self.unreadable[self.ids[at]] = exc
                log.warning("unlabeled sample %d left out of this run: %s", self.ids[at], exc.problem)  # no path
        raise InputError(None, f"none of the {len(self.samples)} unlabeled images can be read; the first: "
                               f"{next(iter(self.unreadable.values()))}")


@dataclass
class ProjectData:
    """The datasets of one run, built from a project's splits."""

    labeled: LabeledDataset
    unlabeled: UnlabeledDataset
    val: LabeledDataset
    tensors: SampleTensors
    in_channels: int
    spatial_dims: int
    notes: list[str] = field(default_factory=list)


def build_project_data(project, preprocess: Preprocess | None = None, *, unlabeled_splits=("train",),
                       cache_mb: float = 1024.0, seed: int = 0, foreground: float = FOREGROUND_CROPS) -> ProjectData:
    """labeled = labeled train samples; unlabeled = unlabeled samples of `unlabeled_splits`
    (train only by default, so val/test images never shape training); val = labeled val samples
    (whole images, even in "crop" mode). The test split is not touched. `foreground`: the share
    of "crop" training windows centred on a label (`label_window`)."""
    tensors = SampleTensors(project, preprocess, cache_mb)
    task = project.task.kind
    crop = tensors.preprocess.resize == "crop"
    if crop and task != "segmentation":
        raise ValueError('resize "crop" is for segmentation; classification needs whole images')
    labeled = LabeledDataset(project, project.samples(split="train", labeled=True), tensors, task, crop, seed,
                             foreground)
    pool = [s for split in unlabeled_splits for s in project.samples(split=split, labeled=False)]
    unlabeled = UnlabeledDataset(pool, tensors, crop, seed + 1)
    val = LabeledDataset(project, project.samples(split="val", labeled=True), tensors, task)
    every = labeled.samples + unlabeled.samples + val.samples
    return ProjectData(labeled, unlabeled, val, tensors, *input_kind(every, tensors))


def input_kind(samples: Sequence, tensors: SampleTensors) -> tuple[int, int]:
    """(in_channels, spatial_dims) shared by `samples`. Where the project holds 2D grey images
    and colour ones (in any split: a model must also predict its test images), the grey ones get
    three channels (`Preprocess.grey_as_rgb`, set on `tensors`). Mixing 2D images and whole
    volumes, or images of other channel counts, is refused, naming a file of each kind."""
    flat = {tensors.channels(s) for s in tensors.project.samples() if len(tensors.spatial_shape(s)) == 2}
    if {1, 3} <= flat:
        tensors.preprocess = dataclasses.replace(tensors.preprocess, grey_as_rgb=True)
    by_kind: dict[tuple[int, int], Any] = {}
    for s in samples:
        by_kind.setdefault((tensors.channels(s), len(tensors.spatial_shape(s))), s)
    if not by_kind:
        return 1, 2
    if len(by_kind) > 1:
        words = {(1, 2): "a grey 2D image", (3, 2): "a colour 2D image", (1, 3): "a whole volume"}
        examples = "; ".join(f"{words.get(kind, f'{kind[0]} channels, {kind[1]}D')}: {sample.path}"
                             for kind, sample in sorted(by_kind.items()))
        raise InputError(None, f"the project mixes 2D images and whole volumes ({examples}); "
                               "train on one kind at a time")
    return by_kind.popitem()[0]


# --- batches ----------------------------------------------------------------------------------


def collate(items: Sequence) -> tuple[torch.Tensor, ...]:
    """Stack a list of tuples (of tensors or numbers) position by position."""
    first = items[0]
    if not isinstance(first, (tuple, list)):
        return (torch.stack([torch.as_tensor(i) for i in items]),)
    return tuple(torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(len(first)))


class InfiniteBatches:
    """Endless batches of `dataset`: consecutive shuffled permutations (torch.Generator seeded with
    `seed`) cut into batches of exactly `batch_size` (a batch may span two permutations, so a
    dataset smaller than the batch repeats items). In-process: no worker processes, no fork."""

    def __init__(self, dataset, batch_size: int, seed: int = 0):
        if len(dataset) == 0:
            raise ValueError("cannot draw batches from an empty dataset")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))

    def _indices(self) -> Iterator[int]:
        while True:
            yield from torch.randperm(len(self.dataset), generator=self.generator).tolist()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        indices = self._indices()
        while True:
            yield collate([self.dataset[next(indices)] for _ in range(self.batch_size)])


class FolderImages(Dataset):
    """(image, slice position) of every image under a folder outside the project (a curriculum's
    "generic" unlabeled pool). Volumes contribute each slice along axis 0. Images are converted to
    `channels` (grey <-> RGB) so they fit the project's network. Loaded eagerly, up to `max_images`."""

    def __init__(self, folder, preprocess: Preprocess | None = None, channels: int = 1, max_images: int = 5000):
        from medlabeler.engine.io import read_image, scan_sources

        self.preprocess = preprocess or Preprocess()
        infos, self.errors = scan_sources(folder)
        images, positions = [], []
        for info in infos:
            if len(images) >= max_images:
                break
            try:
                array = np.asarray(read_image(info.path, info.series_uid).array)
            except InputError as exc:
                self.errors.append(exc)
                continue
            if info.is_volume and array.ndim == 3:
                stats = intensity_stats(array, self.preprocess.percentiles)
                window = self.preprocess.ct_window(info.modality)
                n = array.shape[0]
                for z in range(n):
                    if len(images) >= max_images:
                        break
                    grey = torch.from_numpy(normalise_grey(array[z], None if window else stats, window))[None]
                    images.append(self._fit(grey, channels))
                    positions.append((z + 1) / n)
            else:
                if is_rgb(array.shape):
                    x = torch.from_numpy(normalise_rgb(array[..., :3]))
                else:
                    x = torch.from_numpy(normalise_grey(array, window=self.preprocess.ct_window(info.modality),
                                                        percentiles=self.preprocess.percentiles))[None]
                images.append(self._fit(x, channels))
                positions.append(float("nan"))
        if not images:
            raise InputError(folder, "holds no readable images for the generic pool")
        self.images = torch.stack(images)
        self.positions = torch.tensor(positions, dtype=torch.float32)

    def _fit(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        if x.shape[0] != channels:
            x = x.mean(0, keepdim=True) if channels == 1 else x.expand(channels, *x.shape[1:])
        resize = "letterbox" if self.preprocess.resize == "crop" else self.preprocess.resize
        return Geometry.fit(x.shape[1:], self.preprocess.size, resize).image_to_model(x)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.positions[index]
