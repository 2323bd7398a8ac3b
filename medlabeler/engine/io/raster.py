"""PNG, JPEG, BMP (Pillow) and TIFF (tifffile) images.

Grey images become (Y, X) float32 with their stored values (16-bit kept); colour becomes
(Y, X, 3) uint8 with alpha dropped; a multi-page TIFF becomes a (Z, Y, X) volume (colour pages
turned grey). Pixel spacing is unknown in these formats and reported as 1.0.

Images larger than Pillow's ``Image.MAX_IMAGE_PIXELS`` are refused (decompression bombs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

from medlabeler.engine.errors import ImageReadError
from medlabeler.engine.io.image import Image

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
MAX_VOXELS = 2**31  # a TIFF stack larger than this is refused

_GREY_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_GREY_ALPHA_MODES = {"LA", "La"}
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112


def is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def _too_large(pixels: int) -> bool:
    limit = PIL.Image.MAX_IMAGE_PIXELS
    return limit is not None and pixels > limit


def _bomb_error(path: Path, detail: str) -> ImageReadError:
    return ImageReadError(
        path, f"image is too large to open safely ({detail}); it may be a decompression bomb"
    )


def _open(path: Path) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(path)
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as exc:
        raise _bomb_error(path, str(exc)) from exc
    except PIL.UnidentifiedImageError as exc:
        if path.stat().st_size == 0:  # "the file is no PNG" read oddly for an empty file named .png
            raise ImageReadError(path, "the file is empty (0 bytes): a copy that never finished?") from exc
        raise ImageReadError(path, "not a readable image (the file is no PNG/JPEG/TIFF/BMP)") from exc
    except OSError as exc:
        raise ImageReadError(path, f"image could not be opened ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - ValueError('Truncated IHDR chunk'), SyntaxError, struct.error ...
        raise ImageReadError(path, f"not a readable image ({type(exc).__name__}: {exc})") from exc
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise ImageReadError(path, f"not a readable image (its size is {width}x{height} pixels)")
    if _too_large(width * height):
        image.close()
        raise _bomb_error(path, f"{width}x{height} pixels, limit {PIL.Image.MAX_IMAGE_PIXELS}")
    return image


def _grey_palette(image: PIL.Image.Image) -> bool:
    palette = image.getpalette()
    if not palette:
        return True
    rgb = np.asarray(palette, dtype=np.int32).reshape(-1, 3)
    return bool(np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))


def _is_grey(image: PIL.Image.Image) -> bool:
    if image.mode in _GREY_MODES or image.mode in _GREY_ALPHA_MODES:
        return True
    if image.mode in ("P", "PA"):
        return _grey_palette(image)
    return False


def _swaps_axes(image: PIL.Image.Image) -> bool:
    try:
        return image.getexif().get(_EXIF_ORIENTATION, 1) in _SWAPPING_ORIENTATIONS
    except Exception:  # noqa: BLE001 - broken EXIF: no rotation
        return False


# ----------------------------------------------------------------------------- TIFF


def _tiff_layout(path: Path) -> tuple[tuple[int, ...], str, str, Any]:
    """(shape, axes, photometric name, dtype) of the first series, header only."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            photometric = series.pages[0].photometric if series.pages else None
            name = getattr(photometric, "name", str(photometric or "")).upper()
            return tuple(int(n) for n in series.shape), series.axes, name, series.dtype
    except Exception as exc:  # noqa: BLE001 - TiffFileError, truncated IFDs ...
        raise ImageReadError(path, f"not a readable TIFF ({exc})") from exc


def _tiff_plan(path: Path, shape: tuple[int, ...], axes: str, photometric: str) -> tuple[tuple[int, ...], bool]:
    """Output shape of a TIFF and whether its samples are colour."""
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(path, f"TIFF axes {axes!r} have no Y and X")
    sizes = dict(zip(axes, shape))
    colour = photometric in ("RGB", "YCBCR") and sizes.get("S", 1) >= 3
    extra = [(a, n) for a, n in zip(axes, shape) if a not in "YX" and n > 1 and not (colour and a == "S")]
    if len(extra) > 1:
        raise ImageReadError(
            path, f"TIFF has axes {axes!r} of shape {shape}; only a 2D image or one 3D stack can be read"
        )
    if 0 in shape:
        raise ImageReadError(path, f"TIFF of shape {shape} (axes {axes!r}) has no pixels")
    y, x = sizes["Y"], sizes["X"]
    if _too_large(y * x) or int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise _bomb_error(path, f"TIFF of shape {shape}")
    if extra:
        return (extra[0][1], y, x), colour
    return ((y, x, 3) if colour else (y, x)), colour


