"""PNG / JPEG / BMP through Pillow and TIFF through tifffile."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import tifffile

from medlabeler.engine.errors import ImageReadError
from medlabeler.engine.io import read_image, scan_sources
from tests.engine.io_fixtures import write_png

RNG = np.random.default_rng(7)


def test_grey_png_keeps_its_values_8_and_16_bit(tmp_path):
    grey8 = RNG.integers(0, 256, size=(20, 30), dtype=np.uint8)
    grey16 = RNG.integers(0, 65536, size=(20, 30), dtype=np.uint16)
    grey16[0, 0] = 60000
    for name, pixels in (("g8.png", grey8), ("g16.png", grey16)):
        write_png(tmp_path / name, pixels)
        image = read_image(tmp_path / name)
        assert image.array.dtype == np.float32 and image.array.shape == (20, 30)
        np.testing.assert_array_equal(image.array, pixels.astype(np.float32))
        assert image.spacing == (1.0, 1.0) and image.modality == "OT" and image.affine is None


def test_rgb_png_jpeg_bmp_and_alpha_dropped(tmp_path):
    rgb = RNG.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, RNG.integers(0, 256, size=(16, 24, 1), dtype=np.uint8)], axis=-1)
    write_png(tmp_path / "c.png", rgb)
    write_png(tmp_path / "a.png", rgba)
    write_png(tmp_path / "c.bmp", rgb)
    smooth = np.repeat(np.linspace(0, 255, 24, dtype=np.uint8)[None, :, None], 16, axis=0).repeat(3, axis=2)
    PIL.Image.fromarray(smooth).save(tmp_path / "c.jpg", quality=95)
    for name, expected in (("c.png", rgb), ("a.png", rgb), ("c.bmp", rgb)):
        image = read_image(tmp_path / name)
        assert image.is_rgb and image.array.shape == (16, 24, 3) and image.modality == "RGB"
        np.testing.assert_array_equal(image.array, expected)
        assert image.spacing == (1.0, 1.0)
    jpeg = read_image(tmp_path / "c.jpg")
    assert jpeg.is_rgb and np.abs(jpeg.array.astype(int) - smooth).max() <= 8


def test_palette_grey_alpha_and_binary_modes(tmp_path):
    indices = RNG.integers(0, 4, size=(10, 12), dtype=np.uint8)
    colour = PIL.Image.fromarray(indices, mode="P")
    colour.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    colour.save(tmp_path / "pal.png")
    image = read_image(tmp_path / "pal.png")
    assert image.is_rgb
    np.testing.assert_array_equal(image.array[indices == 1], np.tile([0, 255, 0], ((indices == 1).sum(), 1)))

    grey_palette = PIL.Image.fromarray(indices, mode="P")
    grey_palette.putpalette([0, 0, 0, 50, 50, 50, 100, 100, 100, 200, 200, 200])
    grey_palette.save(tmp_path / "greypal.png")
    image = read_image(tmp_path / "greypal.png")
    assert image.array.shape == (10, 12)
    np.testing.assert_array_equal(image.array, np.array([0, 50, 100, 200], np.float32)[indices])

    la = np.stack([indices * 60, np.full_like(indices, 128)], axis=-1)
    PIL.Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png").array, indices * 60)

    PIL.Image.fromarray(indices > 1).save(tmp_path / "bin.png")
    np.testing.assert_array_equal(read_image(tmp_path / "bin.png").array, (indices > 1).astype(np.float32))
    infos, errors = scan_sources(tmp_path)
    assert errors == []
    assert {i.path.rsplit("/", 1)[-1]: i.shape for i in infos} == {
        "pal.png": (10, 12, 3), "greypal.png": (10, 12), "la.png": (10, 12), "bin.png": (10, 12)}


def test_tiff_16_bit_multipage_rgb_and_float(tmp_path):
    grey16 = RNG.integers(0, 65536, size=(9, 11), dtype=np.uint16)
    stack = RNG.integers(0, 4096, size=(6, 9, 11), dtype=np.uint16)
    rgb = RNG.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    floats = RNG.normal(size=(9, 11)).astype(np.float32)
    tifffile.imwrite(tmp_path / "g.tif", grey16)
    tifffile.imwrite(tmp_path / "stack.tiff", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "f.tif", floats)
    expected = {"g.tif": grey16, "stack.tiff": stack, "rgb.tif": rgb, "f.tif": floats}
    for name, pixels in expected.items():
        image = read_image(tmp_path / name)
        assert image.array.shape == pixels.shape, name
        np.testing.assert_array_equal(image.array, pixels)
        assert image.array.dtype == (np.uint8 if name == "rgb.tif" else np.float32)
    assert read_image(tmp_path / "stack.tiff").is_volume
    infos, errors = scan_sources(tmp_path)
    assert errors == []
    by_name = {i.path.rsplit("/", 1)[-1]: i for i in infos}
    for name, pixels in expected.items():
        assert by_name[name].shape == pixels.shape
    assert by_name["stack.tiff"].is_volume and by_name["stack.tiff"].spacing == (1.0, 1.0, 1.0)
    assert by_name["rgb.tif"].modality == "RGB" and not by_name["rgb.tif"].is_volume


def test_exif_rotation_is_applied_and_scan_agrees(tmp_path):
    pixels = RNG.integers(0, 256, size=(10, 20, 3), dtype=np.uint8)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    PIL.Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "r.jpg")
    assert image.array.shape == (20, 10, 3)
    infos, _ = scan_sources(tmp_path)
    assert infos[0].shape == (20, 10, 3)


def test_not_an_image_truncated_and_empty_files(tmp_path):
    (tmp_path / "fake.png").write_text("hello, I am text\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    write_png(tmp_path / "full.png", RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "fake.tif").write_bytes(b"II*\x00garbage")
    for name in ("fake.png", "empty.jpg", "cut.png", "fake.tif"):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        assert name in str(info.value)
        if name == "empty.jpg":  # not "the file is no PNG/JPEG/TIFF/BMP" (a new user's 0-byte zero.png)
            assert info.value.problem.startswith("the file is empty (0 bytes)")


@pytest.mark.parametrize("limit", [1000, 3000])  # Pillow raises above 2x the limit, warns above it
def test_decompression_bombs_are_refused(tmp_path, monkeypatch, limit):
    write_png(tmp_path / "big.png", np.zeros((64, 64), np.uint8))  # 4096 pixels
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", limit)
    for name in ("big.png", "big.tif"):
        with pytest.raises(ImageReadError, match="too large to open safely") as info:
            read_image(tmp_path / name)
        assert name in str(info.value)
    infos, errors = scan_sources(tmp_path)
    assert infos == [] and len(errors) == 2


def test_real_histology_photo(tmp_path):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image carries the real photo")
    photo = skimage_data.immunohistochemistry()  # (512, 512, 3) uint8, shipped with the package
    write_png(tmp_path / "ihc.png", photo)
    image = read_image(tmp_path / "ihc.png")
    np.testing.assert_array_equal(image.array, photo)
