"""The file names exports write: an image's own name without its extension, or a neutral number."""

from __future__ import annotations

from pathlib import Path


def file_stem(path: str) -> str:
    """The image file's name without its extension (``.nii.gz`` counts as one)."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem


def export_stem(path: str, number: int, word: str, keep_names: bool, taken: set[str]) -> str:
    """The name of the ``number``-th source's files in an export: its own name (``keep_names``; the
    number added where another source had it: two series of one folder, two folders' ``ct.nii.gz``,
    which would otherwise write one file over the other), else ``word_NNNN``. Adds it to ``taken``
    (in lower case: ``taken`` holds lower-case names)."""
    stem = file_stem(path) if keep_names else f"{word}_{number:04d}"
    if stem.lower() in taken:  # CT and ct are one file name on macOS and Windows
        stem = f"{stem}_{number:04d}"
    taken.add(stem.lower())
    return stem
