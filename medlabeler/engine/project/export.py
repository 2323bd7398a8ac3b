"""Export a project's labels: masks as NIfTI or PNG (2D), classes as CSV.

Exports are de-identified by default: files are named by volume/sample number, never by the
source file name (which often carries a patient name or ID); ``keep_names=True`` is the user
asking for source names.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from medlabeler.engine.errors import ProjectError
from medlabeler.engine.project.names import export_stem
from medlabeler.engine.store import Project

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


LEFT_OUT = "left out of the export"


class ExportIncomplete(ProjectError):
    """The export wrote every label but those whose saved file is damaged (``problems``, each naming
    its file): one torn mask file had stopped the export of all the others. ``files``: what it wrote."""

    def __init__(self, files: list[Path], problems: list[Exception]):
        self.files, self.problems = files, problems
        many = len(problems) > 1
        super().__init__(f"{len(problems)} label{'s' * many} {LEFT_OUT}, {'their' if many else 'its'} saved file "
                         f"damaged: {problems[0]}" + (f" (and {len(problems) - 1} more)" if many else ""))


def export_project(project: Project, out: str | Path, *, fmt: str, keep_names: bool = False,
                   deidentify: bool = False) -> list[Path]:
    """Write the current labels to ``out``; returns the files written. Labels whose file is damaged
    are left out, and then `ExportIncomplete` says which, after the others are written.

    ``deidentify`` applies to DICOM-SEG, which otherwise carries its source's patient and study."""
    out = Path(out)
    if fmt in ("nifti", "png"):
        refuse_the_images_folder(project, out)
    out.mkdir(parents=True, exist_ok=True)
    damaged: list[Exception] = []
    if fmt == "csv":
        files = [_export_csv(project, out, keep_names, damaged)]
    elif fmt == "nifti":
        if project.task.kind != "segmentation":
            raise ProjectError(f"{project.root}: NIfTI export needs a segmentation project; use --format csv")
        files = _export_nifti(project, out, keep_names, damaged)
    elif fmt == "png":
        files = _export_png(project, out, keep_names, damaged)
    elif fmt == "dicom-seg":
        from medlabeler.engine.project.dicom_seg import export_segs

        files = export_segs(project, out, deidentify=deidentify, keep_names=keep_names, damaged=damaged)
    else:
        raise ValueError(f"unknown export format {fmt!r} (nifti, png, csv or dicom-seg)")
    if not project.readonly:  # a read-only handle (the app holds the project) cannot record it
        project.audit("export", format=fmt, files=len(files), keep_names=keep_names, left_out=len(damaged),
                      **({"deidentify": deidentify} if fmt == "dicom-seg" else {}))
    if damaged:
        raise ExportIncomplete(files, damaged)
    return files


#: The index files an export writes beside the masks (`labels.json`), or instead of them (`labels.csv`).
INDEX_FILES = ("labels.json", "labels.csv")


def written_text(files: list, fmt: str) -> str:
    """What an export wrote, in words the command line and the app both say: "6 mask files and
    labels.json", "2 DICOM-SEG files", "labels.csv"."""
    masks = [f for f in files if Path(f).name not in INDEX_FILES]
    index = [Path(f).name for f in files if Path(f).name in INDEX_FILES]
    kind = "DICOM-SEG" if fmt == "dicom-seg" else "mask"
    what = f"{len(masks)} {kind} file{'s' * (len(masks) != 1)}" if masks else ""
    return " and ".join(part for part in (what, *index) if part) or "nothing"


#: The columns of a CSV export (then image_key, and source with the names kept): `import-labels` reads it back.
CSV_EXPORT_COLUMNS = ("sample", "split", "slice", "label", "origin")


