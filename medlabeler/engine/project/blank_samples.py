"""Blank samples: images with one value everywhere (the empty slices that pad a registered MRI
volume, a black frame). Nothing in them is worth a clinician's label, so the queue leaves them out;
`s` in the app can still label one as all background.

Found once, at import, for images and volumes other than DICOM series (a scanner's slices are
rarely one value, and decoding every series would double an import's time); a project made before
this check (schema 1) gets it on demand with `check_blank_samples`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def is_blank(pixels: np.ndarray) -> bool:
    """One value everywhere (non-finite pixels aside), or no finite pixel at all."""
    finite = pixels[np.isfinite(pixels)]
    return finite.size == 0 or bool(finite.min() == finite.max())


def check_blank_samples(project, samples: Iterable | None = None) -> int:
    """Check `samples` (the store's records; default: every one not checked yet) and record which
    are blank; returns how many are. Samples of one volume are read together (the store caches the
    volume); a sample whose image cannot be read is left unchecked (the app reports it when opened)."""
    from medlabeler.engine.errors import InputError

    if samples is None:
        unchecked = set(project.unchecked_for_blank())
        samples = [s for s in project.samples() if s.id in unchecked]
    found: dict[int, bool] = {}
    for sample in sorted(samples, key=lambda s: (s.path, s.series_uid or "", s.slice_index or 0)):
        try:
            found[sample.id] = is_blank(project.load_pixels(sample))
        except InputError:
            continue
    if found:
        project.write_blank(found)
    return sum(found.values())
