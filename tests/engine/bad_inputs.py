"""A corpus of broken inputs, generated into a folder (never downloaded).

Built from pydicom's bundled test files (CT_small.dcm, MR_small.dcm, compressed variants),
nibabel, Pillow and numpy. Three families:

- ``IMAGE_CASES``: files or DICOM series folders that ``read_image`` / ``scan_sources`` /
  ``create_project`` must refuse with an InputError naming the file and the problem;
- ``MASK_CASES``: mask files that ``import_labels`` must refuse (segmentation project of
  ``write_mask_project_sources``);
- ``CSV_CASES``: CSV files that ``import_labels`` must refuse, row by row or as a whole
  (classification project of ``write_csv_project_sources``).

Each case's ``build(folder)`` writes the bad input under ``folder`` and returns its path; the
file or folder name is the case name, so that a message naming it can be checked.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tests.engine.io_fixtures import write_dicom_series, write_nifti, write_png

GOOD_VOLUME_SHAPE = (6, 16, 16)
GOOD_IMAGE_SHAPE = (32, 32)
MASK_LABELS = ["lesion", "organ"]  # segmentation: mask values 0..2
CSV_CLASSES = ["benign", "malignant"]


@dataclass(frozen=True)
class Case:
    """One broken input.

    keywords: at least one (lower-case) must appear in the error message, with the file name.
    deep: the damage lies after an intact header in compressed data, so a header-only scan cannot
        see it; reading the pixels must.
    fatal: (CSV) the whole file is refused rather than row by row.
    setup: changes the environment for the case (hides a decoder, lowers Pillow's size limit);
        called with pytest's monkeypatch.
    """

    name: str
    build: Callable[[Path], Path]
    keywords: tuple[str, ...]
    deep: bool = False
    fatal: bool = False
    setup: Callable | None = None

    def __str__(self) -> str:
        return self.name


# ----------------------------------------------------------------------------- sources


def testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise RuntimeError(f"pydicom test file {name} is missing")
    return Path(path)


def fresh_dicom(name: str = "CT_small.dcm"):
    """A pydicom test dataset with new UIDs, so that copies never form one series by accident."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(testdata(name))
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def dicom_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def good_ct_bytes() -> bytes:
    return dicom_bytes(fresh_dicom("CT_small.dcm"))


def nifti_bytes(volume: np.ndarray, *, compressed: bool, dtype=None) -> bytes:
    """A NIfTI-1 file of volume (Z, Y, X) as bytes (.nii or .nii.gz)."""
    import nibabel

    data = np.asarray(volume).transpose(tuple(reversed(range(np.ndim(volume)))))
    if dtype is not None:
        data = data.astype(dtype)
    raw = nibabel.Nifti1Image(data, np.eye(4)).to_bytes()
    return gzip.compress(raw, mtime=0) if compressed else raw


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height grey pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def grey_pixels(shape=GOOD_IMAGE_SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def volume_pixels(shape=GOOD_VOLUME_SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, size=shape).astype(np.float32)


def write_good_sources(folder: Path) -> dict[str, Path]:
    """One good file of each kind: a CT slice (DICOM), a NIfTI volume, a grey and an RGB PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "dicom": folder / "good_ct.dcm",
        "nifti": folder / "good_volume.nii.gz",
        "png": folder / "good_grey.png",
        "rgb": folder / "good_rgb.png",
    }
    made["dicom"].write_bytes(good_ct_bytes())
    made["nifti"].write_bytes(nifti_bytes(volume_pixels(), compressed=True))
    made["png"].write_bytes(png_bytes(grey_pixels()))
    made["rgb"].write_bytes(png_bytes(np.stack([grey_pixels(seed=s) for s in (1, 2, 3)], axis=-1)))
    return made


# ----------------------------------------------------------------------------- builders


def _file(suffix: str, make: Callable[[], bytes]) -> Callable[[str], Callable[[Path], Path]]:
    """A builder writing make() to folder/<case name><suffix>."""

    def named(name: str) -> Callable[[Path], Path]:
        def build(folder: Path) -> Path:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}{suffix}"
            path.write_bytes(make())
            return path

        return build

    return named


def _dicom_edit(edit: Callable, source: str = "CT_small.dcm") -> Callable[[], bytes]:
    def make() -> bytes:
        ds = fresh_dicom(source)
        edit(ds)
        return dicom_bytes(ds)

    return make


def _delete_pixel_data(ds) -> None:
    del ds.PixelData


def _set(**values) -> Callable:
    def edit(ds) -> None:
        for key, value in values.items():
            setattr(ds, key, value)

    return edit


def _set_meta(**values) -> Callable:
    def edit(ds) -> None:
        for key, value in values.items():
            setattr(ds.file_meta, key, value)

    return edit


def dicom_damaged_vr() -> bytes:
    """(Found by fuzzing) one bit flipped in the VR of Modality: 'CS' -> 'BS', a VR that does not exist."""
    data = dicom_bytes(fresh_dicom("CT_small.dcm"))
    return data.replace(b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00BS", 1)


def dicom_odd_length_rows() -> bytes:
    """(Found by fuzzing) Rows (US, 2 bytes per value) stored with a 3-byte value."""
    data = dicom_bytes(fresh_dicom("MR_small.dcm"))
    at = data.index(b"\x28\x00\x10\x00US\x02\x00")
    return data[:at] + b"\x28\x00\x10\x00US\x03\x00" + data[at + 8:at + 10] + b"\x00" + data[at + 10:]


def _video_syntax(ds) -> None:
    """Encapsulated pixel data in MPEG-2, a syntax pydicom has no image decoder for."""
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\0\0\1\xb3" + b"\0" * 60])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"


def _make_report(ds) -> None:
    """A Basic Text SR: a valid DICOM file that holds no image."""
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID


def _ct_cut(keep: int | None = None, drop: int | None = None) -> Callable[[], bytes]:
    def make() -> bytes:
        data = good_ct_bytes()
        return data[:keep] if keep is not None else data[:-drop]

    return make


def _random_bytes(n: int, seed: int = 7) -> Callable[[], bytes]:
    return lambda: np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _text(text: str) -> Callable[[], bytes]:
    return lambda: text.encode()


def _empty() -> bytes:
    return b""


def hide_decoder(monkeypatch, uid: str) -> None:
    """Make pydicom believe that no decoding plugin for `uid` has its package installed."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(uid)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0",)})


