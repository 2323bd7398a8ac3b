"""scan_sources: header-only indexing of files and folder trees."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medlabeler.engine.errors import InputError
from medlabeler.engine.io import SourceInfo, read_image, scan_sources
from tests.engine.io_fixtures import make_isic_folder, mni_volume, write_dicom_series, write_nifti, write_png


def test_isic_style_folder_gives_label_hints_and_ignores_other_files(tmp_path):
    made = make_isic_folder(tmp_path, {"benign": 4, "malignant": 3})
    (tmp_path / "README.txt").write_text("class folders")
    (tmp_path / "labels.csv").write_text("file,label\n")
    (tmp_path / "benign" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "malignant" / "broken.png").write_text("not a png")
    write_png(tmp_path / "loose.png", np.zeros((5, 5), np.uint8))  # directly in the root: no class
    infos, errors = scan_sources(tmp_path)
    assert len(errors) == 1 and "broken.png" in str(errors[0]) and isinstance(errors[0], InputError)
    hints = {i.path: i.label_hint for i in infos}
    assert hints == {**{str(p): c for p, c in made.items()}, str(tmp_path / "loose.png"): None}
    assert all(i.shape == (24, 32, 3) and i.modality == "RGB" and not i.is_volume
               for i in infos if i.label_hint)
    assert len({i.group for i in infos}) == len(infos)  # every photo is its own group
    assert infos == sorted(infos, key=lambda i: i.path)


def test_a_mixed_tree_is_indexed_from_headers_only(tmp_path, monkeypatch):
    volume = mni_volume(step=10)[:6] * 4.0
    write_dicom_series(tmp_path / "patient" / "ct", volume, spacing=(2.0, 1.0, 1.0))
    write_nifti(tmp_path / "mri" / "t1.nii.gz", volume, spacing=(1.0, 1.0, 1.0))
    write_png(tmp_path / "photos" / "x.png", np.zeros((8, 9, 3), np.uint8))
    shutil.copy(get_testdata_file("emri_small_jpeg_2k_lossless.dcm"), tmp_path / "emri.dcm")

    import nibabel
    import PIL.Image
    import pydicom

    def forbidden(*args, **kwargs):
        raise AssertionError("scan_sources decoded pixel data")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(forbidden))
    monkeypatch.setattr(nibabel.arrayproxy.ArrayProxy, "__array__", forbidden)
    monkeypatch.setattr(PIL.Image.Image, "load", forbidden)
    infos, errors = scan_sources(tmp_path)
    assert errors == []
    summary = {i.path.replace(str(tmp_path), ""): (i.shape, i.is_volume, i.modality) for i in infos}
    assert summary == {
        "/patient/ct": (volume.shape, True, "CT"),
        "/mri/t1.nii.gz": (volume.shape, True, "OT"),
        "/photos/x.png": ((8, 9, 3), False, "RGB"),
        "/emri.dcm": ((10, 64, 64), True, "MR"),
    }
    labelled = {i.path: i.label_hint for i in infos}
    assert labelled[str(tmp_path / "patient" / "ct")] is None  # DICOM folders never give hints
    assert labelled[str(tmp_path / "photos" / "x.png")] == "photos"


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small.dcm", "emri_small_RLE.dcm", "eCT_Supplemental.dcm", "US1_UNCR.dcm",
     "OBXXXX1A.dcm", "examples_ybr_color.dcm", "SC_rgb_2frame.dcm", "JPEG-LL.dcm",
     "MR2_J2KI.dcm", "RG3_UNCR.dcm"],
)
def test_scan_predicts_what_read_image_returns(name):
    infos, errors = scan_sources(get_testdata_file(name))
    assert errors == [] and len(infos) == 1
    info = infos[0]
    image = read_image(info.path, info.series_uid)
    assert image.array.shape == info.shape
    assert image.spacing == info.spacing
    assert image.is_volume == info.is_volume
    assert image.modality == info.modality


def test_single_file_group_hashes_the_patient_id():
    infos, _ = scan_sources(get_testdata_file("CT_small.dcm"))
    patient = read_image(get_testdata_file("CT_small.dcm")).identifiers["PatientID"]
    assert infos[0].group == hashlib.sha1(patient.encode()).hexdigest()[:16]
    assert patient not in infos[0].group


def test_missing_path_and_unknown_single_file(tmp_path):
    infos, errors = scan_sources(tmp_path / "nope")
    assert infos == [] and len(errors) == 1 and "does not exist" in str(errors[0])
    (tmp_path / "data.bin").write_bytes(b"\1\2\3" * 100)
    infos, errors = scan_sources(tmp_path / "data.bin")
    assert infos == [] and len(errors) == 1 and "data.bin" in str(errors[0])
    # not only "not a DICOM file", the last reader it was tried with (a new user's notes.txt)
    assert errors[0].problem.startswith("not an image medlabeler reads (PNG, JPEG, TIFF, BMP, NIfTI, DICOM)")
    infos, errors = scan_sources(tmp_path)  # in a folder walk, unknown files are simply not images
    assert infos == [] and errors == []


def test_source_info_is_an_immutable_record():
    info = SourceInfo(path="a.png", series_uid=None, shape=(4, 5), spacing=(1.0, 1.0), modality="OT",
                      is_volume=False, group="g")
    assert info.label_hint is None and info.description == ""
    with pytest.raises(AttributeError):
        info.path = "b.png"  # type: ignore[misc]


def test_seg_dose_and_dicomdir_files_are_passed_over_saying_what_they_are(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "liver.dcm", "rtdose.dcm", "DICOMDIR-bigEnd", "DICOMDIR-implicit"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    ignored = []
    infos, errors = scan_sources(tmp_path, ignored)
    assert [Path(i.path).name for i in infos] == ["CT_small.dcm"]
    problems = {Path(e.path).name: e.problem for e in errors}
    assert sorted(problems) == ["liver.dcm", "rtdose.dcm"]
    assert problems["liver.dcm"].startswith("is a DICOM-SEG: labels, not an image to label")
    assert "import-labels" in problems["liver.dcm"]
    assert problems["rtdose.dcm"] == "is an RT dose grid, not an image to label"
    assert sorted(p.name for p in ignored) == ["DICOMDIR-bigEnd", "DICOMDIR-implicit"], "not 'truncated'"


@pytest.mark.parametrize("name, cut", [("RG1_J2KR.dcm", 60_000), ("emri_small_jpeg_2k_lossless.dcm", -2000),
                                       ("emri_small_jpeg_2k_lossless_too_short.dcm", None)])
def test_compressed_pixel_data_cut_short_is_reported_at_the_scan_not_when_opened(tmp_path, name, cut):
    data = Path(get_testdata_file(name)).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:cut] if cut else data)
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm")
    infos, errors = scan_sources(tmp_path)
    assert [Path(i.path).name for i in infos] == ["ct.dcm"]
    assert len(errors) == 1 and "cut.dcm: file is truncated: its compressed pixel data ends early" in str(errors[0])


def test_whole_compressed_files_pass_the_check():
    for name in ("RG1_J2KR.dcm", "emri_small_jpeg_2k_lossless.dcm", "emri_small_RLE.dcm", "JPEG-LL.dcm",
                 "SC_rgb_jpeg_dcmtk.dcm", "US1_J2KR.dcm"):
        infos, errors = scan_sources(get_testdata_file(name))
        assert errors == [] and len(infos) == 1, name
