"""Create a project from a folder of images, and import existing labels into it.

An import keeps the good files and reports the bad ones: every problem is an InputError naming
the file, collected in the returned report rather than raised.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medlabeler.engine.errors import InputError, ProjectError
from medlabeler.engine.io import read_image, scan_sources
from medlabeler.engine.project.blank_samples import check_blank_samples, is_blank
from medlabeler.engine.project.export import image_key
from medlabeler.engine.store import Project
from medlabeler.engine.store.records import samples_text

SLABS_PER_VOLUME = 10
LISTED_PROBLEMS = 10  # problems an import that found nothing names one by one
TITLE_ROWS = 5  # lines a spreadsheet may hold above a CSV's header (a title, a date, notes)
MASK_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".npy")


@dataclass
class ImportReport:
    """What an import did: counts of what worked, one error per bad file or series (each names
    it and says why), and warnings about the project made (an empty split, and what the app does
    about it; a DICOM series read with missing slices shown blank, or with duplicate files)."""

    added: int = 0
    labeled: int = 0
    unchanged: int = 0  # labels imported that each sample held already (no new version saved)
    blank: int = 0  # samples added whose image is blank: the queue leaves them out
    errors: list[InputError] = field(default_factory=list)
    files_used: int = 0  # image files behind the samples added
    sources: int = 0  # images, volumes and DICOM series added
    warnings: list[str] = field(default_factory=list)
    missing: int = 0  # slices missing from DICOM series, shown blank
    missing_left_out: int = 0  # their slice samples, counted in `blank`: the queue leaves them out
    duplicates: int = 0  # DICOM files holding an instance already read, ignored
    ignored: int = 0  # files that hold no image (a readme, a DICOMDIR, a DICOM report), ignored
    ignored_names: tuple[str, ...] = ()  # the first few of them, by file name

    @property
    def files_skipped(self) -> int:
        return sum(getattr(e, "files", 1) for e in self.errors)

    def summary(self) -> str:
        found = self.files_used + self.files_skipped + self.duplicates
        text = (f"{found} image file{'s' * (found != 1)} found, {self.files_used} used "
                f"({self.sources} image{'s' * (self.sources != 1)} or series): {self.added} sample{'s' * (self.added != 1)} "
                f"added, {self.labeled} label{'s' * (self.labeled != 1)} imported")
        found_blank = self.blank - self.missing_left_out
        if found_blank:
            text += (f"; {found_blank} blank sample{'s' * (found_blank != 1)} (one value everywhere) left out "
                     "of the queue")
        if self.missing:
            text += (f"; {self.missing} missing slice{'s' * (self.missing != 1)} shown blank"
                     + (" and left out of the queue" if self.missing_left_out else ""))
        if self.errors:
            text += "; " + skipped_text(self.errors)
        if self.duplicates:
            text += (f"; {self.duplicates} duplicate file{'s' * (self.duplicates != 1)} of instances already "
                     "read, ignored")
        if self.ignored:
            more = ", ..." if self.ignored > len(self.ignored_names) else ""
            names = f" ({', '.join(self.ignored_names)}{more})" if self.ignored_names else ""
            text += f"; {self.ignored} non-image file{'s' * (self.ignored != 1)} ignored{names}"
        return text


def imported_text(report: ImportReport, path: str | Path) -> str:
    """What an import of labels did, in one line: the command line and the app say it alike."""
    n, problems, same = report.labeled, len(report.errors), report.unchanged
    text = f"imported {n} label{'s' * (n != 1)} from {path}"
    text += f", {same} more as the samples held them already (no new version)" if same else ""
    return text + (f", {problems} problem{'s' * (problems != 1)}" if problems else "")


def skipped_lines(errors: list[InputError], keep: int = 3, words=str) -> list[str]:
    """One line per skipped file or series, except that more than `keep` files of one folder with
    the same problem (54 header stubs of a DICOMDIR tree) become one line naming a few. `words`
    words one error (`errors.error_text`: the file's name first, for a narrow dock)."""
    groups: dict[tuple[str, str], list[InputError]] = {}
    for error in errors:
        folder = os.path.dirname(str(error.path)) if error.path else ""
        groups.setdefault((folder, error.problem), []).append(error)
    lines = []
    for (folder, problem), members in groups.items():
        if len(members) <= keep:
            texts = [words(e) for e in members]
            for text in dict.fromkeys(texts):  # two series alike (number, description): said once, counted
                alike = texts.count(text)
                lines.append(text + (f" ({alike} series alike: the same number and description)" if alike > 1 else ""))
            continue
        names = ", ".join(os.path.basename(str(e.path)) for e in members[:keep])
        lines.append(f"{len(members)} files in {folder} ({names}, ...): {problem}")
    return lines


def skipped_text(errors: list[InputError]) -> str:
    """``301 files skipped (1 whole series)``: files, not errors, counted."""
    files = sum(getattr(e, "files", 1) for e in errors)
    series = sum(1 for e in errors if getattr(e, "files", 1) > 1)
    return f"{files} file{'s' * (files != 1)} skipped" + (f" ({series} whole series)" if series else "")


def _shown_names(paths: list[Path], root: Path) -> tuple[str, ...]:
    """File names, or their paths below the imported folder where two share a name (DICOMDIR)."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return tuple(names)
    return tuple(p.relative_to(root).as_posix() if root in p.parents else str(p) for p in paths)


def nothing_readable(errors: list[InputError], ignored: int) -> str:
    """Why an import found nothing: every problem (the first LISTED_PROBLEMS) named with its file."""
    problem = "no readable images found"
    if errors:
        n = len(errors)
        files = [e for e in errors if getattr(e, "files", 1) <= 1]
        series = [e for e in errors if getattr(e, "files", 1) > 1]
        counts = []
        if files:
            counts.append(f"{len(files)} unreadable file{'s' * (len(files) != 1)}")
        if series:
            in_series = sum(e.files for e in series)
            counts.append(f"{len(series)} series refused ({in_series} files)")
        problem += f" ({', '.join(counts)}):"
        problem += "".join(f"\n  - {e}" for e in errors[:LISTED_PROBLEMS])
        if n > LISTED_PROBLEMS:
            problem += f"\n  - and {n - LISTED_PROBLEMS} more"
    if ignored:
        files = f"{ignored} non-image file{'s' * (ignored != 1)} ignored"
        problem += f"\n  ({files})" if errors else f" ({files})"
    return problem


def create_project(
    root: str | Path,
    images: str | Path,
    *,
    task: str,
    names: list[str] | None = None,
    colors: list[str] | None = None,
    unit: str | None = None,
    seed: int = 0,
) -> tuple[Project, ImportReport]:
    """Index ``images`` (file, DICOM/NIfTI/image folder, or ISIC-style class folders) into a new project.

    For classification without ``names``, class names come from the ISIC-style folder names, and
    those images are labeled with their folder's class. Volumes become slice samples for 2D
    segmentation unless ``unit`` says otherwise.
    """
    ignored: list[Path] = []
    infos, errors = scan_sources(images, ignored)
    infos, errors = _usable(infos, list(errors))
    infos, plain_blank = _decoded_plain_images(infos, errors)
    if not infos:
        raise InputError(images, nothing_readable(errors, len(ignored)))
    hints = sorted({i.label_hint for i in infos if i.label_hint})
    if task == "classification" and not names:
        if len(hints) < 2:
            raise InputError(images, "classification needs --classes, or class_name/ sub-folders")
        names = hints
    if not names:
        raise InputError(images, f"{task} needs names (--classes or --labels)")
    if unit is None:
        unit = "slice" if task == "segmentation" and any(i.is_volume for i in infos) else "image"
    project = Project.create(root, task=task, names=list(names), colors=colors, unit=unit, seed=seed,
                             slabs=_slabs_needed(infos, unit))
    report = ImportReport(errors=list(errors), files_used=sum(i.n_files for i in infos), sources=len(infos),
                          missing=sum(len(i.blank_slices) for i in infos),
                          duplicates=sum(i.duplicates for i in infos), ignored=len(ignored),
                          ignored_names=_shown_names(sorted(ignored)[:3], Path(os.path.abspath(images))))
    try:
        ids = project.add_sources(infos)
        report.added = len(ids)
        # DICOM series are left unchecked: a scanner's slices are rarely one value, and decoding every
        # series would double the import's time (a 300-slice CT: 3.5 s to 7.6 s); the slices missing
        # from a series, read as blank, are recorded as blank from the scan
        added = set(ids)
        samples = [s for s in project.samples() if s.id in added]
        report.missing_left_out = mark_missing_slices(project, infos, samples)
        known = {s.id: plain_blank[s.path] for s in samples if s.path in plain_blank}
        if known:
            project.write_blank(known)
        others = [s for s in samples if s.series_uid is None and s.id not in known]
        report.blank = report.missing_left_out + sum(known.values()) + check_blank_samples(project, others)
        report.warnings = [note for info in infos for note in info.notes]
        report.warnings += empty_split_warnings(project)
        report.warnings += colour_mix_warnings(infos, Path(os.path.abspath(images)))
        if task == "classification" and hints:
            report.labeled = _label_from_folder_names(project, names, set(hints), report)
            report.warnings += one_class_validation_warnings(project)
        project.audit("create", images=str(images), samples=report.added, skipped=len(report.errors))
    except BaseException:
        project.close()  # release the writer lock; the folder keeps what was committed
        raise
    return project, report


def colour_mix_warnings(infos: list, root: Path) -> list[str]:
    """A line when 2D colour and grey images are mixed: they train together (grey as three equal
    channels), and a photo among radiographs is more often a file in the wrong folder (a trial)."""
    flat = [i for i in infos if not i.is_volume]
    colour = [i for i in flat if len(i.shape) == 3 and i.shape[-1] in (3, 4)]
    if not colour or len(colour) == len(flat):
        return []
    grey = [i for i in flat if i not in colour]
    few, many = (colour, "grey") if len(colour) <= len(grey) else (grey, "colour")
    names = _shown_names([Path(i.path) for i in few[:3]], root)
    kind = "colour" if many == "grey" else "grey"
    more = f" and {len(few) - 3} more" if len(few) > 3 else ""
    return [f"{len(few)} {kind} image{'s' * (len(few) != 1)} among {len(flat) - len(few)} {many} ones "
            f"({', '.join(names)}{more}): they train together, grey as three equal channels; if "
            f"{'it is' if len(few) == 1 else 'they are'} in the wrong folder, make the project again without "
            f"{'it' if len(few) == 1 else 'them'}"]


def mark_missing_slices(project: Project, infos: list, samples: list) -> int:
    """Record the slice samples of slices missing from their DICOM series (read as blank) as
    blank, so the queue never offers them; returns how many."""
    missing = {(os.path.abspath(str(i.path)), i.series_uid): set(i.blank_slices) for i in infos if i.blank_slices}
    if not missing:
        return 0
    blank = {s.id: True for s in samples
             if s.slice_index is not None and s.slice_index in missing.get((os.path.abspath(s.path), s.series_uid), ())}
    if blank:
        project.write_blank(blank)
    return len(blank)


EMPTY_SPLIT_CONSEQUENCE = {
    "val": "training keeps its last weights rather than the best on validation, the queue asks for no "
           "validation labels, and a new model is compared with the active one on the training labels (which "
           "catches a broken run, not overfitting)",
    "test": "the model cannot be measured on held-out images (`medlabeler evaluate` has nothing to score)",
}


def empty_split_warnings(project: Project) -> list[str]:
    """One line per held-out split with no samples: why, and what the app does about it."""
    status = project.status()["per_split"]
    fractions = dict(zip(("train", "val", "test"), project.task.split_fractions))
    groups = len({s.group for s in project.samples()})
    if project.task.slabs:
        unit = "slab is" if groups == 1 else "slabs are"
    else:
        unit = "patient or scan is" if groups == 1 else "patients or scans are"
    warnings = []
    for split, word in (("val", "validation"), ("test", "test")):
        if fractions.get(split, 0) > 0 and not status.get(split, {}).get("samples"):
            warnings.append(f"no {word} samples: {groups} {unit} too few to hold one out; "
                            f"{EMPTY_SPLIT_CONSEQUENCE[split]}. Add images of more patients to get one.")
    return warnings


#: Where a classification project's validation labels hold one class only (few patients).
ONE_CLASS_NOTE = ("the validation labels hold one class only ({name}), so models are compared on the training "
                  "labels: label validation images of the other classes")


def only_validation_class(project) -> int | None:
    """The one class a classification project's validation labels hold while its training labels
    hold more: a model that predicts it everywhere scores best there (None otherwise)."""
    if project.task.kind != "classification":
        return None

    def classes(split: str) -> set[int]:
        return {int(value) for value in project.labels(split).values()}

    val = classes("val")
    return next(iter(val)) if len(val) == 1 and len(classes("train")) > 1 else None


def one_class_validation_warnings(project: Project) -> list[str]:
    """A line when the imported validation labels hold one class only: what happens then."""
    only = only_validation_class(project)
    if only is None:
        return []
    return [ONE_CLASS_NOTE.format(name=project.task.names[only]) + "; training keeps its last weights rather "
            "than the best on validation"]


def _usable(infos: list, errors: list[InputError]) -> tuple[list, list[InputError]]:
    """Sources whose announced shape a project can hold; the others become errors naming them."""
    kept = []
    for info in infos:
        shape = tuple(info.shape)
        if len(shape) not in (2, 3, 4) or min(shape, default=0) < 1:
            errors.append(InputError(info.path, f"image has an unusable shape {shape} (no pixels)"))
        else:
            kept.append(info)
    return kept, errors


def _decoded_plain_images(infos: list, errors: list[InputError]) -> tuple[list, dict[str, bool]]:
    """Decode every plain 2D image (PNG, JPEG, TIFF...) once: a file whose header reads but whose
    pixels do not (cut short in a copy) becomes an error naming it, not a sample that stops every
    training run later. Returns the sources kept and, per decoded file, whether it is blank."""
    kept, blank = [], {}
    for info in infos:
        if info.is_volume or info.series_uid is not None:  # volumes and DICOM: read when used
            kept.append(info)
            continue
        try:
            pixels = np.asarray(read_image(info.path).array, dtype=np.float32)
        except InputError as exc:
            errors.append(exc)
            continue
        blank[os.path.abspath(str(info.path))] = is_blank(pixels)
        kept.append(info)
    return kept, blank


def _slabs_needed(infos, unit: str) -> int:
    """Slabs per volume when a slice project has too few scans for a train/val/test split by scan.

    With fewer than 3 patients or volumes, splitting by volume would put every slice in one split;
    contiguous slabs of slices are then the split groups (neighbouring slabs still share anatomy,
    which ``medlabeler status`` says).
    """
    if unit != "slice":
        return 0
    return SLABS_PER_VOLUME if len({i.group for i in infos if i.is_volume}) < 3 else 0


def _label_from_folder_names(project: Project, names: list[str], folders: set[str], report: ImportReport) -> int:
    """Label each sample of an ISIC-style folder with the class its parent folder names; a class
    folder that --classes leaves out is named in a warning (its images were added unlabeled)."""
    count, left_out = 0, Counter()
    for sample in project.samples():
        folder = Path(sample.path).parent.name
        if folder in names:
            project.save_label(sample.id, names.index(folder), origin="imported")
            count += 1
        elif folder in folders:
            left_out[folder] += 1
    if left_out:
        folders_text = ", ".join(f"{name}/ ({n} image{'s' * (n != 1)})" for name, n in sorted(left_out.items()))
        report.warnings.append(f"class folders not among the classes ({', '.join(names)}), so their images "
                               f"were added unlabeled: {folders_text}")
    return count


def _source_key(path: str) -> str:
    """File name without image suffixes: the key masks and CSV rows are matched on."""
    name = Path(path).name
    for suffix in (".nii.gz", *MASK_SUFFIXES, ".dcm", ".jpg", ".jpeg", ".bmp"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def import_labels(project: Project, path: str | Path) -> ImportReport:
    """Import a CSV of ``image,label`` (classification) or a folder of masks named after the images."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_file() and path.suffix.lower() == ".csv":
        return _import_csv(project, path)
    report = _import_dicom_segs(project, path)
    if report is not None:
        return report
    if path.is_dir():
        return _import_masks(project, path)
    raise InputError(path, "expected a CSV file (image,label) or a folder of masks")


def _import_dicom_segs(project: Project, path: Path) -> ImportReport | None:
    """DICOM-SEGs (a file, or those in a folder) of the project's series; None if there are none."""
    from medlabeler.engine.project.dicom_seg import import_segs, seg_files

    files = seg_files(path) if path.exists() else []
    if not files:
        return None
    if project.task.kind != "segmentation":
        raise InputError(path, "DICOM-SEG labels need a segmentation project")
    labeled, unpainted = project.labeled_ids(), []

    def save(project: Project, sample_id: int, mask) -> bool:
        if sample_id not in labeled and not np.asarray(mask).any():
            unpainted.append(sample_id)
        return _save_imported(project, sample_id, mask)

    saved, held, errors = import_segs(project, files, save)
    report = ImportReport(labeled=saved, unchanged=held, errors=errors)
    if len(unpainted) > 1:  # a SEG of the whole series (as 3D Slicer and OHIF write them): say so
        report.warnings.append(_unpainted_note(path, project.samples(ids=unpainted),
                                               "the SEG references them with nothing segmented", "series",
                                               "remove those labels (`medlabeler remove-label`)"))
    return report


def _samples_by_key(samples: list) -> dict[str, list]:
    by_key: dict[str, list] = {}
    for sample in samples:
        by_key.setdefault(_source_key(sample.path), []).append(sample)
        if Path(sample.path).is_dir() and sample.series_uid:
            by_key.setdefault(sample.series_uid, []).append(sample)
    return by_key


class _ProjectImages:
    """The project's samples as an import of labels looks them up, read once per import; each
    image's key (`export.image_key`: a query, or a read of its file's ends) computed once, where
    a folder of 200 slice masks had asked for it 200 times."""

    def __init__(self, project: Project):
        self.project = project
        self.samples = project.samples()
        self.by_id = {s.id: s for s in self.samples}
        self.by_key = _samples_by_key(self.samples)
        self.by_source: dict[tuple, list] = {}
        for sample in self.samples:
            self.by_source.setdefault((sample.path, sample.series_uid), []).append(sample)
        # the names of the folders the images are in (a folder per patient, often)
        self.folders = {Path(s.path).parent.name for s in self.samples}
        self._keys: dict[tuple, str | None] = {}

    def key(self, source: tuple[str, str | None]) -> str | None:
        if source not in self._keys:
            self._keys[source] = image_key(self.project, *source)
        return self._keys[source]


def _import_csv(project: Project, path: Path) -> ImportReport:
    if project.task.kind != "classification":
        raise InputError(path, "a CSV of labels needs a classification project")
    report = ImportReport()
    images = _ProjectImages(project)
    rows = [(line, row) for line, row in _csv_rows(path) if any(cell.strip() for cell in row)]
    rows = _from_the_header(path, rows, report)
    if rows and _is_export_header(rows[0][1]):
        return _import_exported_csv(project, path, rows, images, report)
    if rows and _is_header(rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise InputError(path, "CSV is empty: no image,label rows to import")
    for line, row in rows:
        where = f"{path}, line {line}"
        if len(row) < 2:
            report.errors.append(InputError(where, "expected two columns: image,label"))
            continue
        image, label = row[0].strip(), row[1].strip()
        samples, problem = _images_named(image, images)
        if problem:
            report.errors.append(InputError(where, problem))
            continue
        _save_class(project, where, samples, label, report)
    return report


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each row; separated by commas, or by semicolons or tabs where the
    first line with a separator holds those and no comma (a spreadsheet saved in a locale that
    writes decimal commas)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
        # the first line with a separator: a title above the header may hold none
        first = next((line for line in text.splitlines()[:TITLE_ROWS + 1] if any(d in line for d in ",;\t")), "")
        delimiter = next((d for d in (";", "\t") if d in first and "," not in first), ",")
        reader = csv.reader(text.splitlines(), delimiter=delimiter)
        return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read CSV: {exc}") from exc


def _from_the_header(path: Path, rows: list, report: ImportReport) -> list:
    """The rows from the header on, where a spreadsheet put a title (or a few lines of notes) above
    it: those lines are left out and named in a warning, not read as images."""
    for at, (line, row) in enumerate(rows[:TITLE_ROWS + 1]):
        if _is_export_header(row) or _is_header(row):
            if at:
                lines = ", ".join(str(n) for n, _ in rows[:at])
                report.warnings.append(f"{path}: line{'s' * (at > 1)} {lines} above the header "
                                       f"({_first_cell(rows[0][1])!r}) read as a title, not as labels")
            return rows[at:]
    return rows


def _first_cell(row: list[str]) -> str:
    return next((cell.strip() for cell in row if cell.strip()), "")


def _is_export_header(row: list[str]) -> bool:
    """The header of a CSV export of labels (`export.CSV_EXPORT_COLUMNS`), its columns in any order
    and some of them left out, as a spreadsheet may have them."""
    cells = {c.strip().lower() for c in row}
    return {"sample", "label"} <= cells and bool(cells & {"image_key", "split", "origin"})


def _images_named(image: str, images: _ProjectImages) -> tuple[list, str | None]:
    """The samples of the image a CSV row names (a file name, or a path whose last folders tell
    two images of one name apart); ([], why) when none, or more than one image, has it."""
    samples = images.by_key.get(_source_key(image), [])
    if not samples:
        return [], f"no sample in the project matches image {image!r}"
    samples, problem = _in_the_same_folders(samples, Path(image.replace("\\", "/")).parts[:-1], images.folders)
    if problem:
        return [], f"{image}: {problem}"
    count = len({(s.path, s.series_uid) for s in samples})
    if count > 1:
        return [], (f"{count} images in the project are named {Path(image).name!r}: name it with its folder "
                    "(p01/image.png) to say which")
    return samples, None


def _import_exported_csv(project: Project, path: Path, rows: list, images: _ProjectImages,
                         report: ImportReport) -> ImportReport:
    """A CSV export of this project (``labels.csv``: sample, split, slice, label, origin,
    image_key[, source]), edited in a spreadsheet, say: each row's sample by its id, where the
    project's image under that id is the one exported (`export.image_key`); else by its
    ``source`` when the export kept the names; else the row is named as skipped."""
    columns = [c.strip().lower() for c in rows[0][1]]
    at = {name: columns.index(name) for name in ("sample", "label", "image_key", "source") if name in columns}
    for line, row in rows[1:]:
        where = f"{path}, line {line}"
        cell = {name: row[i].strip() if i < len(row) else "" for name, i in at.items()}
        sample = images.by_id.get(int(cell["sample"])) if cell["sample"].isdigit() else None
        exported = cell.get("image_key")
        if sample is not None and exported and exported == images.key((sample.path, sample.series_uid)):
            _save_class(project, where, [sample], cell["label"], report)
            continue
        if cell.get("source"):  # by name, where the row's image is this project's image of the name
            named, problem = _images_named(cell["source"], images)
            if not problem and exported and images.key((named[0].path, named[0].series_uid)) != exported:
                problem = (f"{cell['source']}: the project's image of this name is not the one exported (another "
                           "project's image of the same name, or the image changed since)")
            if not problem:
                _save_class(project, where, named, cell["label"], report)
                continue
        elif not cell["sample"].isdigit():
            problem = "no sample id in the row's sample column"
        elif sample is None:
            problem = f"sample {cell['sample']}: the project has no sample with this id"
        elif not exported:
            problem = (f"sample {cell['sample']}: the row does not say which image it is (no image_key: an export "
                       "older than that column, or a row added by hand): give it the image's name in an "
                       "image,label CSV instead")
        else:
            problem = (f"sample {cell['sample']}: this project's image of it is not the one exported (another "
                       "project's export, or the image changed since)")
        report.errors.append(InputError(where, problem))
    return report


def _save_class(project: Project, where: str, samples: list, label: str, report: ImportReport) -> None:
    """Give ``samples`` the class ``label``, or say why not in ``report``."""
    task = project.task
    named = {name.casefold(): name for name in task.names}
    if label not in task.names and named.get(label.strip().casefold()) is not None:
        label = named[label.strip().casefold()]  # a spreadsheet's "Grey " for grey
    if label not in task.names:
        report.errors.append(InputError(where, f"unknown class {label!r} (classes: {', '.join(task.names)})"))
        return
    gone = [s for s in samples if not Path(s.path).exists()]
    if gone:  # a label on it would stop every training run (a labeled image is never passed over)
        report.errors.append(InputError(where, f"the image of sample {gone[0].id} ({Path(gone[0].path).name}) is "
                                               "gone from where it was imported: put it back, then import again"))
        samples = [s for s in samples if s not in gone]
    for sample in samples:
        if _save_imported(project, sample.id, task.names.index(label)):
            report.labeled += 1
        else:
            report.unchanged += 1


_HEADER_IMAGE = ("image", "file", "filename", "file_name", "path", "image_id", "name", "source")
_HEADER_LABEL = ("label", "class", "class_name", "diagnosis", "dx")


def _is_header(row: list[str]) -> bool:
    """A first row naming its columns (image,label; file,label; image_id,diagnosis ...)."""
    cells = [c.strip().lower() for c in row[:2]]
    return len(cells) == 2 and cells[0] in _HEADER_IMAGE and cells[1] in _HEADER_LABEL


def _import_masks(project: Project, folder: Path) -> ImportReport:
    if project.task.kind != "segmentation":
        raise InputError(folder, "a folder of masks needs a segmentation project")
    report = ImportReport()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(MASK_SUFFIXES))
    if not files:
        raise InputError(folder, f"no mask files ({', '.join(MASK_SUFFIXES)}) found")
    images = _ProjectImages(project)
    entries = {folder / name: entry for name, entry in (_export_index(folder) or {}).items()}
    renamed = _listed_once((_export_reading(path.name), entry) for path, entry in entries.items())
    by_image_key = _listed_once((e.image_key, e) for e in entries.values() if e.image_key and e.slice_index is None)
    for mask_path in files:
        entry = entries.get(mask_path)
        if entry is not None:
            samples, slice_index = _images_by_id(entry, images)
        elif mask_path.parent == folder:  # renamed by a tool: volume_0001_seg.nii.gz
            entry, samples, slice_index = _renamed_entry(mask_path, renamed, images)
        else:
            samples, slice_index = [], None
        if not samples:  # by name
            samples, slice_index = _images_of(mask_path, images.by_key)
            samples, problem = _in_the_same_folders(samples, mask_path.relative_to(folder).parent.parts,
                                                    images.folders)
            if not problem and samples:
                samples, problem, entry = _the_exported_image(samples, entry, by_image_key, images)
            if problem or not samples:
                report.errors.append(InputError(mask_path, problem or _no_image_text(entry)))
                continue
        try:
            if slice_index is not None:
                saved, same = _save_slice_mask(project, mask_path, samples, slice_index, report.warnings)
            else:
                saved, same = _save_mask_file(project, mask_path, samples, report.warnings,
                                              only_slices=entry.labeled_slices if entry else None)
            report.labeled += saved
            report.unchanged += same
        except InputError as exc:
            report.errors.append(exc)
    return report


#: What tools add to an image's name for its mask (ours: _labels; 3D Slicer: -label; nnU-Net, ITK-SNAP users: _seg)
MASK_NAME_ENDINGS = ("_labels", "_label", "-labels", "-label", "_seg", "-seg", "_segmentation", "_mask", "-mask")
_SLICE_ENDING = re.compile(r"^(?P<key>.+)_slice(?P<z>\d{4})$")


def _listed_once(pairs) -> dict:
    """{key: value} of the keys that come once in ``pairs``: a key two labels.json entries share
    names neither."""
    pairs = list(pairs)
    counts = Counter(key for key, _ in pairs)
    return {key: value for key, value in pairs if counts[key] == 1}


def _one_ending_off(key: str) -> list[str]:
    """``key`` without each of the endings tools add for a mask that it ends with (brain_seg: brain)."""
    return [key[: -len(e)] for e in MASK_NAME_ENDINGS if key.lower().endswith(e) and len(key) > len(e)]


def _without_endings(key: str) -> str:
    """``key`` without what tools add for a mask, however many (volume_0001_labels-label: volume_0001)."""
    while shorter := _one_ending_off(key):
        key = shorter[0]
    return key


def _readings(name: str) -> list[tuple[str, int | None]]:
    """The (image name, slice or None) a mask file's name may stand for, the closest reading first:
    liver_seg_slice0002 is slice 2 of an image liver_seg before it is one of liver (a review);
    brain_slice0080_seg and brain_seg_slice0080 are slice 80 of brain, volume_0001_labels-label
    is volume_0001."""
    key = _source_key(name)
    shorter = _one_ending_off(key)
    found = [(key, None), *((k, None) for k in shorter)]
    for whole in (key, *shorter, _without_endings(key)):
        one_slice = _SLICE_ENDING.match(whole)
        if one_slice:
            z, image = int(one_slice["z"]), one_slice["key"]
            found += [(image, z), *((k, z) for k in _one_ending_off(image)), (_without_endings(image), z)]
    found.append((_without_endings(key), None))
    return list(dict.fromkeys(found))


def _export_reading(name: str) -> tuple[str, int | None]:
    """The (image name, slice) an export's own file name stands for (`export.py`: NAME_labels.nii.gz,
    NAME.png, NAME_sliceNNNN.png)."""
    key = _source_key(name)
    one_slice = _SLICE_ENDING.match(key)
    if one_slice:
        return one_slice["key"], int(one_slice["z"])
    return (key[: -len("_labels")] if key.endswith("_labels") else key), None


def _images_of(mask_path: Path, by_key: dict[str, list]) -> tuple[list, int | None]:
    """The samples of the image a mask file is named after, and the slice it holds when it is one
    slice of a volume (``NAME_sliceNNNN``, as a PNG export of slices names them)."""
    for image, z in _readings(mask_path.name):
        if image in by_key:
            return by_key[image], z
    return [], None


def _renamed_entry(mask_path: Path, renamed: dict, images: _ProjectImages) -> tuple[_Exported | None, list, int | None]:
    """The labels.json entry of an export's file a tool renamed (volume_0001_seg.nii.gz), with the
    samples its ids give; none where the file's name names another image of the project."""
    entry = next((renamed[r] for r in _readings(mask_path.name) if r in renamed), None)
    samples, z = _images_by_id(entry, images) if entry else ([], None)
    named, _ = _images_of(mask_path, images.by_key)
    if named and {(s.path, s.series_uid) for s in named}.isdisjoint({(s.path, s.series_uid) for s in samples}):
        return None, [], None
    return entry, samples, z


def _in_the_same_folders(samples: list, folders: tuple[str, ...], known: set[str]) -> tuple[list, str | None]:
    """Of the images a mask or a CSV row names, those in the folders it lies in below the folder of
    masks, or names (masks/p01/t1.nii.gz for images/p01/t1.nii.gz). A folder of the project's own
    images (``known``, a patient's) that holds no image of that name matches none, with why: a trial's
    masks/p02/t1.nii.gz went onto p01's t1 where p02 had none. Other folders (a dated folder of
    corrections) say nothing of the image."""
    if not folders or not samples:
        return samples, None
    mine = [s for s in samples if Path(s.path).parent.parts[-len(folders):] == folders]
    if mine:
        return mine, None
    mine = [s for s in samples if Path(s.path).parent.name == folders[-1]]  # other roots above it
    if mine:  # (/home/alice/isic/images for .../bob/isic/images; corrections/round2/p01 for data/p01)
        return mine, None
    if folders[-1] in known:
        held = ", ".join(sorted({Path(s.path).parent.name for s in samples}))
        return [], (f"it names folder {folders[-1]!r}, and no image of this name in the project is in a folder of that "
                    f"name (one is in {held}): not put on another folder's image")
    return samples, None


@dataclass(frozen=True)
class _Exported:
    """What an export's ``labels.json`` says of one of its mask files."""

    samples: tuple[int, ...]  # the project's sample ids it holds the labels of
    slice_index: int | None  # a PNG of one slice of a volume: that slice
    labeled_slices: list[int] | None  # a NIfTI of a slice project: the slices labeled (others are zeros)
    image_key: str | None  # its image's key when exported (`export.image_key`)


def _export_index(folder: Path) -> dict[str, _Exported] | None:
    """Mask file name -> what the ``labels.json`` of an export (NIfTI or PNG) in ``folder`` says of
    it; None when the folder holds none (or one this reader cannot make sense of)."""
    try:
        index = json.loads((folder / "labels.json").read_text())
        found = {}
        for entry in index.get("volumes", []):
            slices = entry.get("labeled_slices")
            found[entry["file"]] = _Exported(tuple(int(s["sample"]) for s in entry.get("samples", [])), None,
                                             [int(z) for z in slices] if isinstance(slices, list) else None,
                                             entry.get("image_key"))
        for entry in index.get("masks", []):
            z = entry.get("slice")
            found[entry["file"]] = _Exported((int(entry["sample"]),), None if z is None else int(z), None,
                                             entry.get("image_key"))
        return found
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _images_by_id(entry: _Exported, images: _ProjectImages) -> tuple[list, int | None]:
    """The samples of the image an export's mask file holds labels of, found by the sample ids its
    ``labels.json`` lists: taken only when this project's image under those ids is the one exported
    (the same content key), so a de-identified export (``volume_0001_labels.nii.gz``) or one of two
    images of one name comes back, and an index of another project is never trusted. ([], None)
    when it is not this project's image, or the export recorded no key."""
    listed = [images.by_id.get(i) for i in set(entry.samples)] if entry.image_key and entry.samples else []
    sources = {(s.path, s.series_uid) for s in listed if s is not None}
    if not listed or None in listed or len(sources) != 1:
        return [], None
    source = sources.pop()
    if images.key(source) != entry.image_key:
        return [], None
    return images.by_source[source], entry.slice_index


def _the_exported_image(samples: list, entry: _Exported | None, by_image_key: dict[str, _Exported],
                        images: _ProjectImages) -> tuple[list, str | None, _Exported | None]:
    """Of the images a mask file is named after, the one its export's ``labels.json`` says it was
    exported from, when it says (``entry``: listed under the file's own name; else found by the
    image's key: a tool renamed brain_labels.nii.gz to brain-label.nii.gz, and the slices never
    labeled came in as painted background). A `--keep-names` export of another project's image of
    the same name matches none. Returns (samples, why none, the entry)."""
    sources: dict[tuple, list] = {}
    for sample in samples:
        sources.setdefault((sample.path, sample.series_uid), []).append(sample)
    keys = {source: images.key(source) for source in sources}
    if entry is None:
        found = [by_image_key[k] for k in keys.values() if k in by_image_key]
        entry = found[0] if len(found) == 1 else None
    if entry is None or not entry.image_key:
        return samples, None, entry
    mine = [s for source, members in sources.items() if keys[source] == entry.image_key for s in members]
    if not mine:
        return [], ("its export's labels.json says it holds the labels of another image than this project's image "
                    "of its name (another project's image of the same name, or the image changed since): not "
                    "imported; take labels.json out of the folder to import the masks by their names alone"), entry
    return mine, None, entry


def _no_image_text(entry: _Exported | None) -> str:
    """Why a mask file found no image: by name, and by its export's ``labels.json`` if it has one."""
    if entry is None or not entry.samples:
        return "no image in the project has this name (a mask is named as its image, with or without _labels, _seg, -label or _mask)"
    ids = entry.samples
    listed = samples_text(ids, at_most=5)
    if entry.image_key is None:  # an export made before exports recorded their images' keys
        return (f"no image in the project has this name, and its export's labels.json (listing {listed}) does not say "
                "which image it was (an older export): export again to import it back")
    return (f"no image in the project has this name, and its export's labels.json lists {listed}, whose image in this "
            "project is not the one exported (another project's export, or the image changed since)")


def _save_slice_mask(project: Project, mask_path: Path, samples: list, slice_index: int,
                     warnings: list[str]) -> tuple[int, int]:
    """One slice's 2D mask (``NAME_sliceNNNN.png``) for that slice of the volume."""
    if len({(s.path, s.series_uid) for s in samples}) > 1:
        raise InputError(mask_path, "several images in the project have the name it is named after; name the mask "
                                    "after one of them unambiguously")
    target = next((s for s in samples if s.slice_index == slice_index), None)
    if target is None:
        raise InputError(mask_path, f"the image it is named after has no slice {slice_index} in the project")
    mask, _ = read_mask(mask_path)
    mask = _checked_values(project, mask, mask_path, warnings)
    if tuple(mask.shape) != tuple(target.spatial_shape):
        raise InputError(mask_path, _shape_mismatch(mask_path, tuple(mask.shape), tuple(target.spatial_shape)))
    saved = _save_imported(project, target.id, mask.astype(_label_dtype(project)))
    return int(saved), int(not saved)


def read_mask(mask_path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a mask file: an integer array in its file's axis order, and its affine (None for a
    .npy or an image format without geometry)."""
    affine = None
    if mask_path.suffix.lower() == ".npy":
        try:
            array = np.load(mask_path, allow_pickle=False)
        except EOFError:
            raise InputError(mask_path, "cannot read mask: the file is empty or cut short") from None
        except (OSError, ValueError) as exc:
            raise InputError(mask_path, f"cannot read mask: {exc}") from exc
        if not isinstance(array, np.ndarray):  # np.load opens a .npz archive whatever its name
            array.close()
            raise InputError(mask_path, "cannot read mask: not a .npy array (a .npz archive?)")
    elif (indices := _palette_indices(mask_path)) is not None:
        array = indices
    else:
        image = read_image(mask_path)
        array, affine = image.array, image.affine
        if image.metadata.get("qform_code") == image.metadata.get("sform_code") == 0:
            affine = np.eye(4)  # no geometry: nibabel's made-up affine (x flipped, centred) means nothing
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype == np.uint8:
        colour = array[..., :3]
        if not (colour == colour[..., :1]).all():
            raise InputError(mask_path, "mask is a colour image; expected one label number per pixel (a greyscale "
                                        "or palette image whose values are the label numbers)")
        array = colour[..., 0]  # a tool saved the label numbers as grey RGB: the same number in each channel
    if array.dtype.kind not in "biuf":
        raise InputError(mask_path, f"mask values must be non-negative integers, not {array.dtype} values")
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) or np.any(array < 0):
        raise InputError(mask_path, "mask values must be non-negative integers")
    return array.astype(np.int64), affine


def _palette_indices(mask_path: Path) -> np.ndarray | None:
    """A palette PNG's pixel values (its colour table's indices), which tools save label maps as
    (index 0 black, the background): read as an image, they became colours. None for any other
    file, and for a palette whose index 0 is not black: a colour picture an optimizer stored with a
    palette (a review: its red index 0 came in as background, its black as label 1)."""
    if mask_path.suffix.lower() != ".png":
        return None
    from PIL import Image

    try:
        with Image.open(mask_path) as image:
            if image.mode != "P" or tuple((image.getpalette() or [1])[:3]) != (0, 0, 0):
                return None
            return np.asarray(image)
    except OSError:
        return None  # read_image says what is wrong with it


#: Said once per import that read 0/255 masks as label 1.
BLACK_AND_WHITE_NOTE = "black-and-white masks (0 and 255) were read as the project's one label (255 = label 1)"


def _checked_values(project: Project, mask: np.ndarray, mask_path: Path, warnings: list[str]) -> np.ndarray:
    """The mask's label numbers, checked against the project's labels (0/255 is label 1 in a
    project of one label)."""
    n_labels = len(project.task.names)
    black_and_white = mask.max(initial=0) == 255 and not np.isin(mask, (0, 255), invert=True).any()
    if black_and_white and n_labels == 1:  # ISIC's lesion masks and most 2D tools' binary masks
        mask = (mask > 0).astype(np.int64)
        if BLACK_AND_WHITE_NOTE not in warnings:
            warnings.append(BLACK_AND_WHITE_NOTE)
    if mask.max(initial=0) > n_labels:
        hint = ("; a black-and-white mask (0 and 255) is read as label 1 only in a project of one label: "
                "save each label's number (1, 2, ...) as the pixel value" if black_and_white else "")
        raise InputError(mask_path, f"mask holds value {int(mask.max())} but the project has {n_labels} "
                                    f"label{'s' * (n_labels != 1)}{hint}")
    return mask


def _label_dtype(project: Project):
    return np.uint16 if len(project.task.names) > 255 else np.uint8


def _save_mask_file(project: Project, mask_path: Path, samples: list, warnings: list[str], *,
                    only_slices: list[int] | None = None) -> tuple[int, int]:
    """Check the mask against every image it names, then save it (nothing is saved if a check
    fails); of a volume's slices, ``only_slices`` when given (those an export says were labeled)."""
    mask, mask_affine = read_mask(mask_path)
    mask = _checked_values(project, mask, mask_path, warnings)
    sources: dict[tuple[str, str | None], list] = {}
    for sample in samples:
        sources.setdefault((sample.path, sample.series_uid), []).append(sample)
    if len(sources) > 1:
        raise InputError(mask_path, f"{len(sources)} images in the project have this name; put the mask in "
                                    "folders named as its image's (masks/p01/t1.nii.gz for images/p01/t1.nii.gz), "
                                    "or name it after one of them unambiguously (a DICOM series: by its "
                                    "SeriesInstanceUID)")
    members = next(iter(sources.values()))
    expected = _source_mask_shape(members)
    file_shape = tuple(mask.shape)
    if len(expected) == 2 and mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]  # a 2D image's mask as a NIfTI of one slice (as our NIfTI export writes it)
    elif mask_affine is not None and mask.ndim == 3:
        mask = _on_image_grid(mask, mask_affine, members[0], mask_path, warnings)
    if tuple(mask.shape) != expected:
        raise InputError(mask_path, _shape_mismatch(mask_path, file_shape, expected))
    dtype = _label_dtype(project)
    if only_slices is not None:  # and any slice painted since the export (a stale or foreign labels.json)
        painted = {s.slice_index for s in members if s.slice_index is not None and mask[s.slice_index].any()}
        unlisted = sorted(painted - set(only_slices))
        if unlisted:
            many = len(unlisted) > 1
            warnings.append(f"{mask_path}: slice{'s' * many} {', '.join(map(str, unlisted))} hold{'' if many else 's'} "
                            "labels its labels.json does not list as labeled: imported too")
        members = [s for s in members if s.slice_index is None or s.slice_index in set(only_slices) | painted]
    elif len(members) > 1:  # a whole volume's mask, no export listing its slices: every slice is labeled
        _say_unpainted_slices(project, mask_path, mask, members, warnings)
    saved = sum(_save_imported(project, sample.id, (mask if sample.slice_index is None else
                                                    mask[sample.slice_index]).astype(dtype)) for sample in members)
    return saved, len(members) - saved


