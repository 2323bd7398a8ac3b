"""DICOM-SEG in and out (through highdicom): labels and predictions as DICOM Segmentation objects.

One SEG per source series: the frames of a volume (or the labeled slices of a slice project)
each reference the source instance they segment, so a viewer or PACS lays the SEG over the
right images. Segments carry the project's label names and colours, coded with SNOMED CT where
the name is a structure pydicom's code dictionaries know (liver, lung, grey matter, tumour ...)
and a generic "Tissue" code otherwise.

A SEG has to carry the patient and study of its source (DICOM requires it, or it attaches to no
study); ``deidentify=True`` blanks the patient identifiers instead and keeps the UIDs, so the
copy still references its images.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medlabeler.engine.errors import InputError, ProjectError

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_SERIES_NUMBER = 100
PREDICTION_SERIES_NUMBER = 200
# British spellings and synonyms -> the keyword pydicom's SNOMED CT dictionary uses.
_SYNONYMS = {"grey": "gray", "tumour": "neoplasm", "tumor": "neoplasm", "oedema": "edema",
             "haemorrhage": "hemorrhage", "oesophagus": "esophagus", "csf": "cerebrospinal fluid"}
# Whole label names that name a coded structure in other words ("bone" alone is bone tissue;
# "bone marrow" keeps its own code).
_WHOLE_NAMES = {"bone": "bone tissue", "bones": "bone tissue"}
# Patient-identifying attributes a de-identified copy leaves empty (PS3.15 basic profile, the
# part a SEG carries from its source: Patient and General Study modules).
_IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
                "OtherPatientIDs", "OtherPatientNames", "IssuerOfPatientID", "AccessionNumber",
                "ReferringPhysicianName", "StudyID", "InstitutionName", "PatientComments")
# Type 2 attributes (present, may be empty) highdicom copies from the source; some files lack them.
_TYPE2_FROM_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                      "ReferringPhysicianName", "StudyID", "AccessionNumber")
REQUIRES_IDENTIFIERS = ("DICOM-SEG files carry the patient and study of their source series (DICOM "
                        "requires it for a SEG to attach to its study); --deidentify writes them "
                        "without patient identifiers")


@dataclass(frozen=True)
class Algorithm:
    """Who made a prediction SEG: written as its Algorithm Identification Sequence."""

    name: str
    version: str
    model_version: int
    method: str = ""


# ----------------------------------------------------------------------------- codes


def _keyword(name: str) -> str:
    words = re.findall(r"[a-z0-9]+", name.lower())
    words = _WHOLE_NAMES.get(" ".join(words), " ".join(_SYNONYMS.get(w, w) for w in words)).split()
    return "".join(w.capitalize() for w in words)


def segment_codes(name: str) -> tuple[Any, Any]:
    """(category, type) codes of a segment called ``name``: SNOMED CT when pydicom knows the
    structure (lesions under "Morphologically abnormal structure", tissues under "Tissue",
    other anatomy under "Anatomical structure"), else the generic Tissue/Tissue pair."""
    from pydicom.sr.codedict import codes

    keyword = _keyword(name)
    category_of = ((codes.cid7159, codes.cid7150.MorphologicallyAbnormalStructure),
                   (codes.cid7166, codes.cid7150.Tissue),
                   (codes.cid7151, codes.cid7150.AnatomicalStructure))
    for context, category in category_of:
        if keyword and keyword in context.dir():
            return category, getattr(context, keyword)
    return codes.cid7150.Tissue, codes.SCT.Tissue


def _colour(hex_colour: str):
    import highdicom as hd

    text = hex_colour.lstrip("#")
    rgb = tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))
    return hd.color.CIELabColor.from_rgb(*rgb)


def segment_descriptions(names, colors, algorithm: Algorithm | None = None) -> list:
    """One SegmentDescription per label (segment number = mask value)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    identification = None
    if algorithm is not None:
        parameters = {"model_version": str(algorithm.model_version)}
        if algorithm.method:
            parameters["method"] = algorithm.method
        identification = hd.AlgorithmIdentificationSequence(
            name=algorithm.name, version=algorithm.version, family=codes.cid7162.ArtificialIntelligence,
            parameters=parameters)
    out = []
    for number, name in enumerate(names, 1):
        category, kind = segment_codes(name)
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type="AUTOMATIC" if algorithm is not None else "MANUAL",
            algorithm_identification=identification,
            display_color=_colour(colors[number - 1]) if number - 1 < len(colors) else None))
    return out


