"""Benchmark datasets built offline from real data, each with an oracle (the simulated clinician).

- ``mni-tissue-seg``: one sample per slice of nilearn's MNI152 T1 brain MRI (a single scan, so the
  store splits it into 10 contiguous slabs); the oracle is `demo.demo_truth()` (grey / white matter
  from the template's tissue maps).
- ``mni-tissue3-seg``: a harder, second view of the same MRI: every second coronal slice, with a
  smooth bias field and Rician noise, and three labels of very different sizes: CSF (dark voxels
  inside the brain: ventricles and sulci, about 1% of the pixels), grey and white matter. A model
  that learns only the large labels scores about 0.63 here, which the two-label set cannot show.
- ``mni-tissue-vol``: whole volumes (`--unit image`, a 3D U-Net on patches): the same MRI cut into
  six scans, three slabs of 63 axial slices each cut into a front and a back half (the template is
  left-right symmetric: left and right halves would be mirror copies of each other across splits);
  the store splits the six by scan (4 train, 1 validation, 1 test at seed 0); the oracle is the
  tissue reference of `mni-tissue-seg`.
- ``mni-tissue-cls``: 32 x 32 px patches cut from the axial slices of the same MRI, written as PNGs in
  an ISIC-style folder ``class_name/*.png``; the class is the tissue dominating the patch centre
  (grey matter / white matter / other, or the first two only). Patches are grouped by slab of
  slices (``slabNN_`` in the file name) so a slab never spans splits.
- a path to an existing, fully labeled project: a fresh project over the same sources, whose
  oracle is the original project's labels.

`BenchmarkData.make(root)` returns a fresh project with no labels (opened for writing);
`BenchmarkData.truth(sample)` the label the oracle gives that sample.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medlabeler.engine.errors import InputError

BUILTIN = ("mni-tissue-seg", "mni-tissue3-seg", "mni-tissue-vol", "mni-tissue-cls")
TISSUE3_LABELS = ("csf", "grey_matter", "white_matter")
PATCH_CLASSES = {3: ("grey_matter", "white_matter", "other"), 2: ("grey_matter", "white_matter")}
_SLAB = re.compile(r"^slab(\d+)_")


@dataclass
class BenchmarkData:
    """A dataset the benchmarks can make fresh projects of, with its oracle."""

    name: str
    task: str
    metric: str                                   # "dice" (segmentation) or "auc" (classification)
    make: Callable[[Path], Any]                   # root -> new Project without labels, open for writing
    truth: Callable[[Any], Any]                   # Sample -> int class or (Y, X) mask
    notes: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def mni_truth() -> np.ndarray:
    """`demo.demo_truth()`, read once per process (0 background, 1 grey, 2 white matter)."""
    from medlabeler.engine.workflows.demo import demo_truth

    truth = demo_truth()
    truth.setflags(write=False)
    return truth


def load_dataset(name: str, work: Path, *, patches: int = 900, classes: int = 3, slabs: int = 20) -> BenchmarkData:
    """The dataset called `name` (a built-in name or a project folder); `work` holds what it writes."""
    if name == "mni-tissue-seg":
        return _mni_segmentation()
    if name == "mni-tissue3-seg":
        return _tissue3_segmentation(Path(work) / "mni-tissue3-seg")
    if name == "mni-tissue-vol":
        return _tissue_volumes(Path(work) / "mni-tissue-vol")
    if name == "mni-tissue-cls":
        folder = Path(work) / f"mni-tissue-cls-{patches}x{classes}"
        info = build_tissue_patches(folder, n_patches=patches, classes=classes, slabs=slabs)
        return _patch_classification(folder, info)
    path = Path(name)
    if (path / "project.sqlite").exists():
        return _existing_project(path)
    raise InputError(name, f"unknown benchmark dataset: use one of {', '.join(BUILTIN)} or a project folder")


# --- mni-tissue-seg -----------------------------------------------------------------------------


def _mni_segmentation() -> BenchmarkData:
    from medlabeler.engine.workflows import demo
    from medlabeler.engine.project.project_import import create_project

    def make(root: Path):
        project, _report = create_project(root, demo.mni_file("t1"), task="segmentation", names=list(demo.LABELS),
                                          unit="slice")
        return project

    def truth(sample):
        return mni_truth()[sample.slice_index]

    return BenchmarkData("mni-tissue-seg", "segmentation", "dice", make, truth, notes=[
        "one scan: train/val/test are contiguous slabs of the same brain (neighbouring slabs share anatomy)"])


# --- mni-tissue3-seg ----------------------------------------------------------------------------


def tissue3_volumes(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of mni-tissue3-seg, (slices, Z, X): every second coronal slice of the MNI152
    T1 that holds brain, times a smooth bias field, with Rician noise (4% of the maximum); labels
    0 background, 1 CSF (inside the filled brain, neither grey nor white matter, darker than
    the darkest tenth of grey matter), 2 grey and 3 white matter (`demo_truth` + 1)."""
    from scipy import ndimage

    from medlabeler.engine.io import read_image
    from medlabeler.engine.workflows.demo import mni_file

    t1 = read_image(mni_file("t1")).array.astype(np.float32)
    tissue = mni_truth()
    labels = np.where(tissue > 0, tissue + 1, 0).astype(np.uint8)
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(tissue > 0, iterations=3))
    labels[brain & (tissue == 0) & (t1 < np.percentile(t1[tissue == 1], 10))] = 1
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in t1.shape], indexing="ij")
    image = t1 * np.exp(0.25 * (0.6 * z + 0.5 * y ** 2 - 0.4 * x * y))
    sigma = 0.04 * float(image.max())
    image = np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape))
    image = image[:, ::2, :].transpose(1, 0, 2)
    labels = labels[:, ::2, :].transpose(1, 0, 2)
    keep = labels.reshape(len(labels), -1).any(1)
    return np.ascontiguousarray(image[keep], dtype=np.float32), np.ascontiguousarray(labels[keep])


