"""DICOM series with slices missing, cut short or copied, as a user's CT folder has them.

- a slice missing from the regular grid (deleted, or a file that cannot be read) is read as a
  blank slice at its position, so the volume keeps its geometry; the import warns, naming the
  series and the position, and the slice sample is never queued;
- uneven spacing that is not a whole number of slices keeps its refusal;
- copies of an instance (the same SOPInstanceUID) are read once and counted;
- an import that finds nothing names every problem; non-image files are counted.

The volumes are slices of the MNI152 brain MRI (nilearn) written slice by slice with pydicom.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from medlabeler.cli import main
from medlabeler.engine.errors import ImageReadError, InputError
from medlabeler.engine.io import read_image, scan_sources
from medlabeler.engine.io.dicom import read_dicom_paths
from medlabeler.engine.project.project_import import create_project
from tests.engine.io_fixtures import mni_volume, write_dicom_series


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """A small real MRI, (Z, Y, X) = (12, 24, 20), values as int-valued 'HU' in 0..1020."""
    return mni_volume(step=10)[:12] * 4.0


def _truncate(path, size: int = 400) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size + 132 + 600)  # the header stays readable, the pixels are cut short


def test_a_deleted_slice_is_read_blank_at_its_position(tmp_path, volume):
    full = write_dicom_series(tmp_path / "full", volume, spacing=(2.5, 0.8, 0.7), origin=(3, -4, 10))
    paths = write_dicom_series(tmp_path / "ct", volume, spacing=(2.5, 0.8, 0.7), origin=(3, -4, 10))
    paths[5].unlink()
    whole = read_image(full[0].parent)
    image = read_image(tmp_path / "ct")
    assert image.array.shape == volume.shape
    np.testing.assert_array_equal(np.delete(image.array, 5, axis=0), np.delete(volume, 5, axis=0))
    assert np.all(image.array[5] == volume.min())  # blank: the series' minimum (0 here)
    np.testing.assert_allclose(image.affine, whole.affine, atol=1e-6)  # index k still maps to slice k's position
    assert image.spacing == pytest.approx(whole.spacing)
    assert image.metadata["blank_slices"] == [5] and image.metadata["files"] == 11

    infos, errors = scan_sources(tmp_path / "ct")
    assert errors == [] and len(infos) == 1
    info = infos[0]
    assert info.shape == volume.shape and info.n_files == 11 and info.blank_slices == (5,)
    (note,) = info.notes
    assert "series 1 'test series' (11 files): 1 slice missing at z=22.5 mm (slice index 5 of 12), shown blank" in note
    assert "no file holds it" in note and "Doe" not in note and "PAT-0001" not in note


def test_two_gaps_and_air_for_a_ct_below_minus_1024(tmp_path, volume):
    """Two neighbouring slices and a third missing; a CT padded with -3024 gets air (-1024 HU)."""
    ct = volume - 1024.0
    ct[:, :2, :] = -3024.0  # outside the field of view
    paths = write_dicom_series(tmp_path / "ct", ct, rescale=(1.0, -4096.0))
    for k in (3, 4, 9):
        paths[k].unlink()
    image = read_image(tmp_path / "ct")
    assert image.array.shape == ct.shape and image.metadata["blank_slices"] == [3, 4, 9]
    assert np.all(image.array[[3, 4, 9]] == -1024.0)
    kept = [k for k in range(len(ct)) if k not in (3, 4, 9)]
    np.testing.assert_array_equal(image.array[kept], ct[kept])
    (info,), _ = scan_sources(tmp_path / "ct")
    assert "3 slices missing at z=7.5, 10, 22.5 mm (slice indices 3, 4, 9 of 12)" in info.notes[0]


def test_uneven_spacing_that_is_no_whole_gap_is_still_refused(tmp_path, volume):
    positions = [(0, 0, 2.5 * k + (1.2 if k >= 6 else 0.0)) for k in range(len(volume))]
    write_dicom_series(tmp_path / "uneven", volume, positions=positions)
    with pytest.raises(ImageReadError, match="uneven slice spacing") as info:
        read_image(tmp_path / "uneven")
    assert "12.5 and 16.2 mm" in str(info.value) and "no missing slice can be filled in" in str(info.value)
    paths = write_dicom_series(tmp_path / "sparse", volume)
    for k in range(3, 8):  # 5 of 12 slices would be blank: not a series with a slice lost
        paths[k].unlink()
    with pytest.raises(ImageReadError, match="too many to fill"):
        read_image(tmp_path / "sparse")


def test_a_truncated_slice_no_longer_blocks_the_series(tmp_path, volume, capsys):
    paths = write_dicom_series(tmp_path / "ct", volume, series_description="head")
    _truncate(paths[6])
    (tmp_path / "ct" / "readme.txt").write_text("scan notes")
    code = main(["init", str(tmp_path / "p"), "--images", str(tmp_path / "ct"), "--task", "segmentation",
                 "--labels", "bone,brain"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert ("12 image files found, 11 used (1 image or series): 12 samples added, 0 labels imported; 1 missing "
            "slice shown blank and left out of the queue; 1 file skipped; 1 non-image file ignored (readme.txt)") in out.out
    assert f"skipped {paths[6]}: file is truncated" in out.err
    warning = next(line for line in out.err.splitlines() if line.startswith("warning:"))
    assert ("series 1 'head' (11 files): 1 slice missing at z=15 mm (slice index 6 of 12), shown blank; the file "
            f"that was there is unreadable: {paths[6].name} (file is truncated") in warning
    assert "Doe" not in out.out + out.err and "PAT-0001" not in out.out + out.err

    from medlabeler.engine.store import Project

    with Project.open(tmp_path / "p", readonly=True) as project:
        by_index = {s.slice_index: s for s in project.samples()}
        assert project.blank_ids() == {by_index[6].id}  # never queued
        for k in (5, 6, 7):  # a slice sample's index is its position: the app reads the same volume
            expected = volume[k] if k != 6 else np.full_like(volume[k], volume.min())
            np.testing.assert_array_equal(project.load_pixels(by_index[k]), expected)
        sample = by_index[0]
    again = read_image(sample.path, sample.series_uid)
    assert again.array.shape == volume.shape and np.all(again.array[6] == volume.min())


def test_two_series_of_one_folder_one_with_a_gap(tmp_path, volume):
    folder = tmp_path / "flat"
    paths = write_dicom_series(folder, volume, series_uid="1.2.3.8.1", prefix="a")
    write_dicom_series(folder, volume[:6] + 1, series_uid="1.2.3.8.2", prefix="b", series_number=2)
    paths[2].unlink()
    project, report = create_project(tmp_path / "p", folder, task="segmentation", names=["brain"])
    with project:
        assert report.added == 18 and report.missing == 1 and len(report.warnings) >= 1
        gap = [s for s in project.samples() if s.series_uid == "1.2.3.8.1"]
        assert project.blank_ids() == {s.id for s in gap if s.slice_index == 2}
    np.testing.assert_array_equal(read_image(folder, series_uid="1.2.3.8.1").array[3], volume[3])
    images, errors = read_dicom_paths([folder])  # the napari reader
    assert errors == [] and sorted(i.array.shape[0] for i in images) == [6, 12]


def test_copies_of_instances_are_read_once(tmp_path, volume, capsys):
    folder = tmp_path / "ct"
    paths = write_dicom_series(folder, volume, series_description="head")
    (folder / "copies").mkdir()
    for k in range(3):
        shutil.copy(paths[k], folder / "copies" / paths[k].name)
    for k in (3, 4):
        shutil.copy(paths[k], folder / f"copy_of_{paths[k].name}")
    image = read_image(folder)
    np.testing.assert_array_equal(image.array, volume)
    assert image.metadata["duplicate_files"] == 5
    code = main(["init", str(tmp_path / "p"), "--images", str(folder), "--task", "segmentation", "--labels", "brain"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert ("17 image files found, 12 used (1 image or series): 12 samples added, 0 labels imported; "
            "5 duplicate files of instances already read, ignored") in out.out
    warning = next(line for line in out.err.splitlines() if line.startswith("warning:"))
    assert "series 1 'head' (12 files): 5 duplicate files of instances already read" in warning
    assert f"copy_of_{paths[3].name} repeats {paths[3].name}" in warning  # a path below the series folder
    assert "skipped" not in out.err


def test_a_cut_short_copy_is_reported_and_the_whole_one_read(tmp_path, volume):
    """Only plain copies (same instance, encoding and size) count as duplicates: a copy cut short
    is reported by name, and the whole file of its instance fills the slice."""
    folder = tmp_path / "ct"
    paths = write_dicom_series(folder, volume, shuffle=False)
    (folder / "z").mkdir()
    shutil.copy(paths[4], folder / "z" / "copy.dcm")
    _truncate(paths[4])
    image = read_image(folder)
    np.testing.assert_array_equal(image.array, volume)
    assert "blank_slices" not in image.metadata
    infos, errors = scan_sources(folder)
    assert len(infos) == 1 and infos[0].blank_slices == () and infos[0].duplicates == 0
    assert [e.path for e in errors] == [str(paths[4])] and "truncated" in str(errors[0])


def test_same_position_with_different_instances_is_still_refused(tmp_path, volume):
    positions = [(0, 0, 2.5 * k) for k in range(len(volume))]
    positions[4] = positions[3]
    paths = write_dicom_series(tmp_path / "dup", volume, positions=positions)
    with pytest.raises(ImageReadError, match="duplicate slice positions") as info:
        read_image(tmp_path / "dup")
    assert paths[3].name in str(info.value) and paths[4].name in str(info.value)  # the files named


def test_an_import_that_finds_nothing_names_every_problem(tmp_path, volume):
    folder = tmp_path / "bad"
    uneven = [(0, 0, z) for z in (0.0, 2.0, 4.0, 9.0, 11.0)]
    for number in range(12):
        write_dicom_series(folder / f"s{number:02d}", volume[:5], positions=uneven, series_number=number + 1,
                           series_description="T1", seed=number)
    (folder / "readme.txt").write_text("twelve series")
    with pytest.raises(InputError) as info:
        create_project(tmp_path / "p", folder, task="segmentation", names=["brain"])
    message = str(info.value)
    assert message.startswith(f"{folder}: no readable images found (12 series refused (60 files)):")
    lines = message.splitlines()[1:]
    assert len([line for line in lines if "uneven slice spacing" in line]) == 10
    assert "series 1 'T1' (5 files)" in message and "series 10 'T1' (5 files)" in message
    assert "  - and 2 more" in lines and "  (1 non-image file ignored)" in lines
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "a.txt").write_text("a")
    with pytest.raises(InputError, match=r"no readable images found \(1 non-image file ignored\)"):
        create_project(tmp_path / "p2", only_text, task="segmentation", names=["brain"])


def test_a_seg_of_a_series_with_a_gap_references_the_right_images(tmp_path, volume):
    """Slice samples after a gap keep their own images: a DICOM-SEG references them and reads back
    onto them; the blank slice takes no label, so no frame lacks its image."""
    pytest.importorskip("highdicom")
    from medlabeler.engine.project.dicom_seg import export_segs
    from medlabeler.engine.project.project_import import import_labels

    paths = write_dicom_series(tmp_path / "mr", volume, modality="MR", rescale=(1.0, 0.0))
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    paths[5].unlink()
    mask = (volume > 400).astype(np.uint8)
    project, _ = create_project(tmp_path / "p", tmp_path / "mr", task="segmentation", names=["brain"])
    with project:
        by_index = {s.slice_index: s for s in project.samples()}
        for k in (3, 7):
            project.save_label(by_index[k].id, mask[k])
        (seg_path,) = export_segs(project, tmp_path / "out")
        with pytest.raises(InputError, match="missing from its DICOM series"):  # no label for the SEG to lack
            project.save_label(by_index[5].id, np.zeros_like(mask[5]))
    seg = pydicom.dcmread(seg_path)
    refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence}
    assert refs == {uids[3], uids[7]}
    other, _ = create_project(tmp_path / "p2", tmp_path / "mr", task="segmentation", names=["brain"])
    with other:
        assert import_labels(other, seg_path).labeled == 2
        by_index = {s.slice_index: s for s in other.samples()}
        for k in (3, 7):
            np.testing.assert_array_equal(other.load_label(by_index[k].id), mask[k])


def test_a_seg_references_the_right_images_when_an_end_slice_is_unreadable(tmp_path, volume):
    """The first slice's file is cut short: the volume starts one slice later, and the SEG's frames
    must reference the images of the volume read, not be shifted by one (they were planned from
    every file)."""
    pytest.importorskip("highdicom")
    from medlabeler.engine.project.dicom_seg import export_segs

    paths = write_dicom_series(tmp_path / "mr", volume, modality="MR", rescale=(1.0, 0.0), shuffle=False)
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    _truncate(paths[0])
    project, _ = create_project(tmp_path / "p", tmp_path / "mr", task="segmentation", names=["brain"])
    with project:
        assert len(project.samples()) == len(volume) - 1
        by_index = {s.slice_index: s for s in project.samples()}
        mask = (volume[4] > 400).astype(np.uint8)
        project.save_label(by_index[3].id, mask)  # volume index 3 is file 4
        np.testing.assert_array_equal(project.load_pixels(by_index[3].id), volume[4])
        (seg_path,) = export_segs(project, tmp_path / "out")
    seg = pydicom.dcmread(seg_path)
    refs = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence]
    assert refs == [uids[4]]


def test_slices_that_share_one_instance_uid_are_not_copies(tmp_path, volume):
    """Some anonymisers give every slice of a series one SOPInstanceUID; uncompressed slices also
    share their size. Only files with the same bytes are copies: every slice is read."""
    folder = tmp_path / "anon"
    paths = write_dicom_series(folder, volume)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
        ds.save_as(path, enforce_file_format=True)
    image = read_image(folder)
    np.testing.assert_array_equal(image.array, volume)
    assert "duplicate_files" not in image.metadata and "blank_slices" not in image.metadata


def test_a_series_whose_spacing_doubles_is_refused_not_filled(tmp_path, volume):
    """2.5 mm then 5 mm between slices, numbered on without a break: no file is missing, so the wider
    part is not padded with blank slices between every real one; the reason is said."""
    z = [2.5 * k for k in range(9)] + [20.0 + 5.0 * k for k in range(1, 4)]
    write_dicom_series(tmp_path / "two", volume, positions=[(0.0, 0.0, v) for v in z])
    with pytest.raises(ImageReadError, match="InstanceNumbers run on across the wider gaps"):
        read_image(tmp_path / "two")


def test_a_missing_slice_cannot_be_labeled(tmp_path, volume):
    """The blank stand-in of a missing slice is no image: a label there (even all background, which
    an export would then claim for the real anatomy) is refused, naming the sample."""
    paths = write_dicom_series(tmp_path / "ct", volume, shuffle=False)
    paths[6].unlink()
    project, _ = create_project(tmp_path / "p", tmp_path / "ct", task="segmentation", names=["brain"])
    with project:
        by_index = {s.slice_index: s for s in project.samples()}
        assert project.missing_slice_ids() == {by_index[6].id}
        with pytest.raises(InputError, match=f"sample {by_index[6].id}: is a slice missing from its DICOM series"):
            project.save_label(by_index[6].id, np.zeros(volume.shape[1:], np.uint8))
        project.save_label(by_index[5].id, np.zeros(volume.shape[1:], np.uint8))  # its neighbours can be
        assert project.labeled_ids() == {by_index[5].id}


def test_a_file_damaged_or_deleted_after_the_import_leaves_its_slice_missing(tmp_path, volume):
    """A file cut short or deleted after `init` read as a blank (black) slice without a word, and
    `s` saved it as an all-background training label: once its series is read, such a slice is
    missing, as one found at import (refused, never queued)."""
    from medlabeler.engine.store import Project

    paths = write_dicom_series(tmp_path / "ct", volume, shuffle=False)
    project, _ = create_project(tmp_path / "p", tmp_path / "ct", task="segmentation", names=["brain"])
    by_index = {s.slice_index: s.id for s in project.samples()}
    project.close()
    _truncate(paths[4])
    paths[7].unlink()
    with Project.open(tmp_path / "p") as project:
        assert project.missing_slice_ids() == frozenset()  # nothing read yet: nothing known
        project.load_pixels(project.sample(by_index[2]))  # any slice reads the whole series
        lost = {by_index[4], by_index[7]}
        assert project.missing_slice_ids() == lost and lost <= project.blank_ids()
        with pytest.raises(InputError, match="is a slice missing from its DICOM series"):
            project.save_label(by_index[4], np.zeros(volume.shape[1:], np.uint8))
        project.save_label(by_index[3], np.zeros(volume.shape[1:], np.uint8))
    with Project.open(tmp_path / "p") as project:  # known per session: a file put back is read again
        assert project.missing_slice_ids() == frozenset()


def test_a_whole_volume_with_a_missing_slice_still_gets_a_seg(tmp_path, volume):
    """`export --format dicom-seg` of a whole volume whose series misses a slice was refused ("a
    slice missing from the series has no DICOM image to reference"): its SEG leaves that slice out."""
    pytest.importorskip("highdicom")
    from medlabeler.engine.project.dicom_seg import export_segs

    paths = write_dicom_series(tmp_path / "mr", volume, modality="MR", rescale=(1.0, 0.0))
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    paths[5].unlink()
    project, _ = create_project(tmp_path / "p", tmp_path / "mr", task="segmentation", names=["brain"],
                                unit="image")
    with project:
        (scan,) = project.samples()
        project.save_label(scan.id, (volume > 400).astype(np.uint8))
        (seg_path,) = export_segs(project, tmp_path / "out")
    seg = pydicom.dcmread(seg_path)
    refs = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence]
    assert sorted(set(refs)) == sorted(uid for k, uid in enumerate(uids) if k != 5)