def _export_csv(project: Project, out: Path, keep_names: bool, damaged: list) -> Path:
    task = project.task
    path = out / "labels.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*CSV_EXPORT_COLUMNS, "image_key"] + (["source"] if keep_names else []))
        keys: dict[tuple, str] = {}
        for sample, value in project.labels_that_read(project.samples(labeled=True), damaged):
            version = project.label(sample.id)
            if task.kind == "classification":
                label = task.names[int(value)]
            else:
                present = sorted(int(v) for v in np.unique(value) if v)
                label = ";".join(task.names[v - 1] for v in present)
            source = (sample.path, sample.series_uid)
            key = keys.setdefault(source, image_key(project, *source) or "")
            row = [sample.id, sample.split, "" if sample.slice_index is None else sample.slice_index, label,
                   version.origin, key]
            writer.writerow(row + ([sample.path] if keep_names else []))
    return path


def nifti_affine(image) -> np.ndarray:
    """Affine for NIfTI, whose (i, j, k) is our array's (X, Y, Z), in RAS millimetres.

    Readers give affines in our array's (Z, Y, X) order and DICOM's LPS space.
    """
    if image.affine is None:
        return np.diag([*image.spacing[::-1], 1.0])
    reorder = np.zeros((4, 4))
    reorder[0, 2] = reorder[1, 1] = reorder[2, 0] = reorder[3, 3] = 1.0
    affine = np.asarray(image.affine) @ reorder
    return LPS_TO_RAS @ affine if image.metadata.get("space", "LPS") == "LPS" else affine


