"""Datasets over the store, preprocessing, the in-process batch sampler; batched augmentation
lives in `medlabeler.engine.data.augment`. Attributes load lazily (torch is imported on use)."""

from __future__ import annotations

_EXPORTS = {
    "Preprocess", "Geometry", "SampleTensors", "LabeledDataset", "UnlabeledDataset", "ProjectData",
    "build_project_data", "FolderImages", "InfiniteBatches", "collate", "intensity_stats", "normalise_grey", "normalise_rgb",
    "CT_WINDOWS",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        from . import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