def _read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    shape, axes, photometric, dtype = _tiff_layout(path)
    if photometric == "PALETTE":
        return _read_pillow(path)
    out_shape, colour = _tiff_plan(path, shape, axes, photometric)
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.series[0].asarray()
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"TIFF pixel data could not be read ({exc})") from exc
    if tuple(data.shape) != tuple(shape):
        raise ImageReadError(
            path, f"TIFF pixel data of shape {tuple(data.shape)} do not match its header's shape {shape}; "
            "the file is damaged or truncated"
        )
    letters = list(axes)
    # drop singleton axes other than Y, X (and colour samples)
    for index in reversed(range(len(letters))):
        if letters[index] not in "YX" and data.shape[index] == 1 and not (colour and letters[index] == "S"):
            data = data.take(0, axis=index)
            letters.pop(index)
    order = [i for i, a in enumerate(letters) if a not in "YXS" or (a == "S" and not colour)]
    order += [letters.index("Y"), letters.index("X")]
    if colour:
        order.append(letters.index("S"))
    data = np.transpose(data, order)
    metadata: dict[str, Any] = {"format": "TIFF", "dtype": str(dtype), "axes": axes}
    if colour:
        rgb = _to_uint8(data[..., :3])
        if rgb.ndim == 4:
            from medlabeler.engine.io.image import rgb_to_grey

            metadata["converted_to_grey"] = True
            return rgb_to_grey(rgb), metadata
        return rgb, metadata
    if data.shape != out_shape:
        raise ImageReadError(path, f"TIFF decoded to shape {data.shape}, expected {out_shape}")
    return np.ascontiguousarray(data, dtype=np.float32), metadata


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    if rgb.dtype.kind in "ui":
        scale = 255.0 / float(np.iinfo(rgb.dtype).max)
    else:
        top = float(np.nanmax(rgb)) if rgb.size else 1.0
        scale = 255.0 if top <= 1.0 else 255.0 / top
    return np.clip(np.rint(rgb.astype(np.float64) * scale), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- Pillow


def _read_pillow(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    image = _open(path)
    try:
        metadata: dict[str, Any] = {"format": image.format or path.suffix.lstrip(".").upper(), "mode": image.mode}
        try:
            image = PIL.ImageOps.exif_transpose(image) or image
            grey = _is_grey(image)
            if image.mode in _GREY_ALPHA_MODES or image.mode in ("P", "PA"):
                image = image.convert("L" if grey else "RGB")
            elif not grey and image.mode != "RGB":
                image = image.convert("RGB")
            array = np.asarray(image)
        except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as exc:
            raise _bomb_error(path, str(exc)) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(path, f"image data is truncated or damaged ({exc})") from exc
        except Exception as exc:  # noqa: BLE001 - struct.error, IndexError ... from a damaged file
            raise ImageReadError(path, f"image data is truncated or damaged ({type(exc).__name__}: {exc})") from exc
    finally:
        image.close()
    if grey:
        return np.ascontiguousarray(array, dtype=np.float32), metadata
    return np.ascontiguousarray(array[..., :3], dtype=np.uint8), metadata


def describe_raster(path: Path) -> tuple[tuple[int, ...], bool]:
    """(array shape, is colour) that read_raster gives, from the header alone."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        shape, axes, photometric, _ = _tiff_layout(path)
        if photometric != "PALETTE":
            out_shape, colour = _tiff_plan(path, shape, axes, photometric)
            return out_shape, colour and len(out_shape) == 3 and out_shape[-1] == 3
    image = _open(path)
    try:
        width, height = image.size
        if _swaps_axes(image):
            width, height = height, width
        grey = _is_grey(image)
    finally:
        image.close()
    return ((height, width) if grey else (height, width, 3)), not grey


def read_raster(path: Path) -> Image:
    if path.suffix.lower() in TIFF_SUFFIXES:
        array, metadata = _read_tiff(path)
    else:
        array, metadata = _read_pillow(path)
    colour = array.dtype == np.uint8 and array.ndim == 3
    return Image(
        array=array,
        spacing=tuple(1.0 for _ in range(2 if colour else array.ndim)),
        affine=None,
        modality="RGB" if colour else "OT",
        window=None,
        metadata=metadata,
        identifiers={},
        source=str(path),
    )