def _hidden(uid: str) -> Callable:
    return lambda monkeypatch: hide_decoder(monkeypatch, uid)


def _copy_testdata(name: str) -> Callable[[], bytes]:
    return lambda: testdata(name).read_bytes()


def _series(name: str, edit: Callable[[dict], None]) -> Callable[[Path], Path]:
    """A DICOM series folder written by write_dicom_series with arguments changed by edit."""

    def build(folder: Path) -> Path:
        where = folder / name
        kwargs: dict = {"volume": volume_pixels((5, 12, 12)), "spacing": (2.0, 1.0, 1.0),
                        "series_description": "bad series"}
        edit(kwargs)
        volume = kwargs.pop("volume")
        write_dicom_series(where, volume, **kwargs)
        return where

    return build


def _mixed_orientation(kwargs: dict) -> None:
    axial, coronal = (1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1)
    kwargs["orientations"] = [axial, axial, coronal, axial, axial]


def _uneven(kwargs: dict) -> None:
    kwargs["positions"] = [(0, 0, z) for z in (0.0, 2.0, 4.0, 9.0, 11.0)]


def _duplicates(kwargs: dict) -> None:
    kwargs["positions"] = [(0, 0, z) for z in (0.0, 2.0, 2.0, 4.0, 6.0)]