def _say_unpainted_slices(project: Project, mask_path: Path, mask: np.ndarray, members: list,
                          warnings: list[str]) -> None:
    """A warning when a volume's mask labels slices nobody labeled as all background (a trial: a
    renamed export of 60 labeled slices labeled all 189, validation slices included): right for a
    whole segmentation from another tool, wrong for one of some slices."""
    labeled = project.labeled_ids()
    empty = [s for s in members if s.slice_index is not None and s.id not in labeled and not mask[s.slice_index].any()]
    if empty:
        warnings.append(_unpainted_note(mask_path, empty, "the mask holds nothing there", "scan",
                                        "import those as NAME_sliceNNNN.png files, or keep the export's labels.json "
                                        "beside it"))


def _unpainted_note(where, empty: list, why: str, whole: str, remedy: str) -> str:
    """A file labels ``empty`` slices nobody had labeled as all background: right for a whole
    ``whole``'s segmentation, a surprise for one of some slices."""
    held_out = sum(s.split != "train" for s in empty)
    return (f"{where}: {len(empty)} slices nobody had labeled come in as all background ({why}"
            f"{f'; {held_out} of them validation or test slices' if held_out else ''}): right if it segments the "
            f"whole {whole}; if it holds only some slices, {remedy}")


def _save_imported(project: Project, sample_id: int, value) -> bool:
    """Save an imported label unless it is the sample's label already (importing a folder twice
    made a second version of every label, and a long list to restore from); True if saved."""
    try:
        current = project.load_label(sample_id)  # None when unlabeled
    except ProjectError:  # its mask file is damaged: the import replaces it
        current = None
    if current is not None and np.array_equal(np.asarray(current), np.asarray(value)):
        return False
    project.save_label(sample_id, value, origin="imported")
    return True


