"""NIfTI reading: (i, j, k) -> (Z, Y, X) = (k, j, i), spacing and affine in the same order."""

from __future__ import annotations

import gzip

import nibabel
import numpy as np
import pytest

from medlabeler.engine.errors import ImageReadError
from medlabeler.engine.io import read_image, scan_sources
from tests.engine.io_fixtures import mni_file, write_nifti


def rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_round_trip_with_a_known_affine(tmp_path):
    data = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # nibabel (i, j, k)
    affine = np.eye(4)
    affine[:3, :3] = rotation_z(20) @ np.diag([0.5, 0.7, 2.0])
    affine[:3, 3] = [-30.0, 12.0, 7.5]
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    image = read_image(tmp_path / "v.nii.gz")
    assert image.array.shape == (7, 6, 5) and image.array.dtype == np.float32
    for i, j, k in [(0, 0, 0), (4, 1, 6), (2, 5, 3)]:
        assert image.array[k, j, i] == data[i, j, k]
        world_ras = affine @ [i, j, k, 1]
        lps = world_ras * [-1, -1, 1, 1]  # same point in the DICOM patient system
        np.testing.assert_allclose(image.affine @ [k, j, i, 1], lps, atol=1e-9)
    assert image.spacing == pytest.approx((2.0, 0.7, 0.5))
    assert image.metadata["space"] == "LPS" and image.identifiers == {}


def test_fixture_writer_gives_the_volume_back_and_scan_agrees(tmp_path):
    volume = np.random.default_rng(0).normal(size=(4, 9, 6)).astype(np.float32)
    write_nifti(tmp_path / "a.nii", volume, spacing=(3.0, 1.5, 0.75))
    image = read_image(tmp_path / "a.nii")
    np.testing.assert_array_equal(image.array, volume)
    assert image.spacing == (3.0, 1.5, 0.75)
    infos, errors = scan_sources(tmp_path)
    assert errors == [] and len(infos) == 1
    info = infos[0]
    assert (info.shape, info.spacing, info.is_volume, info.series_uid) == ((4, 9, 6), (3.0, 1.5, 0.75), True, None)


def test_real_mni_template():
    image = read_image(mni_file())
    assert image.array.shape == (189, 233, 197)
    assert image.spacing == (1.0, 1.0, 1.0)
    assert 0 <= image.array.min() and image.array.max() == 255
    np.testing.assert_allclose(image.affine[:3, 3], [98.0, 134.0, -72.0])  # RAS (-98, -134, -72)


def test_the_mni_brain_is_shown_radiologically_anterior_up_right_on_the_left():
    """RAS: anterior and the patient's right at high indices; napari draws rows down and columns
    right, so the camera turns both (the brain was upside down and mirrored before)."""
    from medlabeler.engine.io.image import display_orientation

    image = read_image(mni_file())
    assert display_orientation(image.affine) == ("up", "left")
    anterior = image.affine @ [0, 200, 0, 1] - image.affine @ [0, 0, 0, 1]
    assert anterior[1] < 0  # LPS: a higher row index is further anterior (smaller y)


@pytest.mark.parametrize("plane, ras_axes, expected", [
    ("axial as a scanner stores it", np.diag([-1.0, -1.0, 1.0]), ("down", "right")),  # i: left, j: posterior
    ("axial in RAS", np.eye(3), ("up", "left")),
    ("axial, only mirrored", np.diag([-1.0, 1.0, 1.0]), ("up", "right")),
    # k along y: coronal slices; j along z (superior at high j) must be drawn upwards
    ("coronal in RAS order", np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]), ("up", "left")),
    # k along x: sagittal; i along y (anterior at high i) drawn leftwards, j along z upwards
    ("sagittal", np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]), ("up", "left")),
    ("turned 60 degrees in-plane: rows run mostly left-right", rotation_z(60), ("down", "right")),
    ("turned 30 degrees in-plane", rotation_z(30), ("up", "left")),
])
def test_display_orientation_of_each_plane(tmp_path, plane, ras_axes, expected):
    from medlabeler.engine.io.image import display_orientation

    affine = np.eye(4)
    affine[:3, :3] = ras_axes
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine), tmp_path / "v.nii.gz")
    assert display_orientation(read_image(tmp_path / "v.nii.gz").affine) == expected, plane


def test_display_orientation_without_a_usable_affine():
    from medlabeler.engine.io.image import display_orientation

    assert display_orientation(None) == display_orientation(np.zeros((4, 4))) == ("down", "right")