def test_a_labeled_slice_whose_file_went_stops_training_and_is_never_measured_blank(tmp_path, volume):
    """Its slice reads blank: a model would learn a black image labeled as the old mask, or be
    promoted on it (the validation Dice of an empty image). Training stops naming it; predictions
    pass over it."""
    from medlabeler.engine.store import Project
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.predict import predict_samples
    from medlabeler.engine.workflows.train import train_project

    tiny = {"cap_threads": False, "image_size": 16, "features": [4, 8], "batch_size": 2, "steps": 1}
    paths = write_dicom_series(tmp_path / "ct", volume, shuffle=False)
    project, _ = create_project(tmp_path / "p", tmp_path / "ct", task="segmentation", names=["brain"])
    by_index = {s.slice_index: s.id for s in project.samples()}
    for index in (3, 5, 8):
        project.save_label(by_index[index], (volume[index] > 300).astype(np.uint8))
    project.close()
    paths[5].unlink()
    with Project.open(tmp_path / "p") as project:
        with pytest.raises(InputError, match=rf"slice 5, sample {by_index[5]}: is a slice missing .*"
                                             rf"remove-label PROJECT {by_index[5]}"):
            run_to_end(train_project(project, method="supervised", config=tiny))
        project.remove_label(by_index[5])
        run_to_end(train_project(project, method="supervised", config=tiny))
        passed_over = []
        got = [sid for sid, _ in predict_samples(project, [by_index[4], by_index[5]], unreadable=passed_over)]
        assert got == [by_index[4]] and "is a slice missing" in str(passed_over[0])