def _no_positions(kwargs: dict) -> None:
    kwargs["positions"] = [None] * 5
    kwargs["instance_numbers"] = False


def _series_rows_differ(folder: Path) -> Path:
    where = folder / "series_rows_cols_differ"
    write_dicom_series(where, volume_pixels((4, 12, 12)), spacing=(2.0, 1.0, 1.0), series_uid=_uid("rows"),
                       prefix="a")
    write_dicom_series(where, volume_pixels((1, 10, 12)), spacing=(2.0, 1.0, 1.0), series_uid=_uid("rows"),
                       origin=(0, 0, 8.0), prefix="b")
    return where


def _series_spacing_differs(folder: Path) -> Path:
    where = folder / "series_pixel_spacing_differs"
    write_dicom_series(where, volume_pixels((4, 12, 12)), spacing=(2.0, 1.0, 1.0), series_uid=_uid("sp"),
                       prefix="a")
    write_dicom_series(where, volume_pixels((1, 12, 12)), spacing=(2.0, 0.5, 0.5), series_uid=_uid("sp"),
                       origin=(0, 0, 8.0), prefix="b")
    return where


def _series_repeated_instance(folder: Path) -> Path:
    where = folder / "series_no_position_repeated_instance"
    paths = write_dicom_series(where, volume_pixels((3, 12, 12)), spacing=(2.0, 1.0, 1.0),
                               positions=[None] * 3)
    import pydicom

    for path in paths:  # every slice claims to be instance 1
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = 1
        ds.save_as(path)
    return where


_UIDS: dict[str, str] = {}


def _uid(key: str) -> str:
    from pydicom.uid import generate_uid

    return _UIDS.setdefault(key, generate_uid())


def _nifti(volume_maker: Callable[[], np.ndarray], *, compressed: bool = True, dtype=None) -> Callable[[], bytes]:
    return lambda: nifti_bytes(volume_maker(), compressed=compressed, dtype=dtype)


def _with_nan() -> np.ndarray:
    v = volume_pixels()
    v[2, 3, 4] = np.nan
    return v


def _with_inf() -> np.ndarray:
    v = volume_pixels()
    v[1, 1, 1] = np.inf
    v[3, 2, 1] = -np.inf
    return v


def _four_d() -> np.ndarray:
    return np.stack([volume_pixels(seed=s) for s in range(3)])  # (T, Z, Y, X) -> nibabel (X, Y, Z, T)


def _nifti_cut(keep_fraction: float, compressed: bool) -> Callable[[], bytes]:
    def make() -> bytes:
        if compressed:
            # a larger volume, so that the cut lies well inside the compressed voxel data
            data = nifti_bytes(volume_pixels((8, 32, 32)), compressed=True)
        else:
            data = nifti_bytes(volume_pixels(), compressed=False)
        return data[: int(len(data) * keep_fraction)]

    return make


def _nifti_header_edit(edit: Callable) -> Callable[[], bytes]:
    """Uncompressed NIfTI whose 348-byte header is changed by edit(bytearray)."""

    def make() -> bytes:
        data = bytearray(nifti_bytes(volume_pixels(), compressed=False))
        edit(data)
        return bytes(data)

    return make


def _dims(*dims: int) -> Callable:
    def edit(data: bytearray) -> None:
        struct.pack_into("<8h", data, 40, len(dims), *dims, *([1] * (7 - len(dims))))

    return edit


def _datatype(code: int) -> Callable:
    def edit(data: bytearray) -> None:
        struct.pack_into("<h", data, 70, code)

    return edit


