"""DICOM folders: series split by SeriesInstanceUID, stacked by position, checked for geometry.

The volumes are slices of the MNI152 brain MRI (nilearn), written slice by slice with pydicom
in shuffled file order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from medlabeler.engine.errors import ImageReadError
from medlabeler.engine.io import read_image, scan_sources
from tests.engine.io_fixtures import mni_volume, write_dicom_series


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """A small real MRI, (Z, Y, X) = (12, 24, 20), values as int-valued 'HU' in 0..1020."""
    return mni_volume(step=10)[:12] * 4.0


def test_shuffled_series_is_stacked_by_position(tmp_path, volume):
    paths = write_dicom_series(tmp_path / "ct", volume, spacing=(2.5, 0.8, 0.7), window=(40, 400))
    by_name = sorted(paths, key=lambda p: p.name)
    assert by_name != paths  # file names say nothing about slice order
    image = read_image(tmp_path / "ct")
    assert image.array.shape == volume.shape and image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, volume)
    assert image.spacing == (2.5, 0.8, 0.7)  # slice distance from positions, not SliceThickness=99
    assert image.window == (40.0, 400.0) and image.modality == "CT"
    np.testing.assert_allclose(image.affine, [[0, 0, 0.7, 0], [0, 0.8, 0, 0], [2.5, 0, 0, 0], [0, 0, 0, 1]])
    assert image.metadata["slice_order"] == "ImagePositionPatient" and image.metadata["files"] == 12
    assert image.identifiers["PatientName"] == "Doe^Jane" and image.identifiers["AccessionNumber"] == "ACC123"
    assert "Doe" not in repr(image.metadata) and "PAT-0001" not in repr(image.metadata)


def test_feet_first_positions_and_oblique_orientation(tmp_path, volume):
    n = len(volume)
    descending = [(10.0, 20.0, -3.0 * k) for k in range(n)]  # slice k lies lower as k grows
    write_dicom_series(tmp_path / "ff", volume, spacing=(3.0, 1.0, 1.0), positions=descending)
    image = read_image(tmp_path / "ff")
    np.testing.assert_array_equal(image.array, volume[::-1])
    assert image.spacing[0] == pytest.approx(3.0)
    for index in (0, 5, n - 1):  # index z maps to the position of the slice stored there
        np.testing.assert_allclose(image.affine @ [index, 0, 0, 1], [*descending[n - 1 - index], 1], atol=1e-6)

    angle = np.deg2rad(30)
    tilted = (1, 0, 0, 0, np.cos(angle), np.sin(angle))
    normal = np.cross([1, 0, 0], [0, np.cos(angle), np.sin(angle)])
    write_dicom_series(tmp_path / "obl", volume, spacing=(2.0, 1.0, 1.0), orientation=tilted, origin=(5, -7, 9))
    image = read_image(tmp_path / "obl")
    np.testing.assert_array_equal(image.array, volume)
    assert image.spacing[0] == pytest.approx(2.0, abs=1e-5)
    np.testing.assert_allclose(image.affine[:3, 0], 2.0 * normal, atol=1e-5)
    np.testing.assert_allclose(image.affine @ [4, 2, 3, 1], [*(np.array([5, -7, 9]) + 8 * normal
                                                              + 2 * np.array([0, np.cos(angle), np.sin(angle)])
                                                              + 3 * np.array([1, 0, 0])), 1], atol=1e-4)


def test_small_position_jitter_is_tolerated(tmp_path, volume):
    jitter = np.random.default_rng(3).uniform(-0.004, 0.004, size=len(volume))
    positions = [(0.0, 0.0, 2.5 * k + jitter[k]) for k in range(len(volume))]
    write_dicom_series(tmp_path / "j", volume, positions=positions)
    assert read_image(tmp_path / "j").spacing[0] == pytest.approx(2.5, abs=0.01)


def test_two_series_in_one_folder_are_split(tmp_path, volume):
    folder = tmp_path / "mixed"
    write_dicom_series(folder, volume, spacing=(2.5, 1, 1), series_uid="1.2.3.4.1", prefix="a",
                       series_description="axial", patient_id="PAT-A")
    write_dicom_series(folder, volume[:7] + 1, spacing=(1.5, 0.5, 0.5), series_uid="1.2.3.4.2", prefix="b",
                       series_description="thin", patient_id="PAT-B", series_number=2)
    with pytest.raises(ImageReadError, match="2 DICOM series") as info:
        read_image(folder)
    assert str(folder) in str(info.value) and "axial" in str(info.value)
    first = read_image(folder, series_uid="1.2.3.4.1")
    second = read_image(folder, series_uid="1.2.3.4.2")
    np.testing.assert_array_equal(first.array, volume)
    np.testing.assert_array_equal(second.array, volume[:7] + 1)
    assert second.spacing == (1.5, 0.5, 0.5)
    with pytest.raises(ImageReadError, match="no DICOM series with the requested"):
        read_image(folder, series_uid="9.9.9")

    infos, errors = scan_sources(folder)
    assert errors == []
    assert [(i.series_uid, i.shape, i.spacing, i.is_volume, i.description) for i in infos] == [
        ("1.2.3.4.1", volume.shape, (2.5, 1.0, 1.0), True, "axial"),
        ("1.2.3.4.2", (7, *volume.shape[1:]), (1.5, 0.5, 0.5), True, "thin"),
    ]
    assert all(i.path == str(folder) for i in infos)
    assert infos[0].group == hashlib.sha1(b"PAT-A").hexdigest()[:16] != infos[1].group
    for info in infos:
        assert read_image(info.path, info.series_uid).array.shape == info.shape


def test_same_patient_gives_same_group_and_no_patient_id_falls_back(tmp_path, volume):
    write_dicom_series(tmp_path / "s1", volume[:4], patient_id="P-77")
    write_dicom_series(tmp_path / "s2", volume[:5], patient_id="P-77")
    write_dicom_series(tmp_path / "s3", volume[:6], patient_id="", series_uid="1.2.3.99")
    infos, errors = scan_sources(tmp_path)
    assert errors == [] and len(infos) == 3
    groups = {i.path.rsplit("/", 1)[-1]: i.group for i in infos}
    assert groups["s1"] == groups["s2"] != groups["s3"]
    assert groups["s3"] == hashlib.sha1(b"1.2.3.99").hexdigest()[:16]
    assert all("P-77" not in i.group for i in infos)


@pytest.mark.parametrize("problem", ["orientation", "duplicate", "uneven", "size"])
def test_broken_series_give_clear_errors(tmp_path, volume, problem):
    folder = tmp_path / f"broken_{problem}"
    n = len(volume)
    if problem == "orientation":
        orientations = [(1, 0, 0, 0, 1, 0)] * (n - 3) + [(0, 1, 0, 0, 0, -1)] * 3
        write_dicom_series(folder, volume, orientations=orientations)
        expected = "mixed orientation"
    elif problem == "duplicate":
        positions = [(0, 0, 2.5 * k) for k in range(n)]
        positions[4] = positions[3]
        write_dicom_series(folder, volume, positions=positions)
        expected = "duplicate slice positions"
    elif problem == "uneven":
        positions = [(0, 0, 2.5 * k + (1.2 if k >= 6 else 0.0)) for k in range(n)]
        write_dicom_series(folder, volume, positions=positions)  # a 3.7 mm gap: no whole number of slices
        expected = r"uneven slice spacing: distances between neighbouring slices of 2\.5, 3\.7 mm"
    else:
        write_dicom_series(folder, volume[:5], series_uid="1.2.3.5")
        write_dicom_series(folder, volume[5:8, :10, :10], series_uid="1.2.3.5", prefix="x",
                           positions=[(0, 0, 2.5 * (5 + k)) for k in range(3)])
        expected = "differ in size"
    with pytest.raises(ImageReadError, match=expected) as info:
        read_image(folder)
    assert str(folder) in str(info.value)
    infos, errors = scan_sources(folder)  # the scan reports it instead of raising
    assert infos == [] and len(errors) == 1 and isinstance(errors[0], ImageReadError)
    assert str(folder) in str(errors[0])


def test_instance_number_orders_slices_without_positions(tmp_path, volume):
    write_dicom_series(tmp_path / "np", volume, positions=[None] * len(volume))
    image = read_image(tmp_path / "np")
    np.testing.assert_array_equal(image.array, volume)
    assert image.metadata["slice_order"] == "InstanceNumber" and image.affine is None
    write_dicom_series(tmp_path / "none", volume[:4], positions=[None] * 4, instance_numbers=False)
    with pytest.raises(ImageReadError, match="neither ImagePositionPatient nor InstanceNumber"):
        read_image(tmp_path / "none")


def test_one_slice_series_reads_as_2d_and_non_images_are_ignored(tmp_path, volume):
    import shutil

    from pydicom.data import get_testdata_file

    write_dicom_series(tmp_path / "one", volume[3:4])
    shutil.copy(get_testdata_file("reportsi.dcm"), tmp_path / "one" / "report.dcm")  # an SR, no image
    (tmp_path / "one" / "DICOMDIR").write_bytes(b"\0" * 200)
    image = read_image(tmp_path / "one")
    assert image.array.shape == volume.shape[1:]
    np.testing.assert_array_equal(image.array, volume[3])
    infos, errors = scan_sources(tmp_path / "one")
    assert errors == [] and len(infos) == 1 and infos[0].shape == volume.shape[1:] and not infos[0].is_volume
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ImageReadError, match="holds no DICOM files"):
        read_image(tmp_path / "empty_dir")


def test_reading_one_series_of_a_big_folder_skips_other_headers_once_known(tmp_path, volume, monkeypatch):
    import medlabeler.engine.io.dicom.series as dicom  # where read_header is called

    folder = tmp_path / "flat"
    for s in range(4):
        write_dicom_series(folder, volume[:5], series_uid=f"1.2.3.7.{s}", prefix=f"s{s}_", seed=s)
    scan_sources(folder)  # the scan learns which file belongs to which series
    parsed = []
    real = dicom.read_header
    monkeypatch.setattr(dicom, "read_header", lambda path: parsed.append(path) or real(path))
    image = read_image(folder, series_uid="1.2.3.7.2")
    np.testing.assert_array_equal(image.array, volume[:5])
    assert len(parsed) == 5 and all(p.name.startswith("s2_") for p in parsed)