def test_a_seg_export_says_which_labeled_slices_it_left_out(tmp_path, volume, caplog):
    pytest.importorskip("highdicom")
    from medlabeler.engine.project.dicom_seg import export_segs
    from medlabeler.engine.store import Project

    paths = write_dicom_series(tmp_path / "mr", volume, modality="MR", rescale=(1.0, 0.0), shuffle=False)
    project, _ = create_project(tmp_path / "p", tmp_path / "mr", task="segmentation", names=["brain"])
    by_index = {s.slice_index: s.id for s in project.samples()}
    for index in (2, 6):
        project.save_label(by_index[index], (volume[index] > 400).astype(np.uint8))
    project.close()
    paths[6].unlink()
    with Project.open(tmp_path / "p") as project, caplog.at_level("WARNING"):
        (seg_path,) = export_segs(project, tmp_path / "out")
    assert len(pydicom.dcmread(seg_path).PerFrameFunctionalGroupsSequence) == 1
    assert f"{seg_path.name}: labeled slice 6 left out: no readable file holds it now" in caplog.text


def test_a_multi_frame_file_damaged_after_the_import_leaves_the_queue_with_all_its_slices(tmp_path):
    """Each of its slices failed on its own ("Cannot open sample 3", then 4 ...) and stayed queued."""
    from pydicom.data import get_testdata_file

    from medlabeler.engine.store import Project

    shutil.copy(get_testdata_file("emri_small.dcm"), tmp_path / "mr.dcm")
    project, _ = create_project(tmp_path / "p", tmp_path / "mr.dcm", task="segmentation", names=["brain"])
    ids = {s.id for s in project.samples()}
    project.close()
    data = (tmp_path / "mr.dcm").read_bytes()
    (tmp_path / "mr.dcm").write_bytes(data[: len(data) // 2])
    with Project.open(tmp_path / "p") as project:
        before = project.ranking_revision
        with pytest.raises(InputError, match="mr.dcm"):
            project.load_pixels(min(ids))
        assert ids <= project.blank_ids() and project.ranking_revision > before


def test_when_most_gaps_hold_a_missing_slice_the_refusal_names_the_real_spacing(tmp_path, volume):
    """Slices at 0, 2.5, 7.5, 12.5 mm of a 2.5 mm series: the median gap is no slice distance; the
    refusal said 'not a whole number of slices ... (median 3.75 mm)', where 2 of 6 are missing."""
    paths = write_dicom_series(tmp_path / "ct", volume[:6], positions=[(0.0, 0.0, 2.5 * k) for k in range(6)],
                               shuffle=False)
    for k in (2, 4):
        paths[k].unlink()
    with pytest.raises(ImageReadError, match="2 of 6 slices are missing at a regular distance of 2.5 mm, too many"):
        read_image(tmp_path / "ct")


def test_an_instance_also_stored_in_another_encoding_is_read_once(tmp_path, volume):
    """An uncompressed slice and its RLE copy (the same SOPInstanceUID at the same place): the
    series was refused for 'duplicate slice positions' while a byte-identical copy was read once."""
    from pydicom.uid import RLELossless

    paths = write_dicom_series(tmp_path / "ct", volume)
    ds = pydicom.dcmread(paths[3])
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(tmp_path / "ct" / "zz_rle_copy.dcm")
    image = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(image.array, volume)
    assert image.metadata["duplicate_files"] == 1
    (info,), errors = scan_sources(tmp_path / "ct")
    assert not errors and info.duplicates == 1 and "zz_rle_copy.dcm repeats" in info.notes[0]


def test_a_labeled_test_slice_whose_file_went_leaves_scoring_whole(tmp_path, volume):
    """Scoring embeds the labeled samples as k-center's centres: one that no longer reads failed
    every pass (no embeddings written, the loop saying "scoring failed" each round)."""
    from medlabeler.engine.store import Project
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.active_loop import score_project
    from medlabeler.engine.workflows.train import train_project

    tiny = {"cap_threads": False, "image_size": 16, "features": [4, 8], "batch_size": 2, "steps": 1}
    paths = write_dicom_series(tmp_path / "ct", volume, shuffle=False)
    project, _ = create_project(tmp_path / "p", tmp_path / "ct", task="segmentation", names=["brain"], unit="slice")
    samples = project.samples()
    test = next(s for s in samples if s.split == "test")
    for sample in [test] + [s for s in samples if s.split == "train"][:2]:
        project.save_label(sample.id, (volume[sample.slice_index] > 300).astype(np.uint8))
    project.close()
    paths[test.slice_index].unlink()
    with Project.open(tmp_path / "p") as project:
        run_to_end(train_project(project, method="supervised", config=tiny))
        result = run_to_end(score_project(project))
        ids, _ = project.embeddings()
        assert result["scored"] > 0 and test.id not in set(ids.tolist()) and len(ids) > result["scored"]


def test_echoes_at_one_place_that_share_an_instance_uid_are_not_taken_for_encodings(tmp_path, volume):
    """An anonymiser's one UID for every file, two echoes per position: still refused for duplicate
    positions (before the encoding rule they were; dropping one echo silently would lose data)."""
    paths = write_dicom_series(tmp_path / "mr", volume[:4], shuffle=False)
    for number, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
        ds.save_as(path, enforce_file_format=True)
        ds.InstanceNumber, ds.EchoTime = 100 + number, 90.0
        ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(tmp_path / "mr" / f"echo2_{number}.dcm", enforce_file_format=True)
    with pytest.raises(ImageReadError, match="duplicate slice positions"):
        read_image(tmp_path / "mr")


def test_an_x_ray_series_stacked_by_an_older_import_still_reads_as_it_was_made(tmp_path):
    from medlabeler.engine.io.dicom import read_dicom_folder

    from .test_project_import import _xray_study

    _xray_study(tmp_path / "study", "P1")
    uid = str(pydicom.dcmread(next((tmp_path / "study").glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)
    image = read_dicom_folder(tmp_path / "study", uid)  # the (folder, series) sample of a project made before
    assert image.array.shape == (2, 128, 128)