# ----------------------------------------------------------------------------- sources


@dataclass
class SourceSeries:
    """The DICOM datasets behind one project source, in the order of its array's slices."""

    datasets: list  # headers without pixel data; one per slice, or one multi-frame file
    frame_order: list[int] | None = None  # multi-frame: file frame of each array slice
    where: str = ""  # the file or series folder, for messages
    missing: tuple[int, ...] = ()  # slices no file holds (shown blank): no image, so no frame

    def __post_init__(self) -> None:
        for ds in self.datasets:  # our own parsed headers: filling them changes no file
            for keyword in _TYPE2_FROM_SOURCE:
                if keyword not in ds:
                    setattr(ds, keyword, "")

    @property
    def n_slices(self) -> int:
        return len(self.frame_order) if self.frame_order is not None else len(self.datasets)

    def instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def source_series(path: str, series_uid: str | None) -> SourceSeries:
    """Headers of a project source in array order; InputError naming it when it is not DICOM."""
    from medlabeler.engine.io import dicom
    from medlabeler.engine.io.sources import classify

    where = Path(path)
    if where.is_file():
        kind = classify(where)
        if kind in ("nifti", "raster"):
            raise InputError(where, f"is not DICOM ({'NIfTI' if kind == 'nifti' else 'a plain image'}): a DICOM-SEG "
                                    "must reference DICOM images; export this project with --format nifti")
        ds = dicom.read_header(where)
        if dicom.n_frames(ds) > 1:
            geometry, _, _ = dicom.frame_geometry(ds)
            return SourceSeries([ds], [int(i) for i in geometry.order], str(where))
        return SourceSeries([ds], where=str(where))
    if not where.is_dir():
        raise InputError(where, "source image is missing: it was moved or deleted after it was added")
    groups = dicom.group_series(dicom.candidate_files(where), wanted_uid=series_uid)
    group = next((g for g in groups.values() if g.series_uid == series_uid), None)
    if group is None or not group.single:
        raise InputError(where, "holds no single-frame DICOM series with the project's SeriesInstanceUID")
    # the files the volume was read from (unreadable ones left out, their slices blank), so that
    # frame k references the image of slice k of the labels
    usable = dicom.usable_files(group).single
    if not usable:
        raise InputError(where, "holds no readable single-frame DICOM images of the project's series")
    plan = dicom.plan_series(where, [p for p, _ in usable], [h for _, h in usable])
    return SourceSeries(list(plan.headers), where=str(where), missing=tuple(plan.missing))


def require_dicom_sources(samples) -> None:
    """InputError naming the first source of ``samples`` that a SEG cannot reference (before a
    model runs on them)."""
    for path, uid in sorted({(s.path, s.series_uid) for s in samples}, key=lambda k: (k[0], k[1] or "")):
        _check_referable(source_series(path, uid))


def frame_positions(source: SourceSeries) -> list | None:
    """Each file frame's position in the patient (a multi-frame source), None where a frame has none."""
    from medlabeler.engine.io.dicom.geometry import _position

    ds = source.datasets[0]
    if source.frame_order is None or not ds.get("FrameOfReferenceUID"):
        return None
    positions = [_position(ds, frame) for frame in range(len(source.frame_order))]
    return None if any(p is None for p in positions) else positions


def _check_referable(source: SourceSeries) -> None:
    """A multi-frame image without a position per frame (a cine ultrasound, some enhanced MR)
    cannot carry a SEG of its frames: say so before any work, in words, not highdicom's."""
    if source.frame_order is not None and frame_positions(source) is None:
        what = ("no Frame of Reference UID" if not source.datasets[0].get("FrameOfReferenceUID")
                else "no position for each frame (Plane Position Sequence)")
        raise InputError(source.where, f"a multi-frame image with {what}: a DICOM-SEG cannot say which of its "
                                       "frames a mask belongs to; write NIfTI instead (--format nifti)")