def build_tissue3(folder: Path) -> tuple[Path, np.ndarray]:
    """Write mni-tissue3-seg's image as ``folder/mri.nii.gz`` (2 mm between slices) unless there;
    returns its path and the labels as the project reads the slices (checked against a label file
    written beside it and read back the same way)."""
    import nibabel as nib

    from medlabeler.engine.io import read_image

    folder.mkdir(parents=True, exist_ok=True)
    image_path, label_path = folder / "mri.nii.gz", folder / "labels.nii.gz"
    if not (image_path.exists() and label_path.exists()):
        image, labels = tissue3_volumes()
        affine = np.diag([1.0, 1.0, 2.0, 1.0])
        for array, path in ((image, image_path), (labels, label_path)):  # nibabel keeps (X, Y, Z)
            tmp = path.with_name(path.name + ".part.nii.gz")
            nib.save(nib.Nifti1Image(array.transpose(2, 1, 0), affine), tmp)
            tmp.replace(path)
    labels = np.rint(read_image(label_path).array).astype(np.uint8)
    labels.setflags(write=False)
    return image_path, labels


def _tissue3_segmentation(folder: Path) -> BenchmarkData:
    from medlabeler.engine.project.project_import import create_project

    image_path, labels = build_tissue3(folder)

    def make(root: Path):
        project, _report = create_project(root, image_path, task="segmentation", names=list(TISSUE3_LABELS),
                                          unit="slice")
        return project

    def truth(sample):
        return labels[sample.slice_index]

    share = np.bincount(labels.ravel(), minlength=4) / labels.size
    return BenchmarkData("mni-tissue3-seg", "segmentation", "dice", make, truth, notes=[
        f"coronal slices of the MNI152 T1 with a bias field and noise; pixel shares: CSF {share[1]:.1%}, "
        f"grey {share[2]:.1%}, white matter {share[3]:.1%}; train/val/test are contiguous slabs"])


# --- mni-tissue-vol -----------------------------------------------------------------------------


