"""The file names exports write: an image's own name without its extension, or a neutral number."""

from __future__ import annotations

from pathlib import Path


def file_stem(path: str) -> str:
    """The image file's name without its extension (``.nii.gz`` counts as one)."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