def _rgb_nifti() -> bytes:
    import nibabel

    rgb = np.zeros((4, 4, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return nibabel.Nifti1Image(rgb, np.eye(4)).to_bytes()


def _png_cut() -> bytes:
    data = png_bytes(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8))
    return data[: len(data) // 2]


def _lower_pixel_limit(monkeypatch) -> None:
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 48 * 48)


def _big_png() -> bytes:
    return png_bytes(grey_pixels((64, 64)))


def _tiff_text() -> bytes:
    return b"II*\0" + b"this is not really a TIFF" * 3


def tiff_stack_bytes(photometric: str = "rgb") -> bytes:
    """(3, 8, 8) uint16 written by tifffile: planar RGB ("rgb") or a 3-page grey stack ("minisblack")."""
    import tifffile

    buffer = io.BytesIO()
    planar = {"planarconfig": "separate"} if photometric == "rgb" else {}
    tifffile.imwrite(buffer, volume_pixels((3, 8, 8)).astype(np.uint16), photometric=photometric, **planar)
    return buffer.getvalue()


def tiff_without_pixels() -> bytes:
    """(Found by fuzzing) a zero byte inserted into the first IFD entry of a planar RGB TIFF: it reads
    as an image of shape (0, 2048)."""
    data = tiff_stack_bytes()
    return data[:15] + b"\0" + data[15:]


def tiff_pixels_unlike_header() -> bytes:
    """(Found by fuzzing) one bit of the third IFD entry flipped: decoded pixels no longer fit the axes."""
    data = bytearray(tiff_stack_bytes())
    data[42] ^= 1
    return bytes(data)


def _case(name: str, suffix: str, make: Callable[[], bytes], keywords: tuple[str, ...], **kw) -> Case:
    return Case(name, _file(suffix, make)(name), keywords, **kw)


NOT_DICOM = ("not a dicom",)
NOT_IMAGE = ("not a readable image",)
DAMAGED = ("truncat", "damaged", "less than expected", "could not be decoded")
NOT_NIFTI = ("not a readable nifti",)

IMAGE_CASES: list[Case] = [
    # --- DICOM files
    _case("dicom_zero_bytes", ".dcm", _empty, NOT_DICOM + ("empty",)),
    _case("dicom_cut_in_preamble", ".dcm", _ct_cut(keep=100), NOT_DICOM),
    _case("dicom_cut_after_marker", ".dcm", _ct_cut(keep=132), NOT_DICOM + ("no image",)),
    _case("dicom_cut_in_header", ".dcm", _ct_cut(keep=1000), ("truncat", "no image", "damaged")),
    _case("dicom_cut_in_pixels", ".dcm", _ct_cut(drop=1000), DAMAGED),
    _case("dicom_cut_near_end", ".dcm", _ct_cut(drop=150), DAMAGED),  # CT_small has 138 bytes after its pixels
    _case("dicom_no_pixel_data", ".dcm", _dicom_edit(_delete_pixel_data), ("no pixel data", "truncat")),
    _case("dicom_rows_larger_than_data", ".dcm", _dicom_edit(_set(Rows=256)), DAMAGED),
    _case("dicom_more_frames_than_data", ".dcm", _dicom_edit(_set(NumberOfFrames=10)), DAMAGED),
    _case("dicom_colour_claim_on_grey_data", ".dcm",
          _dicom_edit(_set(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0)), DAMAGED),
    _case("dicom_rows_zero", ".dcm", _dicom_edit(_set(Rows=0)), ("no image",)),
    # header facts a scan does not check (it could): found when the pixels are read
    _case("dicom_bad_bits_allocated", ".dcm", _dicom_edit(_set(BitsAllocated=12)), ("could not be decoded", "bits"),
          deep=True),
    _case("dicom_palette_without_lut", ".dcm", _dicom_edit(_set(PhotometricInterpretation="PALETTE COLOR")),
          ("palette", "could not be decoded", "damaged"), deep=True),
    _case("dicom_report_not_image", ".dcm", _dicom_edit(_make_report), ("no image",)),
    _case("dicom_unknown_transfer_syntax", ".dcm",
          _dicom_edit(_set_meta(TransferSyntaxUID="1.2.826.0.1.3680043.2.1143.999")), ("transfer syntax",)),
    _case("dicom_video_transfer_syntax", ".dcm",
          _dicom_edit(_video_syntax), ("transfer syntax", "decode")),
    _case("dicom_jpeg2000_no_decoder", ".dcm", _copy_testdata("MR_small_jp2klossless.dcm"), ("decoder",),
          setup=_hidden("1.2.840.10008.1.2.4.90")),
    _case("dicom_jpegls_no_decoder", ".dcm", _copy_testdata("MR_small_jpeg_ls_lossless.dcm"), ("decoder",),
          setup=_hidden("1.2.840.10008.1.2.4.80")),
    _case("dicom_jpeg_lossless_no_decoder", ".dcm", _copy_testdata("SC_rgb_jpeg_gdcm.dcm"), ("decoder",),
          setup=_hidden("1.2.840.10008.1.2.4.70")),
    _case("dicom_rle_no_decoder", ".dcm", _copy_testdata("MR_small_RLE.dcm"), ("decoder",),
          setup=_hidden("1.2.840.10008.1.2.5")),
    _case("dicom_damaged_vr", ".dcm", dicom_damaged_vr, ("could not be read", "value representation", "damaged")),
    _case("dicom_odd_length_rows", ".dcm", dicom_odd_length_rows, ("could not be read", "length", "damaged")),
    _case("dicom_holding_text", ".dcm", _text("Patient notes, not an image\n" * 20), NOT_DICOM),
    _case("dicom_holding_png", ".dcm", lambda: png_bytes(grey_pixels()), NOT_DICOM),
    _case("dicom_random_bytes", ".dcm", _random_bytes(4096), NOT_DICOM),
    _case("dicom_mr_cut_in_pixels", ".dcm", lambda: dicom_bytes(fresh_dicom("MR_small.dcm"))[:-500], DAMAGED),
    # --- DICOM series folders
    Case("series_mixed_orientation", _series("series_mixed_orientation", _mixed_orientation), ("orientation",)),
    Case("series_uneven_spacing", _series("series_uneven_spacing", _uneven), ("uneven",)),
    Case("series_duplicate_positions", _series("series_duplicate_positions", _duplicates), ("duplicate",)),
    Case("series_rows_cols_differ", _series_rows_differ, ("differ in size",)),
    Case("series_pixel_spacing_differs", _series_spacing_differs, ("pixel spacing",)),
    Case("series_no_position_repeated_instance", _series_repeated_instance, ("instancenumber",)),
    Case("series_no_position_no_instance", _series("series_no_position_no_instance", _no_positions),
         ("instancenumber",)),
    # a series with one truncated slice is read with that slice blank, and the import says so
    # (tests/engine/test_dicom_gaps.py): no longer an input refused whole
    # --- NIfTI
    _case("nifti_nan", ".nii.gz", _nifti(_with_nan), ("nan",), deep=True),
    _case("nifti_inf", ".nii", _nifti(_with_inf, compressed=False), ("infinite",), deep=True),
    _case("nifti_4d", ".nii.gz", _nifti(_four_d), ("4d",)),
    _case("nifti_gz_cut_in_voxels", ".nii.gz", _nifti_cut(0.6, compressed=True), DAMAGED + ("compressed",), deep=True),
    _case("nifti_gz_cut_in_header", ".nii.gz", _nifti_cut(0.02, compressed=True), NOT_NIFTI),
    _case("nifti_cut_in_voxels", ".nii", _nifti_cut(0.7, compressed=False), DAMAGED),
    _case("nifti_cut_in_header", ".nii", _nifti_cut(0.03, compressed=False), NOT_NIFTI),
    _case("nifti_zero_bytes", ".nii", _empty, ("empty",)),
    _case("nifti_gz_zero_bytes", ".nii.gz", _empty, ("empty",)),
    _case("nifti_holding_text", ".nii", _text("not a volume\n" * 40), NOT_NIFTI),
    _case("nifti_gz_not_gzip", ".nii.gz", _text("not a volume\n" * 40), NOT_NIFTI),
    _case("nifti_rgb_voxels", ".nii", _rgb_nifti, ("rgb",)),
    _case("nifti_1d", ".nii", _nifti_header_edit(_dims(16 * 16 * 6)), ("shape",)),
    _case("nifti_zero_dim", ".nii", _nifti_header_edit(_dims(16, 0, 6)), ("shape",)),
    _case("nifti_negative_dim", ".nii", _nifti_header_edit(_dims(16, -16, 6)), ("shape", "not a readable nifti")),
    _case("nifti_unknown_datatype", ".nii", _nifti_header_edit(_datatype(1234)), NOT_NIFTI + ("data type",)),
    _case("nifti_header_claims_more_voxels", ".nii", _nifti_header_edit(_dims(16, 16, 600)), DAMAGED),
    # --- PNG / JPEG / TIFF / BMP
    _case("png_decompression_bomb", ".png", lambda: png_with_size(100_000, 100_000), ("decompression bomb",)),
    _case("png_over_pixel_limit", ".png", _big_png, ("too large",), setup=_lower_pixel_limit),
    _case("png_zero_bytes", ".png", _empty, ("the file is empty (0 bytes)",)),
    _case("png_holding_text", ".png", _text("<html>not an image</html>\n" * 10), NOT_IMAGE),
    _case("png_holding_dicom", ".png", lambda: testdata("CT_small.dcm").read_bytes(), NOT_IMAGE),
    _case("png_cut_in_pixels", ".png", _png_cut, DAMAGED, deep=True),
    _case("png_random_bytes", ".png", _random_bytes(2048), NOT_IMAGE),
    _case("jpg_zero_bytes", ".jpg", _empty, ("the file is empty (0 bytes)",)),
    _case("jpg_holding_text", ".jpg", _text("not a photo\n" * 10), NOT_IMAGE),
    _case("tif_holding_text", ".tif", _tiff_text, ("not a readable tiff",)),
    _case("tif_zero_bytes", ".tif", _empty, ("not a readable tiff",)),
    _case("tif_without_pixels", ".tif", tiff_without_pixels, ("no pixels", "shape", "empty")),
    _case("tif_pixels_unlike_header", ".tif", tiff_pixels_unlike_header, ("tiff", "match", "shape"), deep=True),
    _case("bmp_zero_bytes", ".bmp", _empty, ("the file is empty (0 bytes)",)),
]


# ----------------------------------------------------------------------------- masks


def write_mask_project_sources(folder: Path) -> dict[str, Path]:
    """Sources of the segmentation project the mask cases target: a 2D PNG and a NIfTI volume."""
    folder.mkdir(parents=True, exist_ok=True)
    image = write_png(folder / "scan_a.png", grey_pixels())
    volume = write_nifti(folder / "scan_b.nii.gz", volume_pixels())
    return {"image": image, "volume": volume}


def good_image_mask() -> np.ndarray:
    mask = np.zeros(GOOD_IMAGE_SHAPE, dtype=np.uint8)
    mask[4:12, 5:15] = 1
    mask[20:28, 20:30] = 2
    return mask


def good_volume_mask() -> np.ndarray:
    mask = np.zeros(GOOD_VOLUME_SHAPE, dtype=np.uint8)
    mask[1:4, 3:9, 4:10] = 1
    mask[4, 10:14, 10:14] = 2
    return mask


def write_good_masks(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "image": write_png(folder / "scan_a.png", good_image_mask()),
        "volume": write_nifti(folder / "scan_b.nii.gz", good_volume_mask(), dtype=np.uint8),
    }


def _mask(target: str, suffix: str, make: Callable[[], bytes]) -> Callable[[str], Callable[[Path], Path]]:
    """Builder writing folder/<case name>/<target><suffix>: masks match images by file name, so each
    case lives in its own sub-folder whose name is the case name."""

    def named(name: str) -> Callable[[Path], Path]:
        def build(folder: Path) -> Path:
            where = folder / name
            where.mkdir(parents=True, exist_ok=True)
            path = where / f"{target}{suffix}"
            path.write_bytes(make())
            return path

        return build

    return named


def _npy(array_maker: Callable[[], np.ndarray], allow_pickle: bool = False) -> Callable[[], bytes]:
    def make() -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array_maker(), allow_pickle=allow_pickle)
        return buffer.getvalue()

    return make


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, mask=good_image_mask())
    return buffer.getvalue()