# ----------------------------------------------------------------------------- writing


def build_seg(source: SourceSeries, masks: dict, names, colors, *, algorithm: Algorithm | None = None,
              deidentify: bool = False, description: str = "medlabeler labels",
              series_number: int = LABEL_SERIES_NUMBER):
    """The SEG of ``source`` (a highdicom Segmentation, a pydicom Dataset): ``masks`` maps slice
    index (None: the whole image/volume) to a label mask (0 background, i the i-th name). Only
    the given slices become frames. InputError naming the source when highdicom refuses it."""
    _check_referable(source)
    pixels, datasets, positions = _frames(source, masks)
    try:
        seg = _segmentation(pixels, datasets, names, colors, algorithm, description, series_number, positions)
    except (ValueError, TypeError, AttributeError) as exc:  # highdicom's checks of the source
        raise InputError(source.where, f"cannot be referenced by a DICOM-SEG ({exc})") from exc
    if deidentify:
        _deidentify(seg)
    return seg


def _segmentation(pixels, datasets, names, colors, algorithm, description, series_number, positions=None):
    import highdicom as hd
    from pydicom.uid import generate_uid

    from medlabeler import __version__

    plane_positions = None if positions is None else [
        hd.PlanePositionSequence(coordinate_system=hd.CoordinateSystemNames.PATIENT, image_position=list(p))
        for p in positions]
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, plane_positions=plane_positions, segmentation_type="BINARY",
        segment_descriptions=segment_descriptions(names, colors, algorithm),
        series_instance_uid=generate_uid(), series_number=series_number, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="medlabeler", manufacturer_model_name="medlabeler",
        software_versions=__version__, device_serial_number="none", series_description=description,
        content_label="PREDICTION" if algorithm is not None else "LABELS", content_description=description,
        omit_empty_frames=False)


def _frames(source: SourceSeries, masks: dict) -> tuple[np.ndarray, list, list | None]:
    """Label-map frames, the source datasets they segment, in the source's own order, and (some
    frames of a multi-frame image) the position of each: how highdicom finds the frame referenced."""
    if None in masks:
        whole = np.asarray(masks[None])
        slices = {i: whole[i] for i in range(whole.shape[0])} if whole.ndim == 3 else {0: whole}
    else:
        slices = {int(k): np.asarray(v) for k, v in masks.items()}
    # a slice missing from the series has no image to reference: a whole volume's SEG leaves it out
    order = [i for i in sorted(slices) if i not in source.missing]
    dtype = np.uint16 if max(int(m.max(initial=0)) for m in slices.values()) > 255 else np.uint8
    if source.frame_order is not None:  # one multi-frame file: frames in file order
        frames = sorted((source.frame_order[i], i) for i in slices)
        pixels = np.stack([slices[i] for _, i in frames]).astype(dtype)
        if len(frames) == source.n_slices:
            return pixels, source.datasets, None
        positions = frame_positions(source)
        return pixels, source.datasets, [positions[frame] for frame, _ in frames]
    return np.stack([slices[i] for i in order]).astype(dtype), [source.datasets[i] for i in order], None


def _deidentify(seg) -> None:
    for keyword in _IDENTIFYING:
        if keyword in seg:
            setattr(seg, keyword, "")
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = "medlabeler: patient identifiers removed, UIDs kept"  # LO: 64 chars


def in_seg_order(masks_by_source: dict) -> list[tuple]:
    """The (source, masks) items in the order `write_label_segs` writes them and returns their files."""
    return sorted(masks_by_source.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))


