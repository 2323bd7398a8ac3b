"""Images moved or renamed since the import are found again (`medlabeler relink`)."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest

from medlabeler.cli import main
from medlabeler.engine.errors import ProjectError
from medlabeler.engine.project.project_import import create_project
from medlabeler.engine.project.relink import relink_images
from medlabeler.engine.store import Project
from tests.engine.io_fixtures import mni_volume, write_dicom_series, write_nifti, write_png


@pytest.fixture(scope="module")
def brain():
    return mni_volume(step=6)  # a real MRI, (32, 39, 33)


@pytest.fixture
def moved(tmp_path, brain):
    """A project of two NIfTI scans in subfolders, a DICOM series and two PNGs, each labeled on one
    sample; then the whole image folder moved to another 'disk'."""
    images = tmp_path / "old" / "images"
    write_nifti(images / "mr" / "a.nii.gz", brain[:6])
    write_nifti(images / "mr" / "b.nii.gz", brain[6:12])
    write_dicom_series(images / "ct" / "series1", brain[:5], spacing=(3.0, 1.5, 1.5), seed=1)
    for i in range(2):
        write_png(images / "photos" / f"p{i}.png", (brain[10 + i] * 255 / brain.max()).astype(np.uint8))
    project, _ = create_project(tmp_path / "proj", images, task="segmentation", names=["tissue"], unit="slice")
    with project:
        labels = {}
        for sample in {s.path: s for s in project.samples()}.values():  # one sample of each image
            mask = np.zeros(sample.shape, np.uint8)
            mask[2:5, 3:7] = 1
            project.save_label(sample.id, mask)
            labels[sample.id] = mask
        before = {s.id: (s.path, s.series_uid, s.slice_index) for s in project.samples()}
    new = tmp_path / "new disk" / "data"
    new.parent.mkdir()
    shutil.move(images, new)
    return tmp_path / "proj", new, before, labels


def test_a_moved_image_folder_is_found_by_the_ends_of_its_paths(moved):
    root, new, before, labels = moved
    with Project.open(root) as project:
        assert len(project.missing_sources()) == 5  # two scans, one series, two photos
        dry = relink_images(project, new, dry_run=True)
        assert len(dry.found) == 5 and dry.samples == len(before)
        assert len(project.missing_sources()) == 5  # a dry run changes nothing
        report = relink_images(project, new)
        assert report.samples == len(before) and not report.missing and not report.refused
        assert report.summary(new) == f"found 5 of 5 missing images under {new}: {len(before)} samples read from there now"
        assert project.missing_sources() == []
        for sample in project.samples():  # the same ids, slices and labels, read from the new place
            path, series, z = before[sample.id]
            assert sample.path.startswith(str(new)) and sample.path.endswith(path.split("images", 1)[1])
            assert (sample.series_uid, sample.slice_index) == (series, z)
            assert project.load_pixels(sample).shape == sample.shape
        for sample_id, mask in labels.items():
            assert np.array_equal(project.load_label(sample_id), mask)
        assert project.verify_sources() == []  # fingerprints recorded anew
        assert project.audit_log()[-1]["action"] == "sources_relinked"


def test_renamed_images_are_found_by_their_fingerprint_and_a_different_image_is_refused(moved):
    root, new, before, _ = moved
    os.rename(new / "mr" / "a.nii.gz", new / "mr" / "a_renamed.nii.gz")  # mv keeps size, time and bytes
    os.rename(new / "ct" / "series1", new / "ct" / "head")
    (new / "photos" / "p1.png").unlink()
    write_nifti(new / "mr" / "b.nii.gz", np.zeros((7, 8, 9), np.float32))  # another scan, same name
    with Project.open(root) as project:
        report = relink_images(project, new)
        found = {os.path.basename(old): os.path.relpath(now, new) for old, now in report.found.items()}
        assert found == {"a.nii.gz": "mr/a_renamed.nii.gz", "series1": "ct/head", "p0.png": "photos/p0.png"}
        assert sorted(os.path.basename(p) for p in report.missing) == ["b.nii.gz", "p1.png"]
        (refused,) = report.refused
        assert refused.path == str(new / "mr" / "b.nii.gz") and "7x8x9" in str(refused) and "6x39x33" in str(refused)
        assert "not the same image: " in report.lines()[-1]
        assert {os.path.basename(p) for p, _, _ in project.missing_sources()} == {"b.nii.gz", "p1.png"}


def test_the_command_relinks_and_says_what_is_still_missing(moved, capsys):
    root, new, before, _ = moved
    (new / "photos" / "p1.png").unlink()
    assert main(["relink", str(root), str(new), "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().endswith("would be read from there (a dry run: nothing changed); 1 still "
                                                    "missing")
    assert main(["relink", str(root), str(new)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"found 4 of 5 missing images under {new}: {len(before) - 1} samples read from there now; 1 still missing"
    assert "still missing: " in err and "p1.png" in err
    assert main(["relink", str(root), str(new / "nothing here")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with Project.open(root, readonly=True) as project, pytest.raises(ProjectError):
        project.move_sources({})  # read-only


def test_an_image_the_project_reads_already_is_never_taken_for_a_moved_one(tmp_path, brain):
    src = tmp_path / "src"
    keep = write_nifti(src / "data" / "sub1" / "scan.nii.gz", brain[:4])  # stays where it is
    gone = write_nifti(src / "old" / "a" / "scan.nii.gz", brain[4:8])
    create_project(tmp_path / "proj", src, task="segmentation", names=["tissue"])[0].close()
    moved_to = src / "data" / "sub2" / "scan.nii.gz"
    moved_to.parent.mkdir()
    shutil.copyfile(gone, moved_to)  # copied without its time: only its name finds it
    os.utime(moved_to, (1e9, 1e9))
    gone.unlink()
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, src / "data")  # two files of its name there, one of them in use
        assert report.found == {str(gone): str(moved_to)}
        assert {p for p, _, _ in project.sources()} == {str(keep), str(moved_to)}


def _make_project(tmp_path, volumes: dict[str, np.ndarray]) -> None:
    """A closed project at tmp_path/proj of NIfTI volumes written under tmp_path/old."""
    for name, volume in volumes.items():
        write_nifti(tmp_path / "old" / name, volume)
    create_project(tmp_path / "proj", tmp_path / "old", task="segmentation", names=["tissue"])[0].close()


def test_one_patients_image_is_never_given_to_another_of_the_same_name_and_size(tmp_path, brain):
    """Only pat2 copied so far: pat1's scan (same name, same size) must not be taken for it."""
    _make_project(tmp_path, {"pat1/t1.nii.gz": brain[:4], "pat2/t1.nii.gz": brain[4:8]})
    (tmp_path / "new").mkdir()
    shutil.copytree(tmp_path / "old" / "pat2", tmp_path / "new" / "pat2")  # new file times: no fingerprint match
    for copied in (tmp_path / "new" / "pat2").iterdir():
        os.utime(copied, (1e9, 1e9))
    shutil.rmtree(tmp_path / "old")
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, tmp_path / "new")
        assert report.found == {str(tmp_path / "old/pat2/t1.nii.gz"): str(tmp_path / "new/pat2/t1.nii.gz")}
        assert report.missing == [str(tmp_path / "old/pat1/t1.nii.gz")]