class _WritesMarker:
    """Unpickling this calls Path.write_text: code run from a data file."""

    marker: Path

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


MARKER_NAME = "PICKLE_CODE_RAN"


def _pickled_npy() -> bytes:
    array = np.empty(1, dtype=object)
    array[0] = _WritesMarker(Path.cwd() / MARKER_NAME)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _raw_pickle() -> bytes:
    return pickle.dumps(_WritesMarker(Path.cwd() / MARKER_NAME))


def _with_value(maker: Callable[[], np.ndarray], value) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        mask = maker().astype(np.float32)
        mask.flat[7] = value
        return mask

    return make


def _rgb_mask() -> np.ndarray:
    return np.stack([good_image_mask() * 100] * 3, axis=-1).astype(np.uint8)


def _mask_case(name: str, target: str, suffix: str, make: Callable[[], bytes], keywords: tuple[str, ...]) -> Case:
    return Case(name, _mask(target, suffix, make)(name), keywords)


SHAPE = ("shape",)

MASK_CASES: list[Case] = [
    _mask_case("mask_wrong_shape_2d", "scan_a", ".png", lambda: png_bytes(good_image_mask()[:16]), SHAPE),
    _mask_case("mask_transposed_2d", "scan_a", ".npy", _npy(lambda: good_image_mask()[:, :20].T), SHAPE),
    _mask_case("mask_2d_for_volume", "scan_b", ".png", lambda: png_bytes(good_volume_mask()[0]), SHAPE),
    _mask_case("mask_volume_too_few_slices", "scan_b", ".npy", _npy(lambda: good_volume_mask()[:3]), SHAPE),
    _mask_case("mask_volume_too_many_slices", "scan_b", ".npy",
               _npy(lambda: np.concatenate([good_volume_mask()] * 2)), SHAPE),
    _mask_case("mask_volume_for_2d_image", "scan_a", ".nii.gz",
               lambda: nifti_bytes(np.zeros((3, 32, 32), np.uint8), compressed=True), SHAPE),
    _mask_case("mask_value_beyond_labels", "scan_a", ".png",
               lambda: png_bytes(np.where(good_image_mask() == 2, 7, good_image_mask()).astype(np.uint8)),
               ("value 7", "labels")),
    _mask_case("mask_value_beyond_labels_volume", "scan_b", ".nii.gz",
               lambda: nifti_bytes(good_volume_mask() * 3, compressed=True, dtype=np.uint8), ("value 6", "labels")),
    _mask_case("mask_rgb", "scan_a", ".png", lambda: png_bytes(_rgb_mask()), ("rgb",)),
    _mask_case("mask_negative", "scan_a", ".npy", _npy(lambda: good_image_mask().astype(np.int16) - 1),
               ("non-negative",)),
    _mask_case("mask_fractional", "scan_a", ".npy", _npy(_with_value(good_image_mask, 0.5)), ("integer",)),
    _mask_case("mask_nan", "scan_b", ".nii.gz",
               lambda: nifti_bytes(_with_value(good_volume_mask, np.nan)(), compressed=True), ("nan",)),
    _mask_case("mask_for_unknown_image", "scan_zz", ".png", lambda: png_bytes(good_image_mask()), ("no image",)),
    _mask_case("mask_png_zero_bytes", "scan_a", ".png", _empty, ("the file is empty (0 bytes)",)),
    _mask_case("mask_npy_zero_bytes", "scan_a", ".npy", _empty, ("cannot read mask",)),
    _mask_case("mask_npy_truncated", "scan_a", ".npy", lambda: _npy(good_image_mask)()[:100], ("cannot read mask",)),
    _mask_case("mask_npy_holding_npz", "scan_a", ".npy", _npz, ("cannot read mask", "not a .npy")),
    _mask_case("mask_npy_pickled_objects", "scan_a", ".npy", _pickled_npy, ("cannot read mask", "pickle")),
    _mask_case("mask_npy_raw_pickle", "scan_a", ".npy", _raw_pickle, ("cannot read mask", "pickle")),
    _mask_case("mask_npy_strings", "scan_a", ".npy", _npy(lambda: np.full(GOOD_IMAGE_SHAPE, "a")), ("integer",)),
    _mask_case("mask_npy_complex", "scan_a", ".npy",
               _npy(lambda: good_image_mask().astype(np.complex64)), ("integer",)),
    _mask_case("mask_nifti_holding_text", "scan_b", ".nii", _text("not a mask\n" * 40), NOT_NIFTI),
    _mask_case("mask_nifti_4d", "scan_b", ".nii.gz",
               lambda: nifti_bytes(np.stack([good_volume_mask()] * 2), compressed=True, dtype=np.uint8), ("4d",)),
]


