"""Reading single DICOM files and multi-frame files from pydicom's and pydicom-data's test sets."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medlabeler.engine.errors import ImageReadError, MissingDecoderError
from medlabeler.engine.io import read_image, scan_sources


def pydicom_file(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} missing (pip install pydicom-data)"
    return path


def raw_pixels(name: str) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(pydicom_file(name))
    return ds, ds.pixel_array


def test_ct_small_gives_hounsfield_units_spacing_and_affine():
    ds, raw = raw_pixels("CT_small.dcm")
    image = read_image(pydicom_file("CT_small.dcm"))
    assert image.array.shape == (128, 128) and image.array.dtype == np.float32
    expected = raw.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(image.array, expected.astype(np.float32))
    assert float(ds.RescaleIntercept) != 0  # the rescale really was applied
    assert image.spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert image.modality == "CT" and image.window is None and not image.is_volume
    # index (0, y, x) -> ImagePositionPatient + y * column direction * dy + x * row direction * dx
    ipp = np.array(ds.ImagePositionPatient, dtype=float)
    row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    dy, dx = (float(v) for v in ds.PixelSpacing)
    np.testing.assert_allclose(image.affine @ [0, 7, 3, 1], [*(ipp + 7 * dy * col + 3 * dx * row), 1])


def test_mr_small_window_and_spacing():
    image = read_image(pydicom_file("MR_small.dcm"))
    assert image.array.shape == (64, 64)
    assert image.window == (600.0, 1600.0)
    assert image.spacing == (0.3125, 0.3125)


@pytest.mark.parametrize(
    "variant", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm",
                "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm"],
)
def test_mr_small_transfer_syntaxes_decode_to_the_same_pixels(variant):
    reference = read_image(pydicom_file("MR_small.dcm")).array
    np.testing.assert_array_equal(read_image(pydicom_file(variant)).array, reference)


@pytest.mark.parametrize(
    "variant", ["emri_small_jpeg_2k_lossless.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm",
                "emri_small_big_endian.dcm"],
)
def test_enhanced_mr_multiframe_in_every_transfer_syntax(variant):
    reference = read_image(pydicom_file("emri_small.dcm"))
    image = read_image(pydicom_file(variant))
    assert image.array.shape == (10, 64, 64) and image.is_volume
    np.testing.assert_array_equal(image.array, reference.array)
    # no per-frame positions in this file: frame order kept, slice distance from SpacingBetweenSlices
    assert image.spacing == (1.2, 1.0, 1.0) and image.affine is None
    assert image.metadata["slice_order"] == "frame order"


def test_enhanced_ct_frames_ordered_by_position_with_shared_rescale_and_window():
    ds, raw = raw_pixels("eCT_Supplemental.dcm")
    image = read_image(pydicom_file("eCT_Supplemental.dcm"))
    assert image.array.shape == (2, 512, 512)
    # frame 0 lies at z = -159, frame 1 at z = -149; the normal of this orientation is -z,
    # so frame 1 comes first along the normal
    np.testing.assert_array_equal(image.array[0], raw[1].astype(np.float32) - 1024)
    np.testing.assert_array_equal(image.array[1], raw[0].astype(np.float32) - 1024)
    assert image.spacing == (10.0, 0.388672, 0.388672)
    assert image.window == (49.0, 102.0)
    np.testing.assert_allclose(image.affine[:3, 3], [99.5, -301.5, -149.0])
    np.testing.assert_allclose(image.affine @ [1, 0, 0, 1], [99.5, -301.5, -159.0, 1])
    np.testing.assert_allclose(image.affine @ [0, 0, 1, 1], [99.5 - 0.388672, -301.5, -149.0, 1])


def test_identifiers_are_kept_apart_from_metadata():
    image = read_image(pydicom_file("eCT_Supplemental.dcm"))
    ids = image.identifiers
    assert ids["PatientName"] == "Perfusion^MCA Stroke" and ids["PatientID"] == "0010"
    assert ids["AccessionNumber"] == "0010" and ids["InstitutionName"] == "St. Nowhere Hospital"
    assert "StudyInstanceUID" in ids and "SeriesInstanceUID" in ids
    flat = repr(image.metadata) + repr(image)
    for secret in ("Perfusion", "Nowhere", "Thomas", "Smith", "Jones", ids["SeriesInstanceUID"]):
        assert secret not in flat


def test_ultrasound_colour_cine_becomes_grey_volume_with_region_spacing():
    ds, rgb = raw_pixels("examples_ybr_color.dcm")
    image = read_image(pydicom_file("examples_ybr_color.dcm"))
    assert image.array.shape == (30, 240, 320) and image.array.dtype == np.float32
    assert image.metadata["converted_to_grey"] is True
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.mean(np.abs(image.array - luma)) < 2.0  # JPEG decoders differ by a grey level or so
    delta = float(ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX) * 10  # cm -> mm
    assert image.spacing[1:] == pytest.approx((delta, delta))


def test_single_frame_rgb_and_palette_colour():
    ds, rgb = raw_pixels("US1_UNCR.dcm")
    image = read_image(pydicom_file("US1_UNCR.dcm"))
    assert image.is_rgb and image.array.shape == (480, 640, 3)
    np.testing.assert_array_equal(image.array, rgb)

    from pydicom.pixels import apply_color_lut

    ds, indices = raw_pixels("OBXXXX1A.dcm")
    lut = apply_color_lut(indices, ds).astype(np.float64)
    image = read_image(pydicom_file("OBXXXX1A.dcm"))
    assert image.is_rgb and image.array.shape == (600, 800, 3)
    scale = 255.0 / (65535.0 if lut.max() > 255 else 255.0)
    assert np.abs(image.array - lut * scale).max() <= 0.5 + 1e-9


def test_16_and_32_bit_rgb_scale_to_uint8():
    reference = read_image(pydicom_file("SC_rgb.dcm")).array
    for variant in ("SC_rgb_16bit.dcm", "SC_rgb_32bit.dcm"):
        image = read_image(pydicom_file(variant))
        assert image.array.dtype == np.uint8
        np.testing.assert_array_equal(image.array, reference)


def test_monochrome1_is_inverted_with_its_window():
    name = "77654033/CR1/6154"  # 16x16 MONOCHROME1 CR, 12 bits stored
    ds, raw = raw_pixels(name)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    top = (2**ds.BitsStored - 1) * slope + 2 * intercept
    image = read_image(pydicom_file(name))
    np.testing.assert_allclose(image.array, top - (raw * slope + intercept), rtol=1e-6)
    assert image.window == pytest.approx((top - float(ds.WindowCenter), float(ds.WindowWidth)))
    assert image.metadata["inverted_monochrome1"] is True
    assert image.spacing == tuple(float(v) for v in ds.ImagerPixelSpacing)


def test_non_image_truncated_and_non_dicom_files_raise_naming_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="holds no image") as info:
        read_image(pydicom_file("reportsi.dcm"))
    assert "reportsi.dcm" in str(info.value)
    with pytest.raises(ImageReadError, match="MR_truncated.dcm"):
        read_image(pydicom_file("MR_truncated.dcm"))
    fake = tmp_path / "notes.dcm"
    fake.write_text("this is a text file, not DICOM\n" * 10)
    with pytest.raises(ImageReadError, match="notes.dcm"):
        read_image(fake)
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.dcm")
    # scanning reports the truncation from the header and the file size alone
    copy = tmp_path / "trunc" / "MR_truncated.dcm"
    copy.parent.mkdir()
    shutil.copy(pydicom_file("MR_truncated.dcm"), copy)
    infos, errors = scan_sources(copy.parent)
    assert infos == [] and len(errors) == 1 and "truncated" in str(errors[0])


def _hide_decoder(monkeypatch, uid: str, requirement: tuple[str, ...]) -> None:
    """Make pydicom believe that every decoding plugin for `uid` lacks its package."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(uid)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": requirement})


