"""The npe2 reader: what it claims, and the layer data it returns (no viewer, no display)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medlabeler.engine.errors import ImageReadError
from medlabeler.napari_reader import get_reader
from tests.engine.io_fixtures import mni_volume, write_dicom_series, write_nifti, write_png


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return mni_volume(step=10)[:8] * 4.0


def test_claims_dicom_and_nifti_only(tmp_path, volume):
    write_dicom_series(tmp_path / "series", volume)
    write_nifti(tmp_path / "v.nii.gz", volume)
    write_png(tmp_path / "p.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "bad.dcm").write_text("not dicom")
    (tmp_path / "bad.nii").write_bytes(b"\0" * 20)
    (tmp_path / "pngs").mkdir()
    shutil.copy(tmp_path / "p.png", tmp_path / "pngs" / "p.png")
    assert callable(get_reader(get_testdata_file("CT_small.dcm")))
    assert callable(get_reader(str(tmp_path / "series")))
    assert callable(get_reader(str(tmp_path / "v.nii.gz")))
    assert callable(get_reader(sorted(str(p) for p in (tmp_path / "series").iterdir())))
    for refused in ("p.png", "bad.dcm", "bad.nii", "missing.dcm", "pngs"):
        assert get_reader(str(tmp_path / refused)) is None, refused
    assert get_reader(get_testdata_file("reportsi.dcm")) is None  # DICOM without an image
    assert get_reader([str(tmp_path / "v.nii.gz"), str(tmp_path / "p.png")]) is None
    assert get_reader([]) is None


def test_folder_with_two_series_gives_one_layer_each(tmp_path, volume):
    folder = tmp_path / "Doe_Jane"  # folder named after the patient: must not become a layer name
    write_dicom_series(folder, volume, spacing=(2.5, 0.9, 0.8), series_uid="1.2.3.1", window=(40, 400),
                       series_description="axial T1", prefix="a")
    write_dicom_series(folder, volume[:5], spacing=(3.0, 1.0, 1.0), series_uid="1.2.3.2", window=None,
                       series_description="", series_number=7, prefix="b")
    layers = get_reader(str(folder))(str(folder))
    assert len(layers) == 2
    by_name = {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}
    assert set(by_name) == {"axial T1", "CT series 7"}
    data, kwargs, kind = by_name["axial T1"]
    assert kind == "image" and data.shape == volume.shape
    assert kwargs["scale"] == (2.5, 0.9, 0.8)
    assert kwargs["contrast_limits"] == [-160.0, 240.0]
    assert "contrast_limits" not in by_name["CT series 7"][1]
    text = repr([{k: v for k, v in kwargs.items()} for _, kwargs, _ in layers])
    for secret in ("Doe^Jane", "PAT-0001", "ACC123", "1.2.3.1"):  # what the files say about the patient
        assert secret not in text
    assert "Doe_Jane" not in text  # nor the folder's name (it was the metadata's "source")


def test_layers_are_accepted_by_napari(tmp_path, volume):
    napari_layers = pytest.importorskip("napari.layers", reason="napari is the app extra")
    write_nifti(tmp_path / "brain.nii.gz", volume, spacing=(2.0, 1.5, 1.0))
    (data, kwargs, kind), = get_reader(str(tmp_path / "brain.nii.gz"))(str(tmp_path / "brain.nii.gz"))
    assert kwargs["name"] == "brain" and kwargs["scale"] == (2.0, 1.5, 1.0)
    layer = napari_layers.Image(data, **kwargs)
    assert tuple(layer.scale) == (2.0, 1.5, 1.0)
    rgb_path = get_testdata_file("US1_UNCR.dcm")
    (data, kwargs, kind), = get_reader(rgb_path)(rgb_path)
    assert kwargs["rgb"] is True and data.shape == (480, 640, 3)
    assert napari_layers.Image(data, **kwargs).rgb
    ct_path = get_testdata_file("MR_small.dcm")
    (data, kwargs, kind), = get_reader(ct_path)(ct_path)
    layer = napari_layers.Image(data, **kwargs)
    assert list(layer.contrast_limits) == [-200.0, 1400.0]


def test_a_broken_series_is_skipped_with_a_warning_and_alone_raises(tmp_path, volume):
    good, bad = tmp_path / "tree" / "good", tmp_path / "tree" / "bad"
    write_dicom_series(good, volume[:4], series_description="good")
    positions = [(0, 0, 2.5 * k) for k in range(4)]
    positions[2] = positions[1]
    write_dicom_series(bad, volume[:4], positions=positions, series_description="bad")
    reader = get_reader(str(tmp_path / "tree"))
    with pytest.warns(UserWarning, match="duplicate slice positions"):
        layers = reader(str(tmp_path / "tree"))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["good"]
    with pytest.raises(ImageReadError, match="duplicate slice positions"):
        get_reader(str(bad))(str(bad))