def test_a_project_made_on_windows_finds_its_images_by_their_windows_path(tmp_path, brain):
    _make_project(tmp_path, {"mr/a.nii.gz": brain[:4]})
    import sqlite3

    db = sqlite3.connect(tmp_path / "proj" / "project.sqlite")
    db.execute("UPDATE samples SET path = 'D:\\scans\\mr\\a.nii.gz'")  # as the Windows machine stored it
    db.commit()
    db.close()
    os.utime(tmp_path / "old" / "mr" / "a.nii.gz", (1e9, 1e9))  # copied over: a new file time
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, tmp_path / "old")
        assert report.found == {"D:\\scans\\mr\\a.nii.gz": str(tmp_path / "old" / "mr" / "a.nii.gz")}


def test_a_folder_reached_through_a_link_never_gives_an_image_in_use_to_a_missing_one(tmp_path, brain):
    _make_project(tmp_path, {"data/sub1/scan.nii.gz": brain[:4], "gone/scan.nii.gz": brain[:4]})
    shutil.rmtree(tmp_path / "old" / "gone")
    os.symlink(tmp_path / "old" / "data", tmp_path / "alias")
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, tmp_path / "alias")  # sub1/scan.nii.gz is the one in use
        assert report.found == {} and report.missing == [str(tmp_path / "old" / "gone" / "scan.nii.gz")]


