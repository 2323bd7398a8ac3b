"""`medlabeler init / import-labels / status / export` on real-format files."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlabeler.cli import main
from medlabeler.engine.io import read_image
from medlabeler.engine.project.project_import import create_project, import_labels
from medlabeler.engine.workflows.active_loop import next_samples
from medlabeler.engine.store import Project
from tests.engine.io_fixtures import make_isic_folder, mni_volume, write_dicom_series, write_nifti


@pytest.fixture(scope="module")
def brain():
    return mni_volume(step=6)  # a real MRI, (32, 39, 33)


def test_init_on_a_folder_of_dicom_series_gives_one_sample_per_slice(tmp_path, brain, capsys):
    images = tmp_path / "dicom"
    for patient in range(4):
        write_dicom_series(images / f"p{patient}", brain[:10] + patient, spacing=(3.0, 1.5, 1.5),
                           patient_id=f"PAT-{patient}", series_number=patient + 1, seed=patient)
    code = main(["init", str(tmp_path / "proj"), "--images", str(images), "--task", "segmentation",
                 "--labels", "grey,white"])
    assert code == 0
    assert "40 samples added" in capsys.readouterr().out
    with Project.open(tmp_path / "proj", readonly=True) as project:
        samples = project.samples()
        assert project.task.unit == "slice" and project.task.slabs == 0
        assert sorted({s.slice_index for s in samples}) == list(range(10))
        assert {s.shape for s in samples} == {(39, 33)}
        by_group = {}
        for s in samples:
            by_group.setdefault(s.group, set()).add(s.split)
        assert len(by_group) == 4 and all(len(splits) == 1 for splits in by_group.values())
        pixels = project.load_pixels(next(s for s in samples if s.slice_index == 4))
        assert pixels.shape == (39, 33)


def test_status_says_when_a_single_scan_is_split_by_slabs(tmp_path, brain, capsys):
    source = write_nifti(tmp_path / "brain.nii.gz", brain)
    create_project(tmp_path / "proj", source, task="segmentation", names=["tissue"])[0].close()
    assert main(["status", str(tmp_path / "proj")]) == 0
    assert "10 contiguous slabs of slices per scan" in capsys.readouterr().out


@pytest.mark.parametrize("lesion_in, said", [
    # a rare label on training slices only: the validation Dice cannot measure it
    ("train", "no validation label holds lesion: the validation Dice (what promotion compares) leaves it out"),
    # every slice of it in held-out slabs: no model can learn it
    ("test", "no training label holds lesion (held-out labels do): the models cannot learn it"),
])
def test_status_names_a_label_a_split_lacks(tmp_path, brain, capsys, lesion_in, said):
    source = write_nifti(tmp_path / "brain.nii.gz", brain)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["tissue", "lesion"])
    with project:
        first = {split: next(s for s in project.samples() if s.split == split) for split in ("train", "val", "test")}
        tissue = np.zeros(first["train"].shape, np.uint8)
        tissue[2:6, 2:6] = 1
        lesion = tissue.copy()
        lesion[10:12, 10:12] = 2
        for split, sample in first.items():
            project.save_label(sample.id, lesion if split == lesion_in else tissue)
    assert main(["status", str(tmp_path / "proj")]) == 0
    assert said in capsys.readouterr().out


def test_single_scan_is_split_by_contiguous_slabs(tmp_path, brain):
    source = write_nifti(tmp_path / "brain.nii.gz", brain, spacing=(6.0, 6.0, 6.0))
    project, report = create_project(tmp_path / "proj", source, task="segmentation", names=["tissue"])
    with project:
        assert report.added == brain.shape[0] and project.task.slabs == 10
        splits = [s.split for s in sorted(project.samples(), key=lambda s: s.slice_index)]
        assert {"train", "val", "test"} <= set(splits) or len(set(splits)) >= 2
        changes = sum(a != b for a, b in zip(splits, splits[1:]))
        assert changes <= 9  # contiguous runs: at most one change per slab border


def test_blank_slices_are_found_at_import_and_never_queued(tmp_path, brain, capsys):
    """The empty slices padding a registered MRI are found once, at import, and left out of every
    split's queue (the clinician's `s` can still label one as all background)."""
    from medlabeler.engine.project.blank_samples import check_blank_samples, is_blank
    from medlabeler.engine.workflows.active_loop import next_samples

    padded = np.concatenate([brain, np.zeros((6, *brain.shape[1:]), brain.dtype)])  # 6 empty slices on top
    source = write_nifti(tmp_path / "padded.nii.gz", padded)
    assert main(["init", str(tmp_path / "proj"), "--images", str(source), "--task", "segmentation",
                 "--labels", "tissue"]) == 0
    expected = [z for z in range(len(padded)) if padded[z].min() == padded[z].max()]  # the MNI's own, and ours
    assert set(range(brain.shape[0], padded.shape[0])) < set(expected)
    assert f"{len(expected)} blank samples (one value everywhere) left out of the queue" in capsys.readouterr().out
    with Project.open(tmp_path / "proj") as project:
        blank = project.blank_ids()
        assert sorted(project.sample(i).slice_index for i in blank) == expected
        assert not project.unchecked_for_blank() and check_blank_samples(project) == 0
        queued = next_samples(project, n=padded.shape[0])
        assert queued and not blank & {s.sample for s in queued}
        assert len(queued) == padded.shape[0] - len(blank)  # every other sample, of every split
    assert is_blank(np.full((4, 4), 7.0)) and is_blank(np.full((2, 2), np.nan))
    assert not is_blank(np.array([[0.0, 0.0], [0.0, 1e-3]]))


def test_a_project_of_schema_1_opens_read_only_and_is_checked_once_open_for_writing(tmp_path, brain):
    import sqlite3

    from medlabeler.engine.project.blank_samples import check_blank_samples

    padded = np.concatenate([brain[:8], np.zeros((2, *brain.shape[1:]), brain.dtype)])
    project, _ = create_project(tmp_path / "proj", write_nifti(tmp_path / "v.nii.gz", padded), task="segmentation",
                                names=["tissue"])
    project.close()
    db = sqlite3.connect(tmp_path / "proj" / "project.sqlite")  # as an older medlabeler left it
    db.execute("DROP TABLE sample_facts")
    db.execute("ALTER TABLE models DROP COLUMN removed")
    db.execute("ALTER TABLE models DROP COLUMN was_active")
    db.execute("ALTER TABLE samples DROP COLUMN content_key")
    db.execute("DROP TABLE skips")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Project.open(tmp_path / "proj", readonly=True) as project:
        assert project.blank_ids() == frozenset() and project.unchecked_for_blank() == []
        assert project.skipped_ids() == [] and len(next_samples(project, n=3)) == 3  # nothing skipped then
    with Project.open(tmp_path / "proj") as project:  # migrated: nothing checked yet
        assert len(project.unchecked_for_blank()) == 10
        expected = sum(1 for z in padded if z.min() == z.max())
        assert expected >= 2 and check_blank_samples(project) == expected == len(project.blank_ids())


def test_isic_folder_makes_a_labeled_classification_project(tmp_path):
    made = make_isic_folder(tmp_path / "isic", {"melanoma": 5, "nevus": 7})
    project, report = create_project(tmp_path / "proj", tmp_path / "isic", task="classification")
    with project:
        assert project.task.names == ("melanoma", "nevus")
        assert report.added == 12 and report.labeled == 12
        status = project.status()
    assert status["per_class"] == {"melanoma": 5, "nevus": 7}
    assert len(made) == 12


def test_csv_import_keeps_good_rows_and_names_bad_ones(tmp_path):
    make_isic_folder(tmp_path / "isic", {"a": 3, "b": 3})
    files = sorted((tmp_path / "isic").rglob("*.*"))
    project, _ = create_project(tmp_path / "proj", tmp_path / "isic", task="classification", names=["x", "y"])
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        writer.writerow([files[0].name, "x"])
        writer.writerow([files[1].name, "cancer"])
        writer.writerow(["nowhere.png", "y"])
    with project:
        report = import_labels(project, table)
        assert report.labeled == 1 and len(report.errors) == 2
        messages = [str(e) for e in report.errors]
        assert any("line 3" in m and "unknown class 'cancer'" in m for m in messages)
        assert any("line 4" in m and "nowhere.png" in m for m in messages)
    # an image deleted since the import: its label would stop every training run, so it is refused
    files[2].unlink()
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows([[files[2].name, "y"], [files[3].name, "y"]])
    with Project.open(tmp_path / "proj") as project:
        report = import_labels(project, table)
        assert report.labeled == 1 and len(report.errors) == 1
        assert "line 1" in str(report.errors[0]) and f"({files[2].name}) is gone from where it was imported" in str(
            report.errors[0])
        assert [s for s in project.samples() if s.path == str(files[2])][0].id not in {
            s.id for s in project.samples(labeled=True)}


def test_masks_import_and_nifti_export_round_trip(tmp_path, brain):
    source = write_nifti(tmp_path / "images" / "brain.nii.gz", brain, spacing=(6.0, 6.0, 6.0))
    truth = (brain > 80).astype(np.uint8) + (brain > 160).astype(np.uint8)
    write_nifti(tmp_path / "masks" / "brain.nii.gz", truth, spacing=(6.0, 6.0, 6.0), dtype=np.uint8)
    write_nifti(tmp_path / "masks" / "other.nii.gz", truth)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["grey", "white"])
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == brain.shape[0]
        assert len(report.errors) == 1 and "other.nii.gz" in str(report.errors[0])
    assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out")]) == 0
    exported = tmp_path / "out" / "volume_0001_labels.nii.gz"
    assert np.array_equal(read_image(exported).array, truth)
    original, written = nib.load(source), nib.load(exported)
    assert np.allclose(original.affine, written.affine)
    index = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert index["labels"] == {"1": "grey", "2": "white"}
    with Project.open(tmp_path / "proj", readonly=True) as project:  # file -> samples, slices and splits
        expected = [{"sample": s.id, "slice": s.slice_index, "split": s.split} for s in project.samples()]
    assert index["volumes"][0]["samples"] == sorted(expected, key=lambda row: row["slice"])


def test_a_mask_stored_in_another_voxel_order_is_turned_by_its_affine(tmp_path, brain):
    """A mask of a DICOM series saved by another tool in RAS order (nibabel's canonical) lies on
    the same grid as the series, its voxels in another order: it was imported mirrored left-right
    and front-back, without a word; and then, whose origin was 0.5 mm off (a trial). A mask with no
    geometry, or in its image's voxel order elsewhere (a registration), keeps its file's order with
    a warning; one that would need turning and lies far from its image is refused (a review)."""
    volume = brain[::4]
    write_dicom_series(tmp_path / "ct", volume, spacing=(6.0, 2.0, 2.0))
    truth = np.zeros(volume.shape, np.uint8)
    truth[:, :10, :8] = 1  # in one corner: a mirrored copy lies in another
    made, _ = create_project(tmp_path / "first", tmp_path / "ct", task="segmentation", names=["corner"], unit="image")
    with made:
        made.save_label(made.samples()[0].id, truth, author="test")
    assert main(["export", str(tmp_path / "first"), "--format", "nifti", "--out", str(tmp_path / "out")]) == 0
    exported = nib.load(tmp_path / "out" / "volume_0001_labels.nii.gz")
    canonical = nib.as_closest_canonical(exported)
    assert nib.aff2axcodes(canonical.affine) != nib.aff2axcodes(exported.affine)  # a real turn
    (tmp_path / "ras").mkdir()
    nib.save(canonical, tmp_path / "ras" / "ct.nii.gz")
    (tmp_path / "bogus").mkdir()
    nib.save(nib.Nifti1Image(np.asarray(exported.dataobj), np.eye(4)), tmp_path / "bogus" / "ct.nii.gz")
    (tmp_path / "none").mkdir()  # nibabel with no affine: codes 0, and an affine of its own making (x flipped)
    nib.save(nib.Nifti1Image(np.asarray(exported.dataobj), None), tmp_path / "none" / "ct.nii.gz")
    for name, image, shift in (("near", canonical, 0.5), ("far", canonical, 20.0), ("moved", exported, 20.0)):
        moved = image.affine.copy()  # its origin rounded (a trial: imported mirrored), wrong, or registered
        moved[2, 3] += shift
        (tmp_path / name).mkdir()
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), moved), tmp_path / name / "ct.nii.gz")

    for masks, note in (("ras", "turned by its affine to match"),
                        ("near", "turned by its affine to match, but its grid lies 0.5 mm from its image's (0.083 of "
                                 "a voxel)"),
                        ("bogus", "it has no geometry of its own (no origin, its axes as stored); imported in the "
                                 "file's voxel order"),
                        ("none", "it has no geometry of its own (no origin, its axes as stored); imported in the "
                                 "file's voxel order"),
                        ("moved", "its affine places it elsewhere than its image (another origin, spacing or "
                                  "direction); imported in the file's voxel order")):
        project, _ = create_project(tmp_path / masks / "proj", tmp_path / "ct", task="segmentation",
                                    names=["corner"], unit="image")
        with project:
            report = import_labels(project, tmp_path / masks)
            assert report.labeled == 1 and not report.errors
            assert np.array_equal(project.load_label(project.samples()[0].id), truth), masks
        assert len(report.warnings) == 1 and note in report.warnings[0] and "ct.nii.gz" in report.warnings[0], masks
    # in another voxel order and 20 mm (3.3 voxels) away: in neither order would it be more than a guess
    project, _ = create_project(tmp_path / "far" / "proj", tmp_path / "ct", task="segmentation", names=["corner"],
                                unit="image")
    with project:
        report = import_labels(project, tmp_path / "far")
        assert report.labeled == 0 and project.status()["labeled"] == 0
    (error,) = report.errors
    assert error.path == tmp_path / "far" / "ct.nii.gz" or str(error.path) == str(tmp_path / "far" / "ct.nii.gz")
    assert "stored in another voxel order than its image, and its grid lies 3.3 voxels from its image's: not " \
           "imported" in str(error)


def test_mask_of_the_wrong_shape_is_reported_not_saved(tmp_path, brain):
    source = write_nifti(tmp_path / "images" / "brain.nii.gz", brain)
    write_nifti(tmp_path / "masks" / "brain.nii.gz", np.zeros((3, 4, 5), np.uint8))
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["tissue"])
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == 0
        z, y, x = brain.shape  # said as NIfTI tools show them, x first (a trial looked on the wrong axis)
        assert f"mask shape 5x4x3 does not match image shape {x}x{y}x{z} (x, y, z" in str(report.errors[0])
        assert project.status()["labeled"] == 0


def test_status_json_has_the_documented_keys(tmp_path, capsys):
    make_isic_folder(tmp_path / "isic", {"a": 2, "b": 2})
    assert main(["init", str(tmp_path / "p"), "--images", str(tmp_path / "isic"), "--task", "classification"]) == 0
    capsys.readouterr()
    assert main(["status", str(tmp_path / "p"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {"samples", "labeled", "per_split", "per_class"} <= set(status)
    assert status["samples"] == 4 and status["labeled"] == 4


def test_status_names_a_labeled_image_that_no_longer_reads(tmp_path, capsys):
    """Every training run would stop at it: status names it, and how to take its label back."""
    make_isic_folder(tmp_path / "isic", {"a": 2, "b": 2})
    assert main(["init", str(tmp_path / "p"), "--images", str(tmp_path / "isic"), "--task", "classification"]) == 0
    gone = sorted((tmp_path / "isic" / "b").iterdir())[0]
    gone.unlink()
    capsys.readouterr()
    assert main(["status", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert f"labeled sample 3: {gone.name}: source image is missing" in err
    assert f"medlabeler remove-label {tmp_path / 'p'} ID" in err
    assert main(["status", str(tmp_path / "p"), "--json"]) == 0
    assert [entry["samples"] for entry in json.loads(capsys.readouterr().out)["unreadable_labeled"]] == [[3]]


def test_a_colour_image_among_grey_ones_is_named(tmp_path):
    """A photo among chest radiographs trained silently as three channels (a new user's trial)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / f"xray{k}.png")
    project, report = create_project(tmp_path / "grey", folder, task="segmentation", names=["lung"])
    project.close()
    assert not any("colour" in w for w in report.warnings)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "photo.png")
    project, report = create_project(tmp_path / "mixed", folder, task="segmentation", names=["lung"])
    project.close()
    assert [w for w in report.warnings if "colour" in w] == [
        "1 colour image among 3 grey ones (photo.png): they train together, grey as three equal channels; "
        "if it is in the wrong folder, make the project again without it"]


def test_a_labeled_series_gone_from_a_folder_of_two_is_found(tmp_path, brain):
    """Two series in one folder share its path: the check read only the first one's slice and
    missed the second series gone (a review)."""
    images = tmp_path / "dicom"
    for number, prefix in ((1, "a"), (2, "b")):
        write_dicom_series(images, brain[:4], series_number=number, prefix=prefix, seed=number,
                           series_uid=f"1.2.826.0.1.3680043.8.498.{number}")
    project, _ = create_project(tmp_path / "proj", images, task="segmentation", names=["brain"])
    with project:
        by_series: dict = {}
        for sample in project.samples():
            by_series.setdefault(sample.series_uid, []).append(sample)
        assert len(by_series) == 2
        for samples in by_series.values():
            project.save_label(samples[1].id, np.ones(samples[1].shape, np.uint8))
    for path in images.glob("b*"):  # the second series' files
        path.unlink()
    with Project.open(tmp_path / "proj") as project:
        (second,) = [s for s in project.samples(labeled=True) if s.series_uid.endswith(".498.2")]
        found = project.check_labeled_sources().unreadable
        assert [ids for ids, _ in found] == [[second.id]]


def test_import_messages_count_files_and_tell_skipped_series_apart(tmp_path, brain, capsys):
    """13 files in 3 bad series, two of them with the same description in one folder: each skip
    line names its series by number and file count, the summary counts files, not errors."""
    images = tmp_path / "dicom"
    for patient in range(2):  # good: 2 x 6 files
        write_dicom_series(images / f"p{patient}", brain[:6], patient_id=f"PAT-{patient}", seed=patient)
    uneven = [(0, 0, z) for z in (0.0, 2.0, 4.0, 9.0, 11.0)]
    for number, prefix in ((7, "a"), (8, "b")):  # bad: same description, same folder, 5 files each
        write_dicom_series(images / "p2", brain[:5], patient_id="PAT-2", series_number=number, prefix=prefix,
                           series_description="T1 axial", positions=uneven, seed=number)
    write_dicom_series(images / "p3", brain[:3], patient_id="PAT-3", series_number=2,  # bad: 3 files
                       positions=[(0, 0, 0.0), (0, 0, 1.0), (0, 0, 5.0)])
    code = main(["init", str(tmp_path / "proj"), "--images", str(images), "--task", "segmentation", "--labels", "brain"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "25 image files found, 12 used (2 images or series): 12 samples added" in captured.out
    assert "13 files skipped (3 whole series)" in captured.out
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 3 and len(set(skipped)) == 3
    assert any("series 7 'T1 axial' (5 files)" in line for line in skipped)
    assert any("series 8 'T1 axial' (5 files)" in line for line in skipped)
    assert any("series 2 'test series' (3 files)" in line for line in skipped)
    assert "PAT-" not in captured.out + captured.err and "Doe" not in captured.out + captured.err


def test_import_warns_about_an_empty_split_and_what_the_app_does(tmp_path, brain, capsys):
    images = tmp_path / "dicom"
    for patient in range(2):  # 2 scans, one sample each: val or test stays empty
        write_dicom_series(images / f"p{patient}", brain[:4], patient_id=f"PAT-{patient}", seed=patient)
    project, report = create_project(tmp_path / "proj", images, task="segmentation", names=["brain"],
                                     unit="image")
    with project:
        per_split = project.status()["per_split"]
        empty = [split for split in ("val", "test") if not per_split.get(split, {}).get("samples")]
        assert empty
        words = {"val": "no validation samples", "test": "no test samples"}
        assert [w.split(":")[0] for w in report.warnings] == [words[s] for s in empty]
        for warning in report.warnings:
            assert "2 patients or scans are too few to hold one out" in warning and "Add images of more patients" in warning
        assert any("last weights" in w for w in report.warnings) == ("val" in empty)
    single = tmp_path / "one"
    write_dicom_series(single / "p0", brain[:4], patient_id="PAT-0", seed=0)
    one, report = create_project(tmp_path / "proj1", single, task="segmentation", names=["brain"], unit="image")
    one.close()
    assert report.warnings and all("1 patient or scan is too few" in w for w in report.warnings)


def test_an_image_whose_pixels_cannot_be_read_is_skipped_at_import(tmp_path, capsys):
    """A PNG cut short in a copy has a readable header: `init` took it, and every later training
    run stopped at it ("image data is truncated"), with no command to drop it."""
    made = make_isic_folder(tmp_path / "isic", {"nevus": 4, "melanoma": 4}, jpeg_every=0)
    cut = sorted(made)[2]
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    assert main(["init", str(tmp_path / "proj"), "--images", str(tmp_path / "isic"),
                 "--task", "classification"]) == 0
    out = capsys.readouterr()
    assert "7 samples added" in out.out and cut.name in out.err
    with Project.open(tmp_path / "proj", readonly=True) as project:
        assert len(project.samples()) == 7 and str(cut) not in {s.path for s in project.samples()}


def test_class_folders_left_out_of_classes_are_named(tmp_path):
    """`--classes nevus,melanoma` on a folder that also holds keratosis/ added its 20 images
    unlabeled without a word ("40 labels imported")."""
    make_isic_folder(tmp_path / "isic", {"nevus": 3, "melanoma": 3, "keratosis": 2})
    project, report = create_project(tmp_path / "proj", tmp_path / "isic", task="classification",
                                     names=["nevus", "melanoma"])
    project.close()
    assert report.labeled == 6
    assert any("class folders not among the classes (nevus, melanoma)" in w and "keratosis/ (2 images)" in w
               for w in report.warnings)


def _xray_study(folder, patient: str, views=("PA", "LAT")) -> list:
    """Two views of one chest X-ray in one series (no positions, as a CR/DX file has none)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    series = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number, view in enumerate(views, 1):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.Modality, ds.PatientID, ds.ViewPosition = "DX", patient, view
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series, generate_uid(), number
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "SliceLocation", "FrameOfReferenceUID"):
            delattr(ds, keyword)
        ds.PixelData = (ds.pixel_array + 50 * number).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"{patient}_{view}.dcm")
        written.append(folder / f"{patient}_{view}.dcm")
    return written


def test_the_views_of_an_x_ray_series_are_images_of_their_own_labeled_by_their_folder(tmp_path, capsys):
    _xray_study(tmp_path / "xr" / "normal", "P1")
    _xray_study(tmp_path / "xr" / "abnormal", "P2")
    code = main(["init", str(tmp_path / "cls"), "--images", str(tmp_path / "xr"), "--task", "classification"])
    assert code == 0, capsys.readouterr().err
    with Project.open(tmp_path / "cls", readonly=True) as project:
        samples = project.samples()
        assert project.task.names == ("abnormal", "normal") and len(samples) == 4
        assert {s.shape for s in samples} == {(128, 128)} and not any(s.is_volume for s in samples)
        labels = {Path(s.path).name: project.task.names[project.load_label(s.id)] for s in samples}
        assert labels == {"P1_PA.dcm": "normal", "P1_LAT.dcm": "normal", "P2_PA.dcm": "abnormal",
                          "P2_LAT.dcm": "abnormal"}
        assert len({s.split for s in samples if "P1" in s.path}) == 1, "one patient's views stay in one split"
        pa, lat = (project.load_pixels(s) for s in sorted(samples, key=lambda s: s.path) if "P1" in s.path)
        assert not np.array_equal(pa, lat)
    code = main(["init", str(tmp_path / "seg"), "--images", str(tmp_path / "xr"), "--task", "segmentation",
                 "--labels", "lung"])
    assert code == 0
    with Project.open(tmp_path / "seg", readonly=True) as project:
        assert len(project.samples()) == 4 and {s.slice_index for s in project.samples()} == {None}


def test_status_counts_the_slabs_a_short_scan_really_has(tmp_path, capsys):
    from pydicom.data import get_testdata_file

    create_project(tmp_path / "p", get_testdata_file("eCT_Supplemental.dcm"), task="segmentation",
                   names=["body"])[0].close()
    assert main(["status", str(tmp_path / "p")]) == 0
    assert "splits: 2 contiguous slabs of slices per scan" in capsys.readouterr().out  # 2 slices, not 10


def test_ignored_files_that_share_a_name_are_listed_by_their_path(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    for study in ("a", "b"):
        (tmp_path / "dicom" / study).mkdir(parents=True)
        shutil.copy(get_testdata_file("DICOMDIR-implicit"), tmp_path / "dicom" / study / "DICOMDIR-implicit")
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "dicom" / "a" / "ct.dcm")
    _, report = create_project(tmp_path / "p", tmp_path / "dicom", task="segmentation", names=["x"])
    assert report.ignored_names == ("a/DICOMDIR-implicit", "b/DICOMDIR-implicit")


def test_many_files_skipped_for_one_reason_make_one_line_and_twin_series_one_counted_line():
    from medlabeler.engine.errors import ImageReadError
    from medlabeler.engine.project.project_import import skipped_lines

    stubs = [ImageReadError(f"/d/TINY/SE0/IM{k:04d}", "holds no image: the DICOM header is truncated") for k in range(54)]
    twins = [ImageReadError("/d/MR2", "series 2 'PILOT' (3 files): mixed orientation") for _ in range(2)]
    other = ImageReadError("/d/TINY/SE0/odd.dcm", "not a DICOM file")
    lines = skipped_lines(stubs + twins + [other])
    assert lines == ["54 files in /d/TINY/SE0 (IM0000, IM0001, IM0002, ...): holds no image: the DICOM header is "
                     "truncated",
                     "/d/MR2: series 2 'PILOT' (3 files): mixed orientation (2 series alike: the same number and "
                     "description)",
                     "/d/TINY/SE0/odd.dcm: not a DICOM file"]


def test_masks_in_folders_named_as_their_images_import_for_a_folder_per_patient(tmp_path, brain):
    """A trial: images/p01/t1.nii.gz, images/p02/t1.nii.gz ... could take no mask: t1.nii.gz named
    several images, and no other name matched one."""
    for patient, offset in (("p01", 0), ("p02", 8)):
        write_nifti(tmp_path / "images" / patient / "t1.nii.gz", brain[offset:offset + 4])
        mask = np.zeros((4, *brain.shape[1:]), np.uint8)
        mask[:, offset:offset + 3] = 1  # each patient's own
        write_nifti(tmp_path / "masks" / patient / "t1.nii.gz", mask)
    write_nifti(tmp_path / "flat" / "t1.nii.gz", np.zeros((4, *brain.shape[1:]), np.uint8))
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="segmentation", names=["tissue"])
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert (report.labeled, report.errors) == (8, [])
        for sample in project.samples():
            offset = 0 if "/p01/" in sample.path else 8
            assert project.load_label(sample.id)[offset:offset + 3].all(), sample.path
        (error,) = import_labels(project, tmp_path / "flat").errors
        assert "2 images in the project have this name; put the mask in folders named as its image's" in str(error)
        again = import_labels(project, tmp_path / "masks")  # the same folder twice: no second version of each
        assert (again.labeled, again.unchanged) == (0, 8)
        assert all(len(project.label_history(s.id)) == 1 for s in project.samples())
    from medlabeler.engine.project.project_import import imported_text

    assert imported_text(again, "M") == "imported 0 labels from M, 8 more as the samples held them already (no new " \
                                        "version)"


def test_an_import_replaces_a_label_whose_mask_file_is_damaged(tmp_path, brain):
    """The check that an imported label is not the sample's label already read the current mask:
    a damaged one stopped the whole import, where an import is a way to mend it."""
    write_nifti(tmp_path / "images" / "brain.nii.gz", brain[:3])
    mask = np.zeros((3, *brain.shape[1:]), np.uint8)
    mask[:, :5] = 1
    write_nifti(tmp_path / "masks" / "brain.nii.gz", mask)
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="segmentation", names=["tissue"])
    with project:
        first = project.samples()[0]
        project.save_label(first.id, np.zeros(first.shape, np.uint8))
        (tmp_path / "proj" / project.label(first.id).mask_relpath).write_bytes(b"torn")
        report = import_labels(project, tmp_path / "masks")
        assert (report.labeled, report.errors) == (3, [])
        assert np.array_equal(project.load_label(first.id), mask[first.slice_index])
