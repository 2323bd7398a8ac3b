"""Trust with bad inputs: no crash on a broken file, no label lost, every problem named.

The corpus (tests/engine/bad_inputs.py) is generated into tmp_path. Each broken input must give an
InputError whose message names the file (or series folder) and the problem, from ``read_image``,
``scan_sources``, ``create_project``, ``import_labels`` and the command line alike, while the good
files next to it are kept and labels saved before a bad import stay as they were.
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from medlabeler.cli import main
from medlabeler.engine.errors import InputError
from medlabeler.engine.io import read_image, scan_sources
from medlabeler.engine.project.project_import import create_project, import_labels
from medlabeler.engine.store import Project
from tests.engine import bad_inputs as corpus
from tests.engine.bad_inputs import ALL_CASES, CSV_CASES, IMAGE_CASES, MASK_CASES, Case

pytestmark = [  # pydicom, nibabel and Pillow warn about the broken files, as they should
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

# A valid DICOM object that is not an image (a structured report) is ignored by a folder scan:
# it is not a broken file. read_image still refuses it by name.
NOT_REPORTED_BY_SCAN = {"dicom_report_not_image"}


def _params(cases: list[Case]) -> list:
    return [pytest.param(case, id=f"{index:02d}of{len(cases)}-{case.name}") for index, case in enumerate(cases, 1)]


def _assert_names(exc: BaseException, path: Path, case: Case) -> None:
    message = str(exc)
    assert isinstance(exc, InputError), f"{type(exc).__name__}: {message}"
    assert path.name in message, f"{path.name} not named in: {message}"
    assert any(k in message.lower() for k in case.keywords), f"none of {case.keywords} in: {message}"


def _build(case: Case, folder: Path, monkeypatch) -> Path:
    if case.setup is not None:
        case.setup(monkeypatch)
    return case.build(folder)


# ----------------------------------------------------------------------------- the corpus


def test_corpus_has_at_least_40_distinct_broken_inputs():
    names = [case.name for case in ALL_CASES]
    print(f"bad-input corpus: {len(IMAGE_CASES)} images/series, {len(MASK_CASES)} masks, "
          f"{len(CSV_CASES)} CSV files = {len(ALL_CASES)} broken inputs")
    assert len(ALL_CASES) >= 40
    assert len(set(names)) == len(names)
    assert all(case.keywords and all(k == k.lower() for k in case.keywords) for case in ALL_CASES)


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("case", _params(IMAGE_CASES))
def test_read_image_refuses_with_file_and_problem(case, tmp_path, monkeypatch):
    path = _build(case, tmp_path, monkeypatch)
    with pytest.raises(Exception) as info:
        read_image(path)
    _assert_names(info.value, path, case)


@pytest.mark.parametrize("case", _params(IMAGE_CASES))
def test_scan_sources_reports_it_and_keeps_the_good_files(case, tmp_path, monkeypatch):
    path = _build(case, tmp_path / "data", monkeypatch)
    good = corpus.write_good_sources(tmp_path / "data")
    infos, errors = scan_sources(tmp_path / "data")
    listed = {info.path for info in infos}
    assert {str(p) for p in good.values()} <= listed, [str(e) for e in errors]
    naming = [e for e in errors if path.name in str(e)]
    if case.name in NOT_REPORTED_BY_SCAN:
        assert str(path) not in listed and not errors
    elif case.deep and str(path) in listed:  # damage behind an intact header: found when read
        with pytest.raises(InputError) as info:
            read_image(path)
        _assert_names(info.value, path, case)
    else:
        assert naming, f"{path.name} not reported; errors: {[str(e) for e in errors]}"
        assert str(path) not in listed
        assert all(isinstance(e, InputError) for e in errors)
        assert any(any(k in str(e).lower() for k in case.keywords) for e in naming), [str(e) for e in naming]


def _mixed_tree(root: Path, monkeypatch) -> tuple[dict[str, Path], dict[str, Path]]:
    """Every image case without a known scan bug, each in its own folder, plus the good files."""
    corpus.setup_all(IMAGE_CASES, monkeypatch)
    bad = {c.name: c.build(root / "bad" / c.name) for c in IMAGE_CASES}
    good = corpus.write_good_sources(root / "good")
    return bad, good


def test_create_project_keeps_the_good_files_and_reports_each_bad_one(tmp_path, monkeypatch):
    bad, good = _mixed_tree(tmp_path / "data", monkeypatch)
    project, report = create_project(tmp_path / "project", tmp_path / "data", task="segmentation", names=["lesion"])
    with project:
        samples = project.samples()
        paths = {s.path for s in samples}
        assert {str(p) for p in good.values()} <= paths
        reported = " | ".join(str(e) for e in report.errors)
        by_case = {c.name: c for c in IMAGE_CASES}
        for name, path in bad.items():
            case = by_case[name]
            if name in NOT_REPORTED_BY_SCAN:
                assert str(path) not in paths
                continue
            if case.deep and str(path) in paths:  # indexed from its intact header: refused when loaded
                sample = next(s for s in samples if s.path == str(path))
                with pytest.raises(InputError) as info:
                    project.load_pixels(sample)
                _assert_names(info.value, path, case)
                continue
            assert path.name in reported, f"{name} not reported"
            assert not any(p == str(path) or p.startswith(str(path) + "/") for p in paths), name
        for error in report.errors:
            assert isinstance(error, InputError) and error.path and Path(error.path).name in str(error)
        # the report text names every skipped file, and the good ones give pixels
        for sample in samples:
            if sample.path in {str(p) for p in good.values()}:
                assert np.isfinite(project.load_pixels(sample)).all()
        created = [entry for entry in project.audit_log() if entry["action"] == "create"]
        assert created and created[0]["detail"]["skipped"] == len(report.errors)


def test_a_source_announced_without_pixels_is_reported_not_fatal(tmp_path):
    """Found by fuzzing: a scan may list a TIFF of shape (0, 2048); the store refuses such a shape,
    which used to abort create_project after creating the project folder."""
    bad = next(c for c in IMAGE_CASES if c.name == "tif_without_pixels").build(tmp_path / "data")
    good = corpus.write_good_sources(tmp_path / "data")
    project, report = create_project(tmp_path / "project", tmp_path / "data", task="segmentation", names=["x"])
    with project:
        paths = {s.path for s in project.samples()}
        assert {str(p) for p in good.values()} <= paths and str(bad) not in paths
        assert any(bad.name in str(e) for e in report.errors)


def test_create_project_releases_the_project_when_adding_fails(tmp_path, monkeypatch):
    corpus.write_good_sources(tmp_path / "data")

    def fail(self, infos, **kwargs):
        raise InputError(tmp_path / "data" / "good_grey.png", "vanished while being added")

    monkeypatch.setattr(Project, "add_sources", fail)
    with pytest.raises(InputError, match="vanished"):
        create_project(tmp_path / "project", tmp_path / "data", task="segmentation", names=["x"])
    monkeypatch.undo()
    with Project.open(tmp_path / "project") as project:  # not left locked by a lost handle
        assert project.samples() == []


def test_a_folder_of_bad_files_only_is_refused_naming_one(tmp_path):
    for case in IMAGE_CASES:
        if case.name in ("dicom_zero_bytes", "nifti_4d", "png_holding_text"):
            case.build(tmp_path / "data")
    with pytest.raises(InputError) as info:
        create_project(tmp_path / "project", tmp_path / "data", task="segmentation", names=["lesion"])
    message = str(info.value)
    assert "no readable images" in message and "3 unreadable files" in message
    assert any(name in message for name in ("dicom_zero_bytes.dcm", "nifti_4d.nii.gz", "png_holding_text.png"))
    assert not (tmp_path / "project" / "project.sqlite").exists()


# ----------------------------------------------------------------------------- masks


def _mask_project(tmp_path: Path) -> tuple[Project, dict[int, object]]:
    """A segmentation project (a 2D PNG and a 6-slice volume) with two labels saved by hand."""
    corpus.write_mask_project_sources(tmp_path / "images")
    project, report = create_project(tmp_path / "project", tmp_path / "images", task="segmentation",
                                     names=corpus.MASK_LABELS)
    assert report.added == 7 and not report.errors
    samples = project.samples()
    image = next(s for s in samples if s.slice_index is None)
    slice2 = next(s for s in samples if s.slice_index == 2)
    project.save_label(image.id, corpus.good_image_mask(), author="reader")
    project.save_label(slice2.id, corpus.good_volume_mask()[2], author="reader")
    return project, _label_snapshot(project)


def _label_snapshot(project: Project) -> dict[int, object]:
    out = {}
    for sample in project.samples():
        current = project.label(sample.id)
        value = project.load_label(sample.id)
        out[sample.id] = None if current is None else (current.version, np.array(value).copy())
    return out


def _assert_same_labels(project: Project, before: dict[int, object], changed: set[int] = frozenset()) -> None:
    """Every label but those of `changed` samples is the one saved before (same version, same value)."""
    after = _label_snapshot(project)
    assert after.keys() == before.keys()
    for sample_id, old in before.items():
        if sample_id in changed:
            continue
        new = after[sample_id]
        if old is None:
            assert new is None, f"sample {sample_id} gained a label"
        else:
            assert new is not None and new[0] == old[0] and np.array_equal(new[1], old[1]), sample_id


@pytest.mark.parametrize("case", _params(MASK_CASES))
def test_import_labels_refuses_a_bad_mask_and_keeps_saved_labels(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an unpickled object would write its marker
    project, before = _mask_project(tmp_path)
    with project:
        mask = _build(case, tmp_path / "masks", monkeypatch)
        report = import_labels(project, mask.parent)
        assert report.labeled == 0
        assert len(report.errors) == 1
        _assert_names(report.errors[0], mask, case)
        _assert_same_labels(project, before)
    assert not (tmp_path / corpus.MARKER_NAME).exists(), "a mask file ran code"


def test_a_mask_folder_mixing_good_and_bad_keeps_the_good_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project, before = _mask_project(tmp_path)
    with project:
        good = corpus.write_good_masks(tmp_path / "masks")
        bad = {c.name: c.build(tmp_path / "masks" / "more") for c in MASK_CASES}
        report = import_labels(project, tmp_path / "masks")
        # the two samples labeled by hand hold the good masks already: no new version of those
        assert (report.labeled, report.unchanged) == (1 + 6 - 2, 2)
        assert len(report.errors) == len(MASK_CASES)
        reported = " | ".join(str(e) for e in report.errors)
        for path in bad.values():
            assert str(path) in reported
        image = next(s for s in project.samples() if s.slice_index is None)
        assert np.array_equal(project.load_label(image.id), corpus.good_image_mask())
        assert project.label(image.id).version == before[image.id][0]
        volume = np.stack([project.load_label(s.id) for s in project.samples() if s.slice_index is not None])
        assert np.array_equal(volume, corpus.good_volume_mask())
        by_hand = {s.id for s in project.samples() if before.get(s.id) is not None}
        assert {project.label(s.id).origin for s in project.samples() if s.id not in by_hand} == {"imported"}
        assert {project.label(s.id).origin for s in project.samples() if s.id in by_hand} == {"manual"}
        assert len(project.label_history(image.id)) == 1  # the hand-made version stays the label


def test_a_mask_name_shared_by_two_images_is_refused_not_applied_to_both(tmp_path):
    for folder in ("a", "b"):
        corpus.write_png(tmp_path / "images" / folder / "scan.png", corpus.grey_pixels())
    project, _ = create_project(tmp_path / "project", tmp_path / "images", task="segmentation", names=["x"])
    with project:
        corpus.write_png(tmp_path / "masks" / "scan.png", (corpus.good_image_mask() > 0).astype(np.uint8))
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == 0 and len(report.errors) == 1
        assert "scan.png" in str(report.errors[0]) and "2 images" in str(report.errors[0])
        assert all(project.label(s.id) is None for s in project.samples())


# ----------------------------------------------------------------------------- CSV


def _csv_project(tmp_path: Path) -> tuple[Project, dict[int, object]]:
    corpus.write_csv_project_sources(tmp_path / "images")
    project, report = create_project(tmp_path / "project", tmp_path / "images", task="classification",
                                     names=corpus.CSV_CLASSES)
    assert report.added == 4
    by_name = {Path(s.path).name: s for s in project.samples()}
    project.save_label(by_name["img_02.png"].id, 1, author="reader")
    project.save_label(by_name["img_04.png"].id, 0, author="reader")
    return project, _label_snapshot(project)


@pytest.mark.parametrize("case", _params(CSV_CASES))
def test_import_labels_reports_bad_csv_rows_and_keeps_saved_labels(case, tmp_path, monkeypatch):
    project, before = _csv_project(tmp_path)
    with project:
        path = _build(case, tmp_path / "csv", monkeypatch)
        by_name = {Path(s.path).name: s for s in project.samples()}
        if case.fatal:
            with pytest.raises(InputError) as info:
                import_labels(project, path)
            _assert_names(info.value, path, case)
            _assert_same_labels(project, before)
            return
        report = import_labels(project, path)
        assert report.errors
        for error in report.errors:
            assert path.name in str(error) and "line " in str(error)
        assert any(any(k in str(e).lower() for k in case.keywords) for e in report.errors)
        good_row = "img_01.png,benign" in path.read_text(encoding="utf-8")
        assert report.labeled == (1 if good_row else 0)
        changed = {by_name["img_01.png"].id} if good_row else set()
        if good_row:
            assert project.load_label(by_name["img_01.png"].id) == 0
        _assert_same_labels(project, before, changed)


def test_csv_line_numbers_are_those_of_the_file_with_or_without_header(tmp_path):
    project, _ = _csv_project(tmp_path)
    with project:
        plain = tmp_path / "plain.csv"
        plain.write_text("img_01.png,benign\n\nimg_99.png,benign\nimg_03.png,maybe\n")
        report = import_labels(project, plain)
        assert report.labeled == 1
        assert [str(e).split(": ", 1)[0].rsplit(", ", 1)[1] for e in report.errors] == ["line 3", "line 4"]



def test_a_title_above_a_csv_header_is_left_out_and_named(tmp_path):
    """A spreadsheet's title and date lines above the header were read as two images nobody had
    (two errors), and the header itself as a third."""
    project, _ = _csv_project(tmp_path)
    with project:
        titled = tmp_path / "titled.csv"
        titled.write_text("Dermatology review 2026,\nreader: A,\n\nimage,label\nimg_01.png,benign\n")
        report = import_labels(project, titled)
        assert (report.labeled, report.errors) == (1, [])
        assert report.warnings == [f"{titled}: lines 1, 2 above the header ('Dermatology review 2026') read as "
                                   "a title, not as labels"]
        semicolons = tmp_path / "semicolons.csv"  # the title holds no separator
        semicolons.write_text("Review\nimage;label\nimg_03.png;malignant\n")
        report = import_labels(project, semicolons)
        assert (report.labeled, report.errors, len(report.warnings)) == (1, [], 1)
        decimal_commas = tmp_path / "decimal_commas.csv"  # a locale's spreadsheet: ; between, , inside numbers
        decimal_commas.write_text("image;label;score\nimg_04.png;benign;0,93\n")
        report = import_labels(project, decimal_commas)
        assert (report.unchanged, report.errors) == (1, [])
        no_header = tmp_path / "no_header.csv"  # rows without a header are all read, as before
        no_header.write_text("img_02.png,benign\nimg_99.png,benign\n")
        report = import_labels(project, no_header)
        assert report.labeled == 1 and len(report.errors) == 1 and report.warnings == []


# ----------------------------------------------------------------------------- command line


def test_cli_init_skips_bad_files_by_name_and_exits_0(tmp_path, monkeypatch, capsys):
    bad, good = _mixed_tree(tmp_path / "data", monkeypatch)
    code = main(["init", str(tmp_path / "project"), "--images", str(tmp_path / "data"),
                 "--task", "segmentation", "--labels", "lesion"])
    out, err = capsys.readouterr()
    assert code == 0, err
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert skipped and "files skipped" in out and "created" in out
    by_case = {c.name: c for c in IMAGE_CASES}
    for name, path in bad.items():
        if name not in NOT_REPORTED_BY_SCAN and not by_case[name].deep:
            assert any(path.name in line for line in skipped), name
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["nifti_4d", "png_decompression_bomb", "dicom_zero_bytes", "series_uneven_spacing"])
def test_cli_init_on_one_bad_input_exits_2_naming_it(name, tmp_path, capsys):
    case = next(c for c in IMAGE_CASES if c.name == name)
    path = case.build(tmp_path)
    code = main(["init", str(tmp_path / "project"), "--images", str(path), "--task", "segmentation",
                 "--labels", "lesion"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and path.name in err and "Traceback" not in err
    assert not (tmp_path / "project" / "project.sqlite").exists()


def test_cli_import_labels_partial_exits_0_fatal_exits_2(tmp_path, capsys):
    project, before = _csv_project(tmp_path)
    project.close()
    partial = next(c for c in CSV_CASES if c.name == "csv_unknown_class").build(tmp_path / "csv")
    assert main(["import-labels", str(tmp_path / "project"), str(partial)]) == 0
    out, err = capsys.readouterr()
    assert "imported 1 label from" in out and out.rstrip().endswith("1 problem")
    assert [line for line in err.splitlines() if line.startswith("skipped ")] == [
        line for line in err.splitlines() if line.strip()]
    assert "csv_unknown_class.csv, line 3" in err and "unknown class 'unsure'" in err
    fatal = next(c for c in CSV_CASES if c.name == "csv_non_utf8").build(tmp_path / "csv")
    assert main(["import-labels", str(tmp_path / "project"), str(fatal)]) == 2
    err = capsys.readouterr().err
    assert "csv_non_utf8.csv" in err and "utf-8" in err and "Traceback" not in err
    # nothing imported is a failure a script can see; a missing path says so
    nothing = tmp_path / "none.csv"
    nothing.write_text("file,label\nnot_here.png,0\n")  # a header other tools write: not a problem row
    assert main(["import-labels", str(tmp_path / "project"), str(nothing)]) == 1
    out, err = capsys.readouterr()
    assert "imported 0 labels" in out and "1 problem" in out and "line 2" in err and "line 1" not in err
    assert main(["import-labels", str(tmp_path / "project"), str(tmp_path / "gone.csv")]) == 2
    assert "gone.csv: does not exist" in capsys.readouterr().err
    with Project.open(tmp_path / "project", readonly=True) as reopened:
        by_name = {Path(s.path).name: s for s in reopened.samples()}
        assert reopened.load_label(by_name["img_01.png"].id) == 0  # from the partial import
        assert reopened.load_label(by_name["img_02.png"].id) == 1  # saved by hand before
        assert reopened.load_label(by_name["img_04.png"].id) == 0


def test_cli_import_masks_reports_skipped_files(tmp_path, capsys):
    project, _ = _mask_project(tmp_path)
    project.close()
    corpus.write_good_masks(tmp_path / "masks")
    bad = [c.build(tmp_path / "masks" / "more") for c in MASK_CASES[:6]]
    assert main(["import-labels", str(tmp_path / "project"), str(tmp_path / "masks")]) == 0
    out, err = capsys.readouterr()
    assert "imported 5 labels" in out and "2 more as the samples held them already (no new version), 6 problems" in out
    for path in bad:
        assert any(line.startswith("skipped ") and str(path) in line for line in err.splitlines())


def test_cli_usage_errors_exit_2_without_traceback(tmp_path, capsys):
    project, _ = _csv_project(tmp_path)
    project.close()
    root = str(tmp_path / "project")
    assert main(["export", root, "--format", "nifti", "--out", str(tmp_path / "out")]) == 2
    assert "segmentation" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["export", root, "--format", "csv", "--out", str(blocker / "sub")]) == 2
    assert "a_file" in capsys.readouterr().err
    assert main(["import-labels", root, str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["init", root, "--images", str(tmp_path / "images"), "--task", "classification",
                 "--classes", "a,b"]) == 2
    assert "already holds a medlabeler project" in capsys.readouterr().err
    partial = next(c for c in CSV_CASES if c.name == "csv_unknown_class").build(tmp_path / "csv")
    with Project.open(root):  # another app holds the project: refused, nothing imported
        assert main(["import-labels", root, str(partial)]) == 2
        assert "open for writing" in capsys.readouterr().err


# ----------------------------------------------------------------------------- resource limits


def _claiming_nifti(folder: Path, compressed: bool) -> Path:
    """A 6 KB NIfTI whose header claims 1000 x 1000 x 50 float32 voxels (200 MB)."""
    import gzip

    data = bytearray(corpus.nifti_bytes(corpus.volume_pixels(), compressed=False))
    struct.pack_into("<8h", data, 40, 3, 1000, 1000, 50, 1, 1, 1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("claims_200MB.nii.gz" if compressed else "claims_200MB.nii")
    path.write_bytes(gzip.compress(bytes(data)) if compressed else bytes(data))
    return path


@pytest.mark.parametrize("compressed", [False, True], ids=["nii", "nii.gz"])
def test_a_tiny_nifti_claiming_a_huge_volume_is_refused_without_allocating_it(compressed, tmp_path):
    path = _claiming_nifti(tmp_path, compressed)
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert path.name in str(info.value)
    assert peak < 50e6, f"reading a {path.stat().st_size}-byte file allocated {peak / 1e6:.0f} MB"
    infos, errors = scan_sources(path)
    assert not infos and errors and path.name in str(errors[0])