def write_label_segs(project, out: str | Path, masks_by_source: dict, *, algorithm: Algorithm | None = None,
                     deidentify: bool = False, keep_names: bool = False, suffix: str = "seg") -> list[Path]:
    """One SEG per (path, series_uid) of ``masks_by_source`` (slice index -> mask) under ``out``.

    Every SEG is built before any is written: one source that cannot get a SEG writes nothing."""
    from medlabeler.engine.project.names import export_stem

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ordered = in_seg_order(masks_by_source)
    sources = [source_series(path, uid) for (path, uid), _ in ordered]
    names, colors = project.task.names, project.task.colors
    description = "medlabeler prediction" if algorithm is not None else "medlabeler labels"
    if algorithm is not None:
        description += f" (model v{algorithm.model_version})"
    series_number = PREDICTION_SERIES_NUMBER if algorithm is not None else LABEL_SERIES_NUMBER
    built, stems = [], set()
    with identifiers_kept_out_of_warnings([ds for source in sources for ds in source.datasets]):
        for number, (((path, _uid), masks), source) in enumerate(zip(ordered, sources), 1):
            stem = export_stem(path, number, "volume", keep_names, stems)
            built.append((out / f"{stem}_{suffix}.dcm", build_seg(
                source, masks, names, colors, algorithm=algorithm, deidentify=deidentify, description=description,
                series_number=series_number)))
        for target, seg in built:
            seg.save_as(target)
    for (target, _), ((_, masks), source) in zip(built, zip(ordered, sources)):
        if left_out := sorted(k for k in masks if k is not None and k in source.missing):
            log.warning("%s: labeled slice%s %s left out: no readable file holds %s now (deleted or damaged "
                        "since the import)", target.name, "s" * (len(left_out) > 1),
                        ", ".join(map(str, left_out)), "them" if len(left_out) > 1 else "it")
    return [target for target, _ in built]


