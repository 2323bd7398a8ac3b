"""The bundled demo: a real brain MRI (the MNI152 T1 template shipped inside nilearn).

The template comes with grey- and white-matter probability maps; thresholding them gives a
reference segmentation that stands in for a clinician in the headless demo and the benchmarks.
Nothing is downloaded and the scan is not copied: the project points at nilearn's file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medlabeler.engine.errors import InputError

LABELS = ["grey_matter", "white_matter"]
COLORS = ["#e6a23c", "#409eff"]
_TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def mni_file(kind: str = "t1") -> Path:
    """Path of nilearn's MNI152 file: kind is t1, gm (grey matter) or wm (white matter)."""
    try:
        import nilearn
    except ImportError as exc:
        raise InputError(None, "the demo needs nilearn, which carries the MNI152 brain MRI: pip install nilearn") from exc
    path = Path(nilearn.__file__).parent / "datasets" / "data" / _TEMPLATE.format(kind)
    if not path.exists():
        raise InputError(path, "nilearn is installed but its MNI152 template file is missing")
    return path


def demo_truth() -> np.ndarray:
    """Reference tissue labels (Z, Y, X): 0 background, 1 grey matter, 2 white matter."""
    from medlabeler.engine.io import read_image

    grey = read_image(mni_file("gm")).array
    white = read_image(mni_file("wm")).array
    tissue = np.stack([grey, white])
    labels = (tissue.argmax(axis=0) + 1).astype(np.uint8)
    labels[tissue.max(axis=0) < 0.5 * tissue.max()] = 0
    return labels


def create_demo_project(root: str | Path):
    """A slice-segmentation project over the MNI152 T1, opened for writing."""
    from medlabeler.engine.project.project_import import create_project

    project, _ = create_project(
        root, mni_file("t1"), task="segmentation", names=LABELS, colors=COLORS, unit="slice"
    )
    return project


def label_like_a_clinician(project, n: int, *, seed: int = 0, split: str = "train") -> list[int]:
    """Save the reference mask of ``n`` brain slices spread through the volume, as a clinician would."""
    truth = demo_truth()
    rng = np.random.default_rng(seed)
    candidates = [s for s in project.samples(split=split, labeled=False) if truth[s.slice_index].any()]
    candidates.sort(key=lambda s: s.slice_index)
    if not candidates:
        return []
    picks = np.linspace(0, len(candidates) - 1, num=min(n, len(candidates))).round().astype(int)
    jitter = rng.integers(-1, 2, size=len(picks))
    chosen = sorted({int(np.clip(p + j, 0, len(candidates) - 1)) for p, j in zip(picks, jitter)})
    for index in chosen:
        sample = candidates[index]
        project.save_label(sample.id, truth[sample.slice_index], author="demo", origin="manual")
    return [candidates[i].id for i in chosen]