# ----------------------------------------------------------------------------- CSV


def write_csv_project_sources(folder: Path) -> list[Path]:
    """Four grey PNGs img_01..img_04 for a classification project with CSV_CLASSES."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_png(folder / f"img_{i:02d}.png", grey_pixels(seed=i)) for i in range(1, 5)]


def _csv(text: str | bytes) -> Callable[[], bytes]:
    return lambda: text if isinstance(text, bytes) else text.encode()


def _csv_case(name: str, make: Callable[[], bytes], keywords: tuple[str, ...], fatal: bool = False) -> Case:
    return Case(name, _file(".csv", make)(name), keywords, fatal=fatal)


CSV_CASES: list[Case] = [
    _csv_case("csv_unknown_class", _csv("image,label\nimg_01.png,benign\nimg_02.png,unsure\n"),
              ("unknown class", "line 3")),
    _csv_case("csv_unknown_image", _csv("image,label\nimg_01.png,benign\nimg_99.png,malignant\n"),
              ("no sample", "line 3")),
    _csv_case("csv_one_column", _csv("image\nimg_01.png\nimg_02.png\n"), ("two columns",)),
    _csv_case("csv_non_utf8", _csv("image,label\nimg_01.png,b\xe9nin\n".encode("latin-1")),
              ("utf-8", "cannot read csv"), fatal=True),
    _csv_case("csv_zero_bytes", _empty, ("empty", "no rows"), fatal=True),
    _csv_case("csv_header_only", _csv("image,label\n"), ("empty", "no rows"), fatal=True),
    _csv_case("csv_holding_png", lambda: png_bytes(grey_pixels()), ("cannot read csv", "utf-8"), fatal=True),
    _csv_case("csv_field_too_large", _csv("image,label\n" + "x" * 200_000 + ",benign\n"),
              ("cannot read csv", "field"), fatal=True),
    _csv_case("csv_nul_in_name", _csv("image,label\nimg_01.png,benign\nimg\x0002.png,malignant\n"),
              ("no sample", "line 3")),
    # (a class in another case, "Malignant", is the class: a spreadsheet's; test_export_and_remove_label)
]


ALL_CASES = IMAGE_CASES + MASK_CASES + CSV_CASES


def setup_all(cases: list[Case], monkeypatch) -> None:
    for case in cases:
        if case.setup is not None:
            case.setup(monkeypatch)