@contextmanager
def identifiers_kept_out_of_warnings(datasets):
    """highdicom and pydicom quote values in their warnings ('The string "<a patient's name>" is
    unlikely to represent the intended person name'): re-issue them with the patient's
    identifiers replaced, so a terminal or a log never shows them."""
    secrets = set()
    for ds in datasets:
        for keyword in _IDENTIFYING:
            value = str(ds.get(keyword, "") or "")
            secrets |= {value, *re.split(r"[\\^=]", value)}  # a name's components appear alone too
    secrets = sorted((s for s in secrets if len(s.strip()) >= 2), key=len, reverse=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        text = str(warning.message)
        for secret in secrets:
            text = text.replace(secret, "<patient identifier>")
        warnings.warn(text, warning.category, stacklevel=3)


def export_segs(project, out: str | Path, *, deidentify: bool = False, keep_names: bool = False,
                damaged: list | None = None) -> list[Path]:
    """The current labels of a segmentation project, one SEG per source series (a label whose file
    is damaged left out, its error put in ``damaged``)."""
    if project.task.kind != "segmentation":
        raise ProjectError(f"{project.root}: DICOM-SEG export needs a segmentation project; use --format csv")
    by_source: dict[tuple[str, str | None], dict] = defaultdict(dict)
    errors = [] if damaged is None else damaged
    for sample, value in project.labels_that_read(project.samples(labeled=True), errors):
        by_source[(sample.path, sample.series_uid)][sample.slice_index] = value
    if damaged is None and errors:
        raise errors[0]
    return write_label_segs(project, out, by_source, deidentify=deidentify, keep_names=keep_names)


# ----------------------------------------------------------------------------- reading


def is_seg_file(path: Path) -> bool:
    """True for a DICOM file whose SOP class is Segmentation Storage."""
    from medlabeler.engine.io.dicom import looks_like_dicom, read_header
    from medlabeler.engine.errors import ImageReadError

    if not path.is_file() or not looks_like_dicom(path):
        return False
    try:
        return str(read_header(path).get("SOPClassUID", "")) == SEG_SOP_CLASS
    except ImageReadError:
        return False


def seg_files(path: Path) -> list[Path]:
    """The SEG files a path names: itself, or those below a folder."""
    if path.is_file():
        return [path] if is_seg_file(path) else []
    return sorted(p for p in path.rglob("*") if not any(part.startswith(".") for part in p.parts) and is_seg_file(p))


def _segread(seg_path: Path):
    """highdicom's Segmentation of a SEG file. A SEG of a projection image (an X-ray: no slice
    thickness) has pixel spacing but no slice thickness in its pixel measures, as highdicom itself
    writes it, and highdicom's reader requires both: such a SEG, medlabeler's own export of a chest
    X-ray included, was refused. The thickness, unused for a single plane, is filled in to read it."""
    import highdicom as hd
    import pydicom

    dataset = pydicom.dcmread(seg_path)
    for groups in (dataset.get("SharedFunctionalGroupsSequence") or [],
                   dataset.get("PerFrameFunctionalGroupsSequence") or []):
        for group in groups:
            for measures in group.get("PixelMeasuresSequence") or []:
                if "PixelSpacing" in measures and "SliceThickness" not in measures:
                    measures.SliceThickness = 1.0
    return hd.seg.Segmentation.from_dataset(dataset, copy=False)


def read_seg_masks(project, seg_path: Path) -> list[tuple[Any, np.ndarray]]:
    """(sample, mask) pairs a SEG gives for the project, checked completely before returning.

    InputError naming the file when it references images outside the project's series, or has
    a segment whose label is not one of the project's label names."""
    try:
        seg = _segread(seg_path)
    except Exception as exc:  # noqa: BLE001 - highdicom raises many kinds for a bad file
        raise InputError(seg_path, f"cannot read DICOM-SEG ({type(exc).__name__}: {exc})") from exc
    members = _referenced_members(project, seg, seg_path)
    refs = _frame_references(seg, seg_path)
    value_of = _segment_values(project, seg, seg_path)
    source = source_series(members[0].path, members[0].series_uid)
    dtype = np.uint16 if len(project.task.names) > 255 else np.uint8
    if source.frame_order is not None:
        per_slice = _multi_frame_slices(seg, seg_path, source, refs)
    else:
        per_slice = _single_frame_slices(seg, seg_path, source, refs)
    per_slice = {i: value_of[numbers.astype(np.int64)].astype(dtype) for i, numbers in per_slice.items()}
    return _assign(members, per_slice, seg_path)


def _single_frame_slices(seg, seg_path: Path, source: SourceSeries, refs) -> dict[int, np.ndarray]:
    """Array slice -> segment numbers, for a SEG of a series of single-frame images."""
    slice_of = {uid: i for i, uid in enumerate(source.instance_uids())}
    foreign = {uid for uid, _ in refs if uid not in slice_of}
    if foreign:
        raise InputError(seg_path, f"references {len(foreign)} images that are not in the project's series")
    framed = sorted({uid for uid, _ in refs}, key=slice_of.get)
    numbers = _pixels(seg_path, seg.get_pixels_by_source_instance, source_sop_instance_uids=framed)
    per_slice = {slice_of[uid]: numbers[i] for i, uid in enumerate(framed)}
    # an image the SEG segments with no frame of its own holds no segment: background (a slice a
    # radiologist erased; tools leave empty frames out, and its old label had stayed)
    empty = np.zeros_like(numbers[0]) if len(framed) else None
    for uid in _referenced_instances(seg):
        if uid in slice_of and slice_of[uid] not in per_slice and empty is not None:
            per_slice[slice_of[uid]] = empty
    return per_slice


def _referenced_instances(seg) -> list[str]:
    """The SOP instance UIDs of the images the SEG says it segments (ReferencedSeriesSequence)."""
    return [str(item.ReferencedSOPInstanceUID) for series in seg.get("ReferencedSeriesSequence", [])
            for item in series.get("ReferencedInstanceSequence", [])]


def _multi_frame_slices(seg, seg_path: Path, source: SourceSeries, refs) -> dict[int, np.ndarray]:
    """Array slice -> segment numbers, for a SEG of the frames of one multi-frame image."""
    uid = source.instance_uids()[0]
    if any(ref != uid for ref, _ in refs):
        raise InputError(seg_path, "references images that are not the project's multi-frame image")
    if any(frame is None for _, frame in refs):
        raise InputError(seg_path, "does not say which frames of the multi-frame image it segments")
    slice_of = {frame + 1: i for i, frame in enumerate(source.frame_order)}  # DICOM frames count from 1
    frames = sorted({frame for _, frame in refs})
    if any(f not in slice_of for f in frames):
        raise InputError(seg_path, "references frames the project's multi-frame image does not have")
    numbers = _pixels(seg_path, seg.get_pixels_by_source_frame, source_sop_instance_uid=uid, source_frame_numbers=frames)
    return {slice_of[f]: numbers[i] for i, f in enumerate(frames)}


def _pixels(seg_path: Path, read, **where) -> np.ndarray:
    try:
        return read(**where, combine_segments=True, relabel=False, ignore_spatial_locations=True)
    except Exception as exc:  # noqa: BLE001 - overlapping segments, fractional SEGs ...
        raise InputError(seg_path, f"cannot read its segments as one label per pixel ({exc})") from exc


def _segment_values(project, seg, seg_path: Path) -> np.ndarray:
    """Lookup table segment number -> project mask value, from the segment labels."""
    lower = {n.lower(): i + 1 for i, n in enumerate(project.task.names)}
    numbers = [int(n) for n in seg.get_segment_numbers()]
    table = np.zeros(max(numbers, default=0) + 1, dtype=np.int64)
    for number in numbers:
        label = str(seg.get_segment_description(number).segment_label)
        if label.strip().lower() not in lower:
            raise InputError(seg_path, f"segment {number} '{label}' is not a label of this project "
                                       f"(labels: {', '.join(project.task.names)})")
        table[number] = lower[label.strip().lower()]
    return table


def _frame_references(seg, seg_path: Path) -> list[tuple[str, int | None]]:
    """(source SOP instance UID, source frame number or None) of each SEG frame."""
    refs = []
    for item in seg.get("PerFrameFunctionalGroupsSequence", []):
        try:
            source = item.DerivationImageSequence[0].SourceImageSequence[0]
            frame = source.get("ReferencedFrameNumber")  # an IS (int) or, for several, a MultiValue
            if frame is not None and not isinstance(frame, int):
                frame = frame[0]
            refs.append((str(source.ReferencedSOPInstanceUID), None if frame is None else int(frame)))
        except (AttributeError, IndexError, TypeError, ValueError):
            raise InputError(seg_path, "a frame does not say which source image it segments") from None
    if not refs:
        raise InputError(seg_path, "has no frames that reference source images")
    return refs


def _referenced_members(project, seg, seg_path: Path) -> list:
    """The project's samples of the one series the SEG references."""
    series = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    if len(series) != 1:
        raise InputError(seg_path, f"references {len(series)} series; expected one series of the project")
    uid = series.pop()
    members = [s for s in project.samples() if s.series_uid == uid]
    if not members:
        raise InputError(seg_path, "references a DICOM series that is not in this project")
    return members


def _assign(members: list, per_slice: dict[int, np.ndarray], seg_path: Path) -> list[tuple[Any, np.ndarray]]:
    first = members[0]
    shape = next(iter(per_slice.values())).shape
    if tuple(shape) != tuple(first.spatial_shape[-2:]):
        raise InputError(seg_path, f"frames of {shape[0]}x{shape[1]} pixels do not match the images "
                                   f"({first.spatial_shape[-2]}x{first.spatial_shape[-1]})")
    if first.slice_index is not None:
        by_index = {s.slice_index: s for s in members}
        return [(by_index[i], mask) for i, mask in sorted(per_slice.items()) if i in by_index]
    if not first.is_volume:
        return [(first, per_slice[0])]
    volume = np.zeros(first.spatial_shape, dtype=next(iter(per_slice.values())).dtype)
    for i, mask in per_slice.items():
        volume[i] = mask
    return [(first, volume)]


def import_segs(project, files: list[Path], save) -> tuple[int, int, list[InputError]]:
    """Save the labels of SEG files with ``save(project, sample_id, mask)`` (False: the sample held
    that label already); returns (labels saved, labels held already, one error per SEG refused)."""
    saved, held, errors = 0, 0, []
    for path in files:
        try:
            pairs = read_seg_masks(project, path)
        except InputError as exc:
            errors.append(exc)
            continue
        for sample, mask in pairs:
            if save(project, sample.id, mask):
                saved += 1
            else:
                held += 1
    return saved, held, errors