def _export_nifti(project: Project, out: Path, keep_names: bool, damaged: list) -> list[Path]:
    by_source: dict[tuple[str, str | None], dict] = defaultdict(dict)
    samples_of: dict[tuple[str, str | None], list] = defaultdict(list)
    for sample, value in project.labels_that_read(project.samples(labeled=True), damaged):
        by_source[(sample.path, sample.series_uid)][sample.slice_index] = value
        samples_of[(sample.path, sample.series_uid)].append(sample)
    files, index, stems = [], [], set()
    dtype = np.uint16 if len(project.task.names) > 255 else np.uint8
    for number, ((path, series_uid), masks) in enumerate(sorted(by_source.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")), 1):
        stem = export_stem(path, number, "volume", keep_names, stems)
        target = write_mask_nifti(out / f"{stem}_labels.nii.gz", path, series_uid, masks, dtype)
        files.append(target)
        labeled_slices = sorted(k for k in masks if k is not None)
        # the project's sample ids (as `queue`, the app and the CSV export name them): the way back
        # from a de-identified file name to the sample, slice and split
        samples = [{"sample": s.id, "slice": s.slice_index, "split": s.split}
                   for s in sorted(samples_of[(path, series_uid)], key=lambda s: s.slice_index or 0)]
        index.append({"file": target.name, "labeled_slices": labeled_slices or "all", "samples": samples,
                      **_keyed(image_key(project, path, series_uid)), **({"source": path} if keep_names else {})})
    names = {"labels": {str(i + 1): n for i, n in enumerate(project.task.names)}, "volumes": index}
    (out / "labels.json").write_text(json.dumps(names, indent=1))
    return files + [out / "labels.json"]


def _export_png(project: Project, out: Path, keep_names: bool, damaged: list) -> list[Path]:
    """One PNG per labeled 2D image or slice, its pixels the label numbers (0 background), in the
    image's own rows and columns: what `import-labels` reads and what a 2D tool expects (a NIfTI of
    a PNG holds it transposed, as (X, Y, 1)). With ``keep_names`` a 2D image's mask is named as the
    image, so that a folder of them imports again as it is (a slice's adds ``_sliceNNNN``, and a
    name two images share adds the number of the second)."""
    if project.task.kind != "segmentation":
        raise ProjectError(f"{project.root}: PNG export needs a segmentation project; export the classes as CSV")
    by_source: dict[tuple[str, str | None], list] = defaultdict(list)
    for sample in project.samples(labeled=True):
        if sample.is_volume and sample.slice_index is None:
            raise ProjectError(f"{project.root}: sample {sample.id} is a whole volume and PNG holds 2D masks; "
                               "export it as NIfTI or DICOM-SEG")
        by_source[(sample.path, sample.series_uid)].append(sample)
    planned, stems = [], set()
    for number, ((path, series_uid), samples) in enumerate(sorted(by_source.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")), 1):
        samples = sorted(samples, key=lambda s: s.slice_index or 0)
        stem = export_stem(path, number, "image", keep_names, stems)
        if any(_png_name(stem, s).lower()[:-4] in stems for s in samples if s.slice_index is not None):
            stem = f"{stem}_{number:04d}"  # a slice's name that an image has already (brain_slice0001.png)
        stems.update(_png_name(stem, s).lower()[:-4] for s in samples)
        key = _keyed(image_key(project, path, series_uid))
        planned.extend((_png_name(stem, sample), sample, path, key) for sample in samples)
    files, index = [], []
    for name, sample, path, key in planned:
        read = next(project.labels_that_read([sample], damaged), None)  # one mask in memory at a time
        if read is None:
            continue
        files.append(write_mask_png(out / name, read[1]))
        index.append({"file": name, "sample": sample.id, "slice": sample.slice_index, "split": sample.split,
                      **key, **({"source": path} if keep_names else {})})
    names = {"labels": {str(i + 1): n for i, n in enumerate(project.task.names)}, "masks": index}
    (out / "labels.json").write_text(json.dumps(names, indent=1))
    return files + [out / "labels.json"]


def _png_name(stem: str, sample) -> str:
    return f"{stem}.png" if sample.slice_index is None else f"{stem}_slice{sample.slice_index:04d}.png"


def _keyed(key: str | None) -> dict[str, str]:
    return {"image_key": key} if key else {}


def image_key(project: Project, path: str, series_uid: str | None) -> str | None:
    """What ties a de-identified export's file (or CSV row) to its image, with no name in it: a
    hash of the image's content key (its size and its file's ends; a DICOM folder's file names and
    sizes, which two patients' series can share) and its series UID. `import-labels` takes an
    export's sample ids only where this project's image under them gives the same key. The key
    recorded at the import, else the file's as it is now (a project made before medlabeler kept
    them); None when neither can be had."""
    from medlabeler.engine.store.files import content_key

    key = project.recorded_keys(path)[1] or content_key(path)
    if key is None:
        return None
    return key if series_uid is None else hashlib.sha1(f"{key}\0{series_uid}".encode()).hexdigest()


def refuse_the_images_folder(project: Project, out: Path) -> None:
    """Masks go elsewhere than the images: named as its image, a mask replaced it (and trained as
    it from then on), and any mask there is taken for an image by the next import of the folder."""
    folders = set()
    for path in {s.path for s in project.samples()}:  # each source once: a volume has hundreds of slices
        real = os.path.realpath(path)
        folders.add(real if os.path.isdir(real) else os.path.dirname(real))  # a DICOM series is a folder
    if os.path.realpath(out) in folders:
        raise ProjectError(f"{out}: holds the project's images; masks there would replace them or be taken "
                           "for images by a later import: export into another folder")


def write_mask_png(target: Path, mask: np.ndarray) -> Path:
    """A label mask as a greyscale PNG of its label numbers (16 bits past 255 labels)."""
    from PIL import Image

    mask = np.asarray(mask)
    array = mask.astype(np.uint8) if mask.max(initial=0) <= 255 else mask.astype(np.uint16)
    Image.fromarray(array).save(target)
    return target


def write_mask_nifti(target: Path, path: str, series_uid: str | None, masks: dict, dtype=np.uint8) -> Path:
    """Write masks of one source as NIfTI in its geometry: ``masks`` maps slice index (None for
    the whole image or volume) to a mask; slices without one stay 0."""
    import nibabel as nib

    from medlabeler.engine.io import read_image

    image = read_image(path, series_uid)
    spatial = image.array.shape[:3] if image.is_volume else image.array.shape[:2]
    mask = np.zeros(spatial, dtype=dtype)
    for slice_index, part in masks.items():
        if slice_index is None:
            mask[...] = part
        else:
            mask[slice_index] = part
    data = mask.transpose(2, 1, 0) if mask.ndim == 3 else mask.T[:, :, None]
    nib.save(nib.Nifti1Image(data, nifti_affine(image) if mask.ndim == 3 else np.eye(4)), target)
    return target