def test_scaling_and_calibration_window(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    img = nibabel.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    img.header["cal_min"], img.header["cal_max"] = 10.0, 20.0
    nibabel.save(img, tmp_path / "s.nii")
    image = read_image(tmp_path / "s.nii")
    np.testing.assert_allclose(image.array, data.transpose(2, 1, 0) * 0.5 + 10.0)
    assert image.window == (15.0, 10.0)


def test_4d_is_refused_naming_the_shape_and_singleton_time_is_dropped(tmp_path):
    nibabel.save(nibabel.Nifti1Image(np.zeros((5, 6, 7, 3), np.float32), np.eye(4)), tmp_path / "t.nii.gz")
    with pytest.raises(ImageReadError, match=r"4D image of shape \(5, 6, 7, 3\)") as info:
        read_image(tmp_path / "t.nii.gz")
    assert "t.nii.gz" in str(info.value)
    infos, errors = scan_sources(tmp_path / "t.nii.gz")
    assert infos == [] and "(5, 6, 7, 3)" in str(errors[0])
    nibabel.save(nibabel.Nifti1Image(np.ones((5, 6, 7, 1), np.float32), np.eye(4)), tmp_path / "one.nii.gz")
    assert read_image(tmp_path / "one.nii.gz").array.shape == (7, 6, 5)


def test_2d_nifti(tmp_path):
    data = np.arange(30, dtype=np.float32).reshape(5, 6)
    nibabel.save(nibabel.Nifti1Image(data, np.diag([0.4, 0.6, 1, 1])), tmp_path / "flat.nii")
    image = read_image(tmp_path / "flat.nii")
    np.testing.assert_array_equal(image.array, data.T)
    assert image.spacing == pytest.approx((0.6, 0.4)) and not image.is_volume


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_refused(tmp_path, bad):
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = bad
    data[0, 0, 0] = bad
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / "bad.nii.gz")
    with pytest.raises(ImageReadError, match="holds 2 NaN or infinite voxel values") as info:
        read_image(tmp_path / "bad.nii.gz")
    assert "bad.nii.gz" in str(info.value)


def test_scan_and_read_both_report_a_truncated_nifti(tmp_path):
    write_nifti(tmp_path / "cut.nii", np.ones((20, 20, 20), np.float32))
    raw = (tmp_path / "cut.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 3])  # header intact, voxels cut short
    infos, errors = scan_sources(tmp_path)
    # The scan compares the header's data size with the file size: no pixels are read.
    assert not infos and len(errors) == 1 and "cut.nii" in str(errors[0]) and "truncated" in str(errors[0])
    with pytest.raises(ImageReadError, match="truncated or damaged") as info:
        read_image(tmp_path / "cut.nii")
    assert "cut.nii" in str(info.value)


def test_garbage_with_a_nifti_name_is_refused(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 40))
    (tmp_path / "junk2.nii").write_bytes(b"\x00\x01" * 10)
    for name in ("junk.nii.gz", "junk2.nii"):
        with pytest.raises(ImageReadError, match="not a readable NIfTI") as info:
            read_image(tmp_path / name)
        assert name in str(info.value)
    infos, errors = scan_sources(tmp_path)
    assert infos == [] and len(errors) == 2


@pytest.mark.parametrize("plane, ras_axes, expected", [
    ("axial as a scanner stores it", np.diag([-1.0, -1.0, 1.0]), ("A", "P", "R", "L")),
    ("axial in RAS", np.eye(3), ("A", "P", "R", "L")),
    ("axial, only mirrored", np.diag([-1.0, 1.0, 1.0]), ("A", "P", "R", "L")),
    ("coronal in RAS order", np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]), ("S", "I", "R", "L")),
    ("sagittal", np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]), ("S", "I", "A", "P")),
    ("turned 30 degrees in-plane", rotation_z(30), ("A", "P", "R", "L")),
])
def test_the_screen_edges_are_marked_with_the_patient_directions_shown_there(tmp_path, plane, ras_axes, expected):
    """Radiological reading: an axial slice has anterior at the top and the patient's right on the
    screen's left, whatever order the file stores it in, since the camera turns it."""
    from medlabeler.engine.io.image import screen_markers

    affine = np.eye(4)
    affine[:3, :3] = ras_axes
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine), tmp_path / "v.nii.gz")
    assert screen_markers(read_image(tmp_path / "v.nii.gz").affine) == expected, plane


def test_no_markers_without_a_usable_affine():
    from medlabeler.engine.io.image import screen_markers

    assert screen_markers(None) is None and screen_markers(np.zeros((4, 4))) is None