def _shape_mismatch(mask_path: Path, mask_shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """Said in the order the file's own tools show it: a NIfTI's x, y, z (the reverse of ours)."""
    if mask_path.name.lower().endswith((".nii", ".nii.gz")):
        return (f"mask shape {'x'.join(map(str, mask_shape[::-1]))} does not match image shape "
                f"{'x'.join(map(str, expected[::-1]))} (x, y, z, as NIfTI tools show them)")
    return (f"mask shape {'x'.join(map(str, mask_shape))} does not match image shape {'x'.join(map(str, expected))} "
            "(rows x columns)")


def _on_image_grid(mask: np.ndarray, mask_affine: np.ndarray, sample, mask_path: Path, warnings: list[str]) -> np.ndarray:
    """The mask in its image's voxel order. Another tool may store the same grid in another voxel
    order (an RAS-ordered NIfTI of an LPS-ordered DICOM series): taken as it lies in the file, the
    label would be mirrored. Such a mask is turned by its affine, also when its grid lies less than
    half a voxel from the image's (a rounded origin: a warning says how far). A mask whose voxels
    lie in its image's order is taken as it is, with a warning when its affine differs (no geometry,
    another tool's, a tilt, a registration). Only a mask that would need turning and whose grid does
    not match in any voxel order is refused (InputError naming it): either order would be a guess."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    image_affine = read_image(sample.path, sample.series_uid).affine
    if image_affine is None or _same_grid(mask_affine, image_affine):
        return mask
    if _no_geometry(mask_affine):
        warnings.append(f"{mask_path}: it has no geometry of its own (no origin, its axes as stored); imported in "
                        "the file's voxel order: check it on the image")
        return mask
    turn = ornt_transform(io_orientation(mask_affine), io_orientation(image_affine))
    turned = not np.array_equal(turn, [[axis, 1] for axis in range(len(turn))])
    turned_affine = np.asarray(mask_affine @ inv_ornt_aff(turn, mask.shape), float)
    offset = _offset_in_voxels(turned_affine, image_affine)
    how = "stored in another voxel order than its image; turned by its affine to match" if turned else ""
    if offset is not None and offset < 0.5:  # every voxel lands on its own: the same grid, rounded
        mm = float(np.linalg.norm(turned_affine[:3, 3] - np.asarray(image_affine, float)[:3, 3]))
        if mm > _TOLERANCE_MM:
            how = (f"{how + ', but ' if how else ''}its grid lies {mm:.2g} mm from its image's ({offset:.2g} of a "
                   "voxel): imported on the image's grid; check it on the image")
        warnings.append(f"{mask_path}: {how}")
        return np.ascontiguousarray(apply_orientation(mask, turn))
    if not turned:  # its voxels lie in the image's order: as another tool, a tilted gantry or a registration left them
        warnings.append(f"{mask_path}: its affine places it elsewhere than its image (another origin, spacing or "
                        "direction); imported in the file's voxel order: check it on the image")
        return mask
    where = (f"its grid lies {offset:.2g} voxels from its image's" if offset is not None else
             "its affine gives it another voxel spacing or direction than its image")
    raise InputError(mask_path, f"stored in another voxel order than its image, and {where}: not imported (in "
                                "neither order would it be more than a guess; a mask of another scan?). Save it "
                                "with its image's affine")


#: Grids closer than this are the same grid (a float written and read back)
_TOLERANCE_MM = 0.01


def _offset_in_voxels(a: np.ndarray, b: np.ndarray) -> float | None:
    """How far grid ``a`` lies from grid ``b``, in ``b``'s voxels along its axes (the largest); None
    when their axes or spacings differ."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not np.allclose(a[:3, :3], b[:3, :3], atol=1e-3 * max(1.0, float(np.abs(b[:3, :3]).max()))):
        return None
    return float(np.abs(np.linalg.solve(b[:3, :3], a[:3, 3] - b[:3, 3])).max())


def _no_geometry(affine: np.ndarray) -> bool:
    """An affine no scanner gives: no origin and the axes as stored, whatever the spacing (a mask
    saved with none, a NIfTI whose qform and sform codes are both 0 as `read_mask` gives it, or
    SimpleITK's array given a spacing only): its voxels are in the order they were painted in."""
    a = np.asarray(affine, float)
    axes = np.abs(a[:3, :3]) > 1e-6
    return bool(np.allclose(a[:3, 3], 0) and (axes.sum(axis=0) == 1).all() and (axes.sum(axis=1) == 1).all())


def _same_grid(a: np.ndarray, b: np.ndarray, tolerance_mm: float = _TOLERANCE_MM) -> bool:
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), atol=tolerance_mm))


def _source_mask_shape(members: list) -> tuple[int, ...]:
    """The shape a mask file of one source must have: the whole volume for slice samples."""
    first = members[0]
    if first.slice_index is None:
        return tuple(first.spatial_shape)
    depth = first.n_slices or max(s.slice_index for s in members) + 1
    return (int(depth), *first.spatial_shape)


def require_project(path: str | Path) -> Path:
    """The project folder, or a clear error when it is not one."""
    root = Path(path)
    if not root.exists():
        raise ProjectError(f"{root}: does not exist; create a project there with 'medlabeler init'")
    if not (root / "project.sqlite").exists():
        raise ProjectError(f"{root}: not a medlabeler project (no project.sqlite); create one with 'medlabeler init'")
    return root
