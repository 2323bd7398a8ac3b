"""`medlabeler predict`: write the active model's predictions to a folder.

Segmentation: one NIfTI per volume (predicted slices filled in, the rest 0) or per 2D image, in
the source's geometry. Classification: ``predictions.csv`` with the class and its probabilities.
File names are de-identified (volume/sample numbers) unless ``keep_names``.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def write_predictions(project, out: str | Path, *, sample_ids: list[int] | None = None,
                      keep_names: bool = False, version: int | None = None, fmt: str = "nifti",
                      deidentify: bool = False, unreadable: list | None = None) -> int:
    """Predict ``sample_ids`` (default: all samples) and write them under ``out``; returns how
    many were written. With a list as ``unreadable``, samples whose images no longer read are
    left out and their errors put there (else the first one stops the export).

    ``fmt="dicom-seg"`` writes one DICOM-SEG per source series instead of NIfTI, marked as made
    by medlabeler's model (``deidentify``: without the source's patient identifiers)."""
    from medlabeler.engine.workflows.model_versions import load_model
    from medlabeler.engine.workflows.predict import predict_samples

    out = Path(out)
    if fmt not in ("nifti", "dicom-seg"):
        raise ValueError(f"unknown prediction format {fmt!r} (nifti or dicom-seg)")
    if fmt == "dicom-seg" and project.task.kind != "segmentation":
        from medlabeler.engine.errors import ProjectError

        raise ProjectError(f"{project.root}: DICOM-SEG predictions need a segmentation project")
    bundle = load_model(project, version)
    samples = {s.id: s for s in project.samples()}
    ids = list(sample_ids) if sample_ids is not None else sorted(samples)
    unknown = [i for i in ids if i not in samples]
    if unknown:
        raise ValueError(f"no samples with ids {unknown[:10]} in {project.root}")
    if fmt == "dicom-seg":  # before the model runs: a NIfTI or PNG source cannot get a SEG
        from medlabeler.engine.project.dicom_seg import require_dicom_sources

        require_dicom_sources([samples[i] for i in ids])
    out.mkdir(parents=True, exist_ok=True)  # only once nothing refuses: a refusal leaves no empty folder
    written: list[int] = []

    def counted(stream):  # the writers consume the stream one sample at a time: no list of maps
        for sample_id, probs in stream:
            written.append(sample_id)
            yield sample_id, probs

    predictions = counted(predict_samples(project, ids, model_bundle=bundle, unreadable=unreadable))
    index = None
    if project.task.kind == "classification":
        _write_classes(project, out, predictions, samples, keep_names)
    elif fmt == "dicom-seg":
        index = _write_segs(project, out, predictions, samples, bundle[2], keep_names, deidentify)
    else:
        index = _write_masks(project, out, predictions, samples, keep_names)
    about = {"model_version": bundle[2].version, "method": bundle[2].method, "names": list(project.task.names)}
    if index is not None:
        about["volumes"] = index  # each file's samples: the way back from a de-identified name
    (out / "model.json").write_text(json.dumps(about, indent=1))
    return len(written)


def _write_classes(project, out: Path, predictions, samples, keep_names: bool) -> None:
    names = list(project.task.names)
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample", "split", "prediction", *[f"p_{n}" for n in names]] + (["source"] if keep_names else []))
        for sample_id, probs in predictions:
            sample = samples[sample_id]
            row = [sample_id, sample.split, names[int(np.argmax(probs))], *[f"{p:.4f}" for p in probs]]
            writer.writerow(row + ([sample.path] if keep_names else []))


def _masks_by_source(predictions, samples) -> dict[tuple[str, str | None], dict]:
    by_source: dict[tuple[str, str | None], dict] = defaultdict(dict)
    for sample_id, probs in predictions:
        sample = samples[sample_id]
        by_source[(sample.path, sample.series_uid)][sample.slice_index] = probs.argmax(0).astype(np.uint8)
    return by_source


def _write_segs(project, out: Path, predictions, samples, model, keep_names: bool, deidentify: bool) -> list[dict]:
    """One DICOM-SEG per series; returns each file with the samples it holds, as `_write_masks`."""
    from medlabeler import __version__
    from medlabeler.engine.project.dicom_seg import Algorithm, in_seg_order, write_label_segs

    algorithm = Algorithm(name="medlabeler", version=__version__, model_version=model.version, method=model.method)
    by_source = _masks_by_source(predictions, samples)
    files = write_label_segs(project, out, by_source, algorithm=algorithm, deidentify=deidentify,
                             keep_names=keep_names, suffix="prediction_seg")
    return [_held(target, source, masks, samples) for target, (source, masks) in zip(files, in_seg_order(by_source))]


def _held(target: Path, source: tuple[str, str | None], masks: dict, samples: dict) -> dict:
    """An index entry: a written file and the samples (id, slice, split) of ``source`` it holds."""
    held = sorted((s for s in samples.values() if (s.path, s.series_uid) == source and s.slice_index in masks),
                  key=lambda s: s.slice_index or 0)
    return {"file": target.name, "samples": [{"sample": s.id, "slice": s.slice_index, "split": s.split} for s in held]}


def _write_masks(project, out: Path, predictions, samples, keep_names: bool) -> list[dict]:
    """NIfTI masks, one per source; returns each file with the samples (id, slice, split) it holds."""
    from medlabeler.engine.project.export import write_mask_nifti
    from medlabeler.engine.project.names import export_stem

    by_source = _masks_by_source(predictions, samples)
    index, stems = [], set()
    for number, ((path, series_uid), masks) in enumerate(sorted(by_source.items(), key=lambda kv: kv[0][0]), 1):
        stem = export_stem(path, number, "volume", keep_names, stems)
        target = write_mask_nifti(out / f"{stem}_prediction.nii.gz", path, series_uid, masks)
        index.append(_held(target, (path, series_uid), masks, samples))
    return index