def build_tissue_volumes(folder: Path) -> dict[str, np.ndarray]:
    """Write mni-tissue-vol's six scans as ``folder/mni_z{slab}_y{half}.nii.gz`` unless there (1 mm,
    each placed where it lies in the brain); returns the reference labels (Z, Y, X) by file name."""
    import nibabel as nib

    from medlabeler.engine.io import read_image
    from medlabeler.engine.workflows import demo

    folder.mkdir(parents=True, exist_ok=True)
    t1 = None
    truth = mni_truth()
    depth, rows = truth.shape[0], truth.shape[1]
    parts = {}
    for a, (z0, z1) in enumerate([(0, 63), (63, 126), (126, depth)]):
        for b, (y0, y1) in enumerate([(0, rows // 2), (rows // 2, rows)]):
            name = f"mni_z{a}_y{b}.nii.gz"
            parts[name] = truth[z0:z1, y0:y1, :]
            path = folder / name
            if path.exists():
                continue
            if t1 is None:
                t1 = read_image(demo.mni_file("t1")).array.astype(np.float32)
            affine = np.eye(4)
            affine[:3, 3] = [0.0, y0, z0]
            tmp = path.with_name(path.name + ".part.nii.gz")
            nib.save(nib.Nifti1Image(t1[z0:z1, y0:y1, :].transpose(2, 1, 0), affine), tmp)  # nibabel: (X, Y, Z)
            tmp.replace(path)
    return parts


def _tissue_volumes(folder: Path) -> BenchmarkData:
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.engine.workflows import demo

    parts = build_tissue_volumes(folder)

    def make(root: Path):
        project, _report = create_project(root, folder, task="segmentation", names=list(demo.LABELS), unit="image")
        return project

    def truth(sample):
        return parts[Path(sample.path).name]

    return BenchmarkData("mni-tissue-vol", "segmentation", "dice", make, truth, notes=[
        "six scans cut from one MRI (3 axial slabs x front/back halves): held-out scans are other parts "
        "of the same brain"])


# --- mni-tissue-cls -----------------------------------------------------------------------------


def _box_sums(a: np.ndarray, half: int) -> np.ndarray:
    """Sum of `a` (Y, X) over the (2*half) x (2*half) box centred at every pixel (0 near the border)."""
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    out = np.zeros(a.shape, dtype=c.dtype)
    ys, xs = slice(half, a.shape[0] - half + 1), slice(half, a.shape[1] - half + 1)
    y0, x0 = np.arange(a.shape[0] - 2 * half + 1), np.arange(a.shape[1] - 2 * half + 1)
    out[ys, xs] = (c[np.ix_(y0 + 2 * half, x0 + 2 * half)] - c[np.ix_(y0, x0 + 2 * half)]
                   - c[np.ix_(y0 + 2 * half, x0)] + c[np.ix_(y0, x0)])
    return out


def patch_candidates(truth: np.ndarray, *, patch: int = 32, centre: int = 8, stride: int = 4,
                     purity: float = 0.75, near_brain: float = 0.2) -> dict[int, np.ndarray]:
    """Candidate patch centres (z, y, x) per class index of `PATCH_CLASSES[3]` order
    (0 grey, 1 white, 2 other): the class covers >= `purity` of the central `centre` x `centre`
    box; "other" (background, CSF, skull) also needs >= `near_brain` of the patch to be brain,
    so it is not a patch of empty air."""
    half, c = patch // 2, centre // 2
    found: dict[int, list] = {0: [], 1: [], 2: []}
    for z in np.flatnonzero(truth.reshape(len(truth), -1).any(1)):
        plane = truth[z]
        grid = np.zeros(plane.shape, bool)
        grid[half:plane.shape[0] - half + 1:stride, half:plane.shape[1] - half + 1:stride] = True
        area = float(centre * centre)
        brain = _box_sums((plane > 0).astype(np.int32), half) / float(patch * patch)
        for cls, label in ((0, 1), (1, 2)):
            frac = _box_sums((plane == label).astype(np.int32), c) / area
            ys, xs = np.nonzero(grid & (frac >= purity))
            found[cls] += [(int(z), int(y), int(x)) for y, x in zip(ys, xs)]
        frac = _box_sums((plane == 0).astype(np.int32), c) / area
        ys, xs = np.nonzero(grid & (frac >= purity) & (brain >= near_brain))
        found[2] += [(int(z), int(y), int(x)) for y, x in zip(ys, xs)]
    return {k: np.asarray(v, dtype=np.int64).reshape(-1, 3) for k, v in found.items()}


def build_tissue_patches(folder: str | Path, *, n_patches: int = 900, classes: int = 3, patch: int = 32,
                         slabs: int = 20, seed: int = 0) -> dict:
    """Write `n_patches` PNG patches (equal counts per class) of the MNI152 T1 into
    ``folder/<class>/slabNN_zZZZ_yYYY_xXXX.png``; returns the manifest (also in manifest.json).
    Reuses the folder when its manifest matches the arguments."""
    from PIL import Image as PILImage

    from medlabeler.engine.workflows.demo import mni_file
    from medlabeler.engine.io import read_image

    if classes not in PATCH_CLASSES:
        raise ValueError(f"classes must be one of {sorted(PATCH_CLASSES)}, not {classes}")
    folder = Path(folder)
    params = {"n_patches": int(n_patches), "classes": int(classes), "patch": int(patch), "slabs": int(slabs),
              "seed": int(seed), "source": "nilearn MNI152 T1 2009a + demo_truth()"}
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("params") == params:
            return manifest
    truth = mni_truth()
    t1 = np.asarray(read_image(mni_file("t1")).array, dtype=np.float32)
    lo, hi = np.percentile(t1[truth > 0], [0.5, 99.5])
    grey = np.clip((t1 - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    z_brain = np.flatnonzero(truth.reshape(len(truth), -1).any(1))
    z0, z1 = int(z_brain.min()), int(z_brain.max())
    candidates = patch_candidates(truth, patch=patch)
    names = PATCH_CLASSES[classes]
    rng = np.random.default_rng(seed)
    per_class = n_patches // classes
    half = patch // 2
    counts: dict[str, int] = {}
    slab_counts: dict[int, int] = {}
    for cls, name in enumerate(names):
        pool = candidates[cls]
        if len(pool) < per_class:
            raise InputError(folder, f"only {len(pool)} {name} patch centres for {per_class} patches")
        out = folder / name
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.png"):
            old.unlink()
        for z, y, x in pool[rng.choice(len(pool), size=per_class, replace=False)]:
            slab = (int(z) - z0) * slabs // (z1 - z0 + 1)
            slab_counts[slab] = slab_counts.get(slab, 0) + 1
            PILImage.fromarray(grey[z, y - half:y + half, x - half:x + half]).save(
                out / f"slab{slab:02d}_z{z:03d}_y{y:03d}_x{x:03d}.png")
        counts[name] = per_class
    manifest = {"params": params, "classes": list(names), "counts": counts,
                "candidates": {names[k]: int(len(candidates[k])) for k in range(classes)},
                "slabs": {str(k): v for k, v in sorted(slab_counts.items())}}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def slab_groups(infos: list) -> list:
    """SourceInfos whose split group is the slab named in the file name (``slabNN_...``)."""
    from medlabeler.engine.io.sources import group_key

    out = []
    for info in infos:
        match = _SLAB.match(Path(info.path).name)
        out.append(replace(info, group=group_key(f"mni-tissue-cls/slab{match.group(1)}")) if match else info)
    return out


def _patch_classification(folder: Path, manifest: dict) -> BenchmarkData:
    from medlabeler.engine.io import scan_sources
    from medlabeler.engine.store import Project

    names = sorted(manifest["classes"])  # what create_project names an ISIC folder's classes

    def make(root: Path):
        infos, errors = scan_sources(folder)
        if errors:
            raise errors[0]
        project = Project.create(root, task="classification", names=names, unit="image", seed=0)
        project.add_sources(slab_groups(infos))
        return project

    def truth(sample):
        return names.index(Path(sample.path).parent.name)

    return BenchmarkData("mni-tissue-cls", "classification", "auc", make, truth, notes=[
        f"{sum(manifest['counts'].values())} patches of 32x32 px, classes {names}, split by "
        f"{manifest['params']['slabs']} slabs of axial slices (neighbouring slabs share anatomy)"])


# --- an existing project ------------------------------------------------------------------------


def _key(sample) -> tuple:
    return (str(sample.path), sample.series_uid, sample.slice_index)


def _existing_project(path: Path) -> BenchmarkData:
    from medlabeler.engine.io import scan_sources
    from medlabeler.engine.store import Project

    with Project.open(path, readonly=True) as original:
        task = original.task
        labels = {_key(s): original.load_label(s.id) for s in original.samples(labeled=True)}
        wanted = {(str(s.path), s.series_uid) for s in original.samples()}
        unlabeled = len(original.samples(labeled=False))
    if not labels:
        raise InputError(path, "the project has no labels to act as the oracle")
    sources = sorted({p for p, _ in wanted})

    def make(root: Path):
        infos = []
        for source in sources:
            found, errors = scan_sources(source)
            if errors and not found:
                raise errors[0]
            infos += [i for i in found if (str(Path(i.path).resolve()), i.series_uid) in wanted
                      or (str(i.path), i.series_uid) in wanted]
        project = Project.create(root, task=task.kind, names=list(task.names), colors=list(task.colors),
                                 unit=task.unit, seed=task.seed, split_fractions=tuple(task.split_fractions),
                                 slabs=task.slabs)
        project.add_sources(infos)
        return project

    def truth(sample):
        return labels.get(_key(sample))

    notes = [f"oracle: the labels of {path}"]
    if unlabeled:
        notes.append(f"{unlabeled} samples of {path} have no label: they are never revealed or evaluated")
    return BenchmarkData(path.name, task.kind, "dice" if task.kind == "segmentation" else "auc", make, truth, notes)