def test_a_series_kept_in_subfolders_is_never_matched_by_an_empty_folders_fingerprint(tmp_path, brain):
    """A folder holding no file itself has the fingerprint of nothing: every such folder matched,
    the search folder first, and the series would have been read through the whole tree."""
    written = write_dicom_series(tmp_path / "old" / "ser", brain[:4], spacing=(3.0, 1.5, 1.5), seed=3)
    for i, file in enumerate(sorted(written)):  # its files in two subfolders of the series' folder
        (tmp_path / "old" / "ser" / "ab"[i % 2]).mkdir(exist_ok=True)
        shutil.move(file, tmp_path / "old" / "ser" / "ab"[i % 2] / os.path.basename(file))
    create_project(tmp_path / "proj", tmp_path / "old", task="segmentation", names=["tissue"])[0].close()
    with Project.open(tmp_path / "proj", readonly=True) as project:
        assert project.sources()[0][0] == str(tmp_path / "old" / "ser")
    (tmp_path / "new" / "empty" / "x").mkdir(parents=True)
    shutil.move(tmp_path / "old" / "ser", tmp_path / "new" / "renamed")
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, tmp_path / "new")
        assert report.found == {} and report.missing == [str(tmp_path / "old" / "ser")]


def test_a_name_two_missing_images_share_is_not_enough_to_tell_them_apart(tmp_path, brain):
    _make_project(tmp_path, {"a/scan.nii.gz": brain[:4], "b/scan.nii.gz": brain[4:8]})
    (tmp_path / "new").mkdir()
    shutil.copyfile(tmp_path / "old" / "b" / "scan.nii.gz", tmp_path / "new" / "scan.nii.gz")  # which was it?
    shutil.rmtree(tmp_path / "old")
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, tmp_path / "new")  # not by name: by what the file holds
        assert report.found == {str(tmp_path / "old/b/scan.nii.gz"): str(tmp_path / "new/scan.nii.gz")}
        assert report.missing == [str(tmp_path / "old/a/scan.nii.gz")]


def test_renamed_images_are_not_looked_for_under_a_folder_too_large_and_the_report_says_so(moved, monkeypatch):
    root, new, _, _ = moved
    os.rename(new / "mr" / "a.nii.gz", new / "mr" / "a_renamed.nii.gz")
    monkeypatch.setattr("medlabeler.engine.project.relink.FINGERPRINTS_AT_MOST", 3)
    with Project.open(root) as project:
        report = relink_images(project, new)
    assert [os.path.basename(p) for p in report.missing] == ["a.nii.gz"]
    assert report.lines()[-1].startswith("renamed images were not looked for: the folder holds more than 3 files")


