"""DICOM pixel data: the decoder a transfer syntax needs, truncated data, and stored values to
grey (modality LUT, rescale, MONOCHROME1) or RGB values, and the display window.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from medlabeler.engine.errors import ImageReadError, MissingDecoderError
from medlabeler.engine.io.dicom.files import _group_item, n_frames, transfer_syntax
from medlabeler.engine.io.image import rgb_to_grey


# pip packages that bring a decoder, per compressed transfer syntax.
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}


_ALL_DECODERS = "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls"


def known_transfer_syntax(path: Path, ds: Dataset) -> UID | None:
    """The transfer syntax, or ImageReadError when its UID is not a transfer syntax pydicom knows."""
    uid = transfer_syntax(ds)
    if uid is not None and not uid.is_transfer_syntax:
        raise ImageReadError(path, f"unknown transfer syntax {uid} (not a DICOM transfer syntax UID)")
    return uid


def check_decoder(path: Path, ds: Dataset) -> None:
    """MissingDecoderError when the pixel data is compressed and no decoder is installed;
    ImageReadError for an unknown transfer syntax."""
    uid = known_transfer_syntax(path, ds)
    if uid is None or not uid.is_compressed:
        return
    from pydicom.pixels import get_decoder

    package = _DECODER_PACKAGES.get(str(uid), _ALL_DECODERS)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise MissingDecoderError(
            path, f"pixel data uses transfer syntax {uid.name} ({uid}), which pydicom cannot decode"
        ) from exc
    if not decoder.is_available:
        raise MissingDecoderError(path, _missing_decoder_text(uid, package))


def _missing_decoder_text(uid: UID, package: str) -> str:
    return (
        f"pixel data is compressed with transfer syntax {uid.name} ({uid}) and no decoder for it "
        f"is installed; install one with: pip install {package} "
        f"(or pip install \"medlabeler[dicom-codecs]\")"
    )


def truncation_problem(path: Path, ds: Dataset) -> str | None:
    """A problem text if the file is shorter than its pixels (uncompressed), or its compressed
    pixel data ends early or holds fewer fragments than frames (header and item headers only)."""
    uid = known_transfer_syntax(path, ds)
    if uid is None or uid.is_deflated:
        return None
    offset = getattr(ds, "_medlabeler_pixel_offset", None)
    if offset is None:
        return None
    if uid.is_compressed:
        return _encapsulated_problem(path, offset, n_frames(ds))
    size = getattr(ds, "_medlabeler_file_size", None)
    if size is not None and offset >= size:  # the header reaches the end: no pixel data element
        return "has no pixel data (the file ends after its header)"
    try:
        from pydicom.pixels.utils import get_expected_length

        expected = get_expected_length(ds, "bytes")
        available = os.path.getsize(path) - offset - 8  # 8: the smallest element header
    except Exception:  # noqa: BLE001 - attributes missing: the pixel read will tell
        return None
    if available < expected:
        return (
            f"file is truncated: its pixel data needs {expected} bytes but at most "
            f"{max(available, 0)} follow the header"
        )
    return None


_ITEM, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)


def _encapsulated_problem(path: Path, offset: int, frames: int) -> str | None:
    """Walk the item headers of compressed (encapsulated) pixel data, seeking over the fragments:
    a file cut short inside them, or with fewer fragments than frames, cannot decode every frame.
    Anything unexpected is left to the decoder (None)."""
    import struct

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            handle.seek(offset)
            head = handle.read(12)  # tag, VR, reserved, length (always explicit VR little endian)
            if len(head) < 12 or struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
                return None
            if struct.unpack("<I", head[8:])[0] != 0xFFFFFFFF:
                return None
            fragments = -1  # the first item is the basic offset table
            while True:
                item = handle.read(8)
                if len(item) < 8:  # no closing delimiter: cut short (pydicom's emri "too short" ends
                    break          # exactly after its tenth fragment and does not decode)
                tag, length = struct.unpack("<HH", item[:4]), struct.unpack("<I", item[4:])[0]
                if tag == _SEQUENCE_END:
                    if fragments < frames:
                        return (f"file is damaged: its compressed pixel data holds {max(fragments, 0)} "
                                f"fragments for {frames} frames")
                    return None
                if tag != _ITEM:
                    return None
                if handle.tell() + length > size:
                    break
                handle.seek(length, 1)
                fragments += 1
    except OSError:
        return None
    return (f"file is truncated: its compressed pixel data ends early (the file ends after {size} bytes, "
            f"{'before its first frame' if fragments < 1 else f'after {fragments} complete fragments'}; "
            f"{frames} frame{'s' * (frames != 1)} expected)")


_LUMA_PHOTOMETRICS = ("YBR_FULL", "YBR_FULL_422")


_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _decode(path: Path, ds: Dataset, *, luma: bool = False) -> np.ndarray:
    """Decoded stored values. luma: for YBR_FULL(_422) colour return the Y channel only (the
    BT.601 grey), skipping the costly conversion to RGB."""
    check_decoder(path, ds)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(path, "holds no pixel data")
    options: dict[str, Any] = {}
    if luma:
        options["as_rgb"] = False
    uid = transfer_syntax(ds)
    if uid is not None and str(uid) == _JPEG_BASELINE:
        from pydicom.pixels import get_decoder

        if "pillow" in get_decoder(uid).available_plugins:  # several times faster for 8-bit JPEG
            options["decoding_plugin"] = "pillow"
    try:
        if options:
            ds.pixel_array_options(**options)
        arr = ds.pixel_array
        return arr[..., 0] if luma else arr
    except RuntimeError as exc:
        uid = transfer_syntax(ds)
        if "missing dependencies" in str(exc) and uid is not None:
            raise MissingDecoderError(
                path, _missing_decoder_text(uid, _DECODER_PACKAGES.get(str(uid), _ALL_DECODERS))
            ) from exc
        raise ImageReadError(path, f"pixel data could not be decoded ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - truncated data, bad attributes ...
        raise ImageReadError(path, f"pixel data could not be decoded ({exc})") from exc


def _rescale(ds: Dataset, frame: int | None) -> tuple[float, float]:
    item = _group_item(ds, frame, "PixelValueTransformationSequence")
    for source in (item, ds):
        if source is None:
            continue
        slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
        if slope is not None or intercept is not None:
            try:
                slope_f = 1.0 if slope in (None, "") else float(slope)
                intercept_f = 0.0 if intercept in (None, "") else float(intercept)
            except (TypeError, ValueError):
                continue
            if slope_f == 0 or not np.isfinite(slope_f) or not np.isfinite(intercept_f):
                continue
            return slope_f, intercept_f
    return 1.0, 0.0


def _stored_range(ds: Dataset) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _is_monochrome1(ds: Dataset) -> bool:
    return str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"


def _inversion_sum(ds: Dataset, frame: int | None) -> float:
    """lo + hi of the physical value range: MONOCHROME1 values v become (lo + hi) - v."""
    lo, hi = _stored_range(ds)
    slope, intercept = _rescale(ds, frame)
    return (lo + hi) * slope + 2 * intercept


def grey_values(path: Path, ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """Physical float32 values: modality LUT or rescale slope/intercept (per frame), then
    MONOCHROME1 inverted so that higher always means brighter."""
    frames = n_frames(ds)
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        try:
            out = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"modality LUT could not be applied ({exc})") from exc
    else:
        out = np.asarray(raw, dtype=np.float32)
        if frames > 1 and out.ndim == 3:
            for i in range(frames):
                slope, intercept = _rescale(ds, i)
                if (slope, intercept) != (1.0, 0.0):
                    out[i] = out[i] * np.float32(slope) + np.float32(intercept)
        else:
            slope, intercept = _rescale(ds, 0)
            if (slope, intercept) != (1.0, 0.0):
                out = out * np.float32(slope) + np.float32(intercept)
    if _is_monochrome1(ds):
        if frames > 1 and out.ndim == 3:
            for i in range(frames):
                out[i] = np.float32(_inversion_sum(ds, i)) - out[i]
        else:
            out = np.float32(_inversion_sum(ds, 0)) - out
    return np.ascontiguousarray(out, dtype=np.float32)


def rgb_values(path: Path, ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3): palettes applied, YBR already converted by pydicom, alpha dropped."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    arr = raw
    maximum: float | None = None
    if photometric.startswith("PALETTE"):
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(raw, ds)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"palette colour table could not be applied ({exc})") from exc
        maximum = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else None
    elif arr.dtype.kind in "ui":
        maximum = 2.0 ** int(ds.get("BitsStored", 8) or 8) - 1
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype == np.uint8 and (maximum is None or maximum == 255):
        return np.ascontiguousarray(arr)
    if maximum is None:  # float samples
        maximum = float(arr.max()) if arr.size and arr.max() > 1 else 1.0
    scaled = np.clip(np.rint(arr.astype(np.float64) * (255.0 / maximum)), 0, 255)
    return np.ascontiguousarray(scaled.astype(np.uint8))


def colour_to_grey(path: Path, ds: Dataset) -> np.ndarray:
    """Grey float32 frames of a colour dataset (luma)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric in _LUMA_PHOTOMETRICS and int(ds.get("BitsAllocated", 8) or 8) == 8:
        return np.ascontiguousarray(_decode(path, ds, luma=True), dtype=np.float32)
    return rgb_to_grey(rgb_values(path, ds, _decode(path, ds)))


def window_of(ds: Dataset, frame: int | None = 0) -> tuple[float, float] | None:
    item = _group_item(ds, frame, "FrameVOILUTSequence")
    for source in (item, ds):
        if source is None:
            continue
        centre, width = source.get("WindowCenter"), source.get("WindowWidth")
        if centre is None or width is None or centre == "" or width == "":
            continue
        try:
            c = float(centre[0] if isinstance(centre, MultiValue) else centre)
            w = float(width[0] if isinstance(width, MultiValue) else width)
        except (TypeError, ValueError, IndexError):
            continue
        if w > 0 and np.isfinite(c) and np.isfinite(w):
            if _is_monochrome1(ds):
                c = _inversion_sum(ds, frame) - c
            return (c, w)
    return None