@pytest.mark.parametrize(
    ("name", "uid", "package"),
    [
        ("emri_small_jpeg_2k_lossless.dcm", "1.2.840.10008.1.2.4.90", "pylibjpeg-openjpeg"),
        ("emri_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", "pyjpegls"),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", "1.2.840.10008.1.2.4.70", "pylibjpeg-libjpeg"),
    ],
)
def test_missing_decoder_names_file_syntax_and_package(monkeypatch, tmp_path, name, uid, package):
    _hide_decoder(monkeypatch, uid, ("pylibjpeg>=2.0", f"{package}>=1.0"))
    with pytest.raises(MissingDecoderError) as info:
        read_image(pydicom_file(name))
    message = str(info.value)
    assert name in message and uid in message and f"pip install" in message and package in message
    copy = tmp_path / name
    shutil.copy(pydicom_file(name), copy)
    infos, errors = scan_sources(tmp_path)
    assert infos == [] and len(errors) == 1 and isinstance(errors[0], MissingDecoderError)


def test_missing_decoder_reported_even_if_pydicom_fails_only_while_decoding(monkeypatch):
    import medlabeler.engine.io.dicom.decoders as dicom  # where _decode checks the decoder

    _hide_decoder(monkeypatch, "1.2.840.10008.1.2.4.90", ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0"))
    monkeypatch.setattr(dicom, "check_decoder", lambda path, ds: None)  # skip the early check
    with pytest.raises(MissingDecoderError, match="pylibjpeg-openjpeg"):
        read_image(pydicom_file("emri_small_jpeg_2k_lossless.dcm"))


def test_a_single_dicom_image_is_shown_with_the_window_its_file_asks_for(tmp_path):
    """A single CT slice (L40 W100) looked washed out until `w` was pressed: 2D images had no window."""
    from medlabeler.engine.project.project_import import create_project

    project, _ = create_project(tmp_path / "p", pydicom_file("693_J2KR.dcm"), task="segmentation", names=["liver"])
    with project:
        (sample,) = project.samples()
        assert not sample.is_volume and project.display_window(sample) == (40.0, 100.0)
        assert project.display_orientation(sample) == ("down", "right")  # stored as a scanner stores an axial slice
        assert project.display_markers(sample) == ("A", "P", "R", "L")


def test_a_single_ct_slice_stored_upside_down_is_turned_as_its_volume_would_be(tmp_path):
    """explicit_VR-UN.dcm's rows run towards anterior: shown as stored, the spine was at the top."""
    from medlabeler.engine.project.project_import import create_project

    project, _ = create_project(tmp_path / "p", pydicom_file("explicit_VR-UN.dcm"), task="segmentation",
                                names=["liver"])
    with project:
        (sample,) = project.samples()
        assert project.display_orientation(sample) == ("up", "right")
        assert project.display_markers(sample)[:2] == ("A", "P")