def test_a_slice_says_which_scan_it_is_in_by_a_number_a_relink_keeps(moved, capsys):
    """A trial: the queue said only "slice 84" in a project of eight scans."""
    from medlabeler.engine.workflows.active_loop import where

    root, new, _, _ = moved
    with Project.open(root) as project:
        by_path = {}
        for sample in project.samples():
            by_path.setdefault((sample.path, sample.series_uid), sample)
        numbers = project.scan_numbers()
        assert sorted(numbers.values()) == [1, 2, 3]  # two NIfTI scans and a DICOM series; the photos are no scans
        first = min(project.samples(), key=lambda s: s.id if s.slice_index is not None else 10**9)
        assert numbers[(first.path, first.series_uid)] == 1  # in the order their slices were added
        relink_images(project, new)
        moved_sample = project.sample(first.id)
        assert project.scan_numbers()[(moved_sample.path, moved_sample.series_uid)] == 1
        assert where(moved_sample, project) == f"scan 1, slice {first.slice_index}"
        photo = next(s for s in project.samples() if s.slice_index is None)
        assert where(photo, project) == photo.split
    capsys.readouterr()
    assert main(["queue", str(root), "--n", "20"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  sample ")]
    assert rows and all(re.search(r"  sample \d+ +(scan \d, slice \d+|train|val|test) ", row) for row in rows), rows
    assert any("scan " in row for row in rows)


def test_a_read_only_handle_learns_the_scans_new_places_from_a_relink_elsewhere(moved):
    """(A review.) The app's read-only handle beside a command that relinked kept numbers keyed by
    the old paths, and its rows said "slice 3" where they had said "scan 2, slice 3"."""
    root, new, _, _ = moved
    with Project.open(root, readonly=True) as reader:
        first = min((s for s in reader.samples() if s.slice_index is not None), key=lambda s: s.id)
        assert reader.scan_number(first) == 1
        with Project.open(root) as writer:
            relink_images(writer, new)
        reader._scan_numbers_read -= 2  # a second later
        assert reader.scan_number(reader.sample(first.id)) == 1


def test_another_patients_scan_of_the_same_name_and_size_is_never_taken(tmp_path, brain):
    """A trial: pat1 moved away, a copy of pat2's t1.nii.gz (same name, same size) under the folder
    chosen: relink gave pat1's samples pat2's scan. What a file holds is kept at import now."""
    _make_project(tmp_path, {"pat1/t1.nii.gz": brain[:4], "pat2/t1.nii.gz": brain[4:8]})
    (tmp_path / "other" / "Q").mkdir(parents=True)
    shutil.copyfile(tmp_path / "old" / "pat2" / "t1.nii.gz", tmp_path / "other" / "Q" / "t1.nii.gz")
    shutil.rmtree(tmp_path / "old" / "pat1")
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, tmp_path / "other")
        assert report.found == {} and report.missing == [str(tmp_path / "old/pat1/t1.nii.gz")]
        assert "its size or bytes differ from the image imported" in str(report.refused[0])


def test_a_project_made_before_contents_were_kept_says_what_it_found_by_name_only(tmp_path, brain):
    import sqlite3

    _make_project(tmp_path, {"pat1/t1.nii.gz": brain[:4]})
    db = sqlite3.connect(tmp_path / "proj" / "project.sqlite")
    db.execute("UPDATE samples SET content_key = NULL")  # as a project made before the key was kept
    db.commit()
    db.close()
    (tmp_path / "new" / "renamed_folder").mkdir(parents=True)
    shutil.copyfile(tmp_path / "old" / "pat1" / "t1.nii.gz", tmp_path / "new" / "renamed_folder" / "t1.nii.gz")
    shutil.rmtree(tmp_path / "old")
    with Project.open(tmp_path / "proj") as project:
        report = relink_images(project, tmp_path / "new", dry_run=True)
    new = str(tmp_path / "new" / "renamed_folder" / "t1.nii.gz")
    assert report.lines() == [f"found by its name only, check it: {new} (for {tmp_path / 'old/pat1/t1.nii.gz'}; the "
                              "project was made before medlabeler kept what its images hold)",
                              f"would read {tmp_path / 'old/pat1/t1.nii.gz'} from {new}"]
    assert report.summary("X").endswith("4 samples would be read from there (a dry run: nothing changed)")
