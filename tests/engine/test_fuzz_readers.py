"""Fuzzing the readers: damaged bytes give an Image or an InputError, never another exception.

Real files (pydicom's CT_small, MR_small and rtdose's 15 frames as a secondary capture, a NIfTI volume, PNGs) are
mutated by hypothesis (bytes flipped, overwritten with boundary values, inserted, deleted, the file
cut short; PNG chunk checksums optionally repaired so damage reaches the decoder) and given to
``read_image`` and ``scan_sources``. Every reader outcome must be an ``Image`` of a sane shape and
geometry, or an ``InputError``; a scan never raises, keeps the good file next to the damaged one,
and a source it lists reads back with the shape it announced (or is refused by name).

Bounded for the test suite: deterministic examples (derandomize), 120-200 per format, < 30 s in
all. For a longer campaign: MEDLABELER_FUZZ_EXAMPLES=5000 MEDLABELER_FUZZ_RANDOM=1 pytest ... -s
Crashes found this way are kept as named regression tests at the bottom of this file.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import os
import struct
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medlabeler.engine.errors import InputError
from medlabeler.engine.io import Image, read_image, scan_sources
from tests.engine import bad_inputs as corpus
from tests.engine.io_fixtures import write_dicom_series

SCALE = float(os.environ.get("MEDLABELER_FUZZ_EXAMPLES", "0") or 0) / 150 or 1.0
RANDOM = bool(os.environ.get("MEDLABELER_FUZZ_RANDOM"))

@pytest.fixture(autouse=True)
def quiet_libraries():
    """tifffile and nibabel log every damaged file they meet; thousands of lines say nothing here."""
    loggers = [logging.getLogger(name) for name in ("tifffile", "nibabel", "nibabel.global")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _settings(examples: int):
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ----------------------------------------------------------------------------- seeds


@functools.lru_cache(maxsize=None)
def seeds() -> dict[str, bytes]:
    """Real files, small: name (with the suffix that picks the reader) -> bytes."""
    from PIL import Image as PILImage

    rgb = np.stack([corpus.grey_pixels((16, 16), seed=s) for s in (1, 2, 3)], axis=-1)
    jpeg = io.BytesIO()
    PILImage.fromarray(rgb).save(jpeg, format="JPEG", quality=80)
    return {
        "ct.dcm": _fixed_uids("CT_small.dcm", 1),
        "mr.dcm": _fixed_uids("MR_small.dcm", 2),
        "multiframe.dcm": _multi_frame_image(),  # 15 frames, implicit VR
        "volume.nii": corpus.nifti_bytes(corpus.volume_pixels((4, 8, 8)), compressed=False),
        "volume.nii.gz": corpus.nifti_bytes(corpus.volume_pixels((4, 8, 8)), compressed=True),
        "grey.png": corpus.png_bytes(corpus.grey_pixels((16, 16))),
        "rgb.png": corpus.png_bytes(rgb),
        "photo.jpg": jpeg.getvalue(),
        "planar_rgb.tif": corpus.tiff_stack_bytes("rgb"),
        "stack.tif": corpus.tiff_stack_bytes("minisblack"),
        "neighbour": _fixed_uids("CT_small.dcm", 3),
    }


def _multi_frame_image() -> bytes:
    """rtdose.dcm's frames as a multi-frame secondary capture (a dose grid is no image to label)."""
    ds = corpus.fresh_dicom("rtdose.dcm")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1999.4"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1002.4"
    return corpus.dicom_bytes(ds)


def _fixed_uids(name: str, number: int) -> bytes:
    """A pydicom test file with its own (fixed, so examples are reproducible) series and instance UIDs."""
    ds = corpus.fresh_dicom(name)
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.{1000 + 111 * number}.{number}"  # apart by > 1 byte
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.1002.{number}"
    return corpus.dicom_bytes(ds)


GOOD_NEIGHBOUR = "neighbour.png"
GOOD_DICOM_NEIGHBOUR = "neighbour_ct.dcm"  # another series: it must survive the damaged file's scan
NEIGHBOURS = [GOOD_NEIGHBOUR, GOOD_DICOM_NEIGHBOUR]
_FOLDERS = itertools.count()


# ----------------------------------------------------------------------------- mutations

BOUNDARY_VALUES = [
    b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00", b"\xff\xff", b"\x00\x80", b"\xff\x7f",
    b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
    b"-1", b"0", b"0\\0", b"1e308", b"-1e308", b"nan", b"inf", b"1e38", b"65535", b"\\", b"  ",
]

_position = st.integers(min_value=0, max_value=2**31)
mutation = st.one_of(
    st.tuples(st.just("flip"), _position, st.integers(1, 255)),
    st.tuples(st.just("overwrite"), _position, st.sampled_from(BOUNDARY_VALUES)),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), _position, st.integers(1, 32)),
    st.tuples(st.just("truncate"), _position),
)


def mutate(data: bytes, mutations: list[tuple], header: int) -> bytes:
    """Apply mutations; positions fall in the first `header` bytes for even-numbered ones
    (headers are where parsers branch), anywhere in the file otherwise."""
    out = bytearray(data)
    for index, (kind, position, *args) in enumerate(mutations):
        span = max(1, min(len(out), header) if index % 2 == 0 else len(out))
        at = position % span if out else 0
        if kind == "flip" and out:
            out[at] ^= args[0]
        elif kind == "overwrite" and out:
            out[at:at + len(args[0])] = args[0]
        elif kind == "insert":
            out[at:at] = args[0]
        elif kind == "delete":
            del out[at:at + args[0]]
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk checksum, so that damage reaches Pillow's decoder."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out = bytearray(data[:8])
    at = 8
    while at + 8 <= len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        end = at + 12 + length
        if end > len(data):
            out += data[at:]
            break
        kind_and_body = data[at + 4:at + 8 + length]
        out += data[at:at + 8 + length] + struct.pack(">I", zlib.crc32(kind_and_body) & 0xFFFFFFFF)
        at = end
    else:
        out += data[at:]
    return bytes(out)


# ----------------------------------------------------------------------------- invariants


def check_image(image: Image, path: Path) -> None:
    """What every reader result must satisfy: a sane array and geometry."""
    assert isinstance(image, Image), type(image)
    array = image.array
    assert isinstance(array, np.ndarray)
    assert array.ndim in (2, 3), array.shape
    assert all(0 < n < 2**31 for n in array.shape), array.shape
    assert array.dtype in (np.float32, np.uint8), array.dtype
    spatial = image.ndim_spatial
    assert len(image.spacing) == spatial, (image.spacing, array.shape)
    assert all(np.isfinite(s) and s > 0 for s in image.spacing), image.spacing
    if image.affine is not None:
        assert np.shape(image.affine) == (4, 4) and np.all(np.isfinite(image.affine)), image.affine
    if image.window is not None:
        assert len(image.window) == 2 and all(np.isfinite(image.window)), image.window
    assert np.all(np.isfinite(array)), f"{path.name}: non-finite pixel values"
    assert image.source


def _out_of_memory(exc: BaseException | None) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MemoryError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def read_or_refuse(path: Path, series_uid: str | None = None, stats: Counter | None = None):
    """read_image's outcome: an Image or an InputError; any other exception fails the test."""
    stats = stats if stats is not None else Counter()
    try:
        image = read_image(path, series_uid)
    except InputError as exc:
        assert path.name in str(exc), str(exc)
        assert not _out_of_memory(exc), f"{path.name}: a damaged header made the reader " \
            f"allocate more memory than the cap: {exc}"
        return exc
    check_image(image, path)
    return image


def check_scan(folder: Path, mutated: Path, stats: Counter) -> None:
    """scan_sources never raises, keeps the good neighbours, and what it lists reads as announced."""
    infos, errors = scan_sources(folder)
    assert all(isinstance(e, InputError) for e in errors), [type(e) for e in errors]
    listed = {info.path: info for info in infos}
    for name in NEIGHBOURS:
        assert str(folder / name) in listed, (name, [str(e) for e in errors])
    for info in infos:
        assert all(isinstance(n, int) and n > 0 for n in info.shape), info.shape
        assert all(np.isfinite(s) and s > 0 for s in info.spacing), info.spacing
        if Path(info.path).name in NEIGHBOURS:
            continue
        outcome = read_or_refuse(Path(info.path), info.series_uid, stats)
        if isinstance(outcome, Image):
            assert tuple(outcome.array.shape) == tuple(info.shape), (
                f"scan announced {info.shape}, read_image gave {outcome.array.shape}")
            stats["scan listed, read back"] += 1
        else:
            stats["scan listed, refused on read"] += 1
    stats["scan reported"] += sum(1 for e in errors if mutated.name in str(e))


def _write_neighbours(folder: Path) -> None:
    (folder / GOOD_NEIGHBOUR).write_bytes(seeds()["grey.png"])
    (folder / GOOD_DICOM_NEIGHBOUR).write_bytes(seeds()["neighbour"])


def _run(fuzz_dir: Path, name: str, data: bytes, stats: Counter) -> None:
    stats["examples"] += 1
    folder = fuzz_dir / f"{next(_FOLDERS):06d}"
    folder.mkdir()
    _write_neighbours(folder)
    path = folder / name
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = read_or_refuse(path, stats=stats)
        stats["read" if isinstance(outcome, Image) else "refused"] += 1
        check_scan(folder, path, stats)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _address_space() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@pytest.fixture(autouse=True)
def memory_cap():
    """Cap the address space at its current size + 6 GiB while fuzzing: a reader that believes a
    damaged header and allocates what it claims gets a MemoryError (reported by read_or_refuse)
    instead of taking the machine's memory (a 6 KB NIfTI can claim terabytes). 6 GiB, not less:
    pydicom reads an element of a damaged length (at most 4 GiB) into an untouched buffer."""
    try:
        import resource
    except ImportError:  # not on this platform: no cap
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = _address_space()
    if size is None:
        yield
        return
    cap = size + 6 * 2**30
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _report(label: str, stats: Counter, started: float) -> None:
    detail = ", ".join(f"{k} {v}" for k, v in sorted(stats.items()) if k != "examples")
    print(f"\nfuzz {label}: {stats['examples']} examples in {time.perf_counter() - started:.1f} s ({detail})")


# ----------------------------------------------------------------------------- the fuzzers


@pytest.mark.parametrize("family,examples", [("dcm", 200), ("nii", 150), ("png", 150), ("jpg", 50), ("tif", 50)])
def test_mutated_files_read_or_raise_input_error(family, examples, fuzz_dir):
    names = [n for n in seeds() if n.endswith(("." + family, "." + family + ".gz"))]
    stats: Counter = Counter()

    @_settings(examples)
    @given(name=st.sampled_from(names), mutations=st.lists(mutation, min_size=1, max_size=4),
           header=st.sampled_from([132, 400, 2048]), repair=st.booleans(), gzip_after=st.booleans())
    def run(name, mutations, header, repair, gzip_after):
        data = seeds()[name]
        if name.endswith(".gz") and gzip_after:  # damage the NIfTI inside, then compress it again
            import gzip

            data = gzip.compress(mutate(gzip.decompress(data), mutations, header), mtime=0)
        else:
            data = mutate(data, mutations, header)
        if name.endswith(".png") and repair:
            data = fix_png_crcs(data)
        _run(fuzz_dir, name, data, stats)

    started = time.perf_counter()
    run()
    _report(family, stats, started)
    assert stats["examples"] >= min(examples * SCALE, 20)


def test_a_series_with_one_mutated_slice_reads_or_raises_input_error(fuzz_dir):
    """Damage one slice of a 4-slice series: the folder reads, or is refused naming it or the slice."""
    stats: Counter = Counter()
    clean = fuzz_dir / "series_seed"
    paths = write_dicom_series(clean, corpus.volume_pixels((4, 8, 8)), spacing=(2.0, 1.0, 1.0), shuffle=False)
    import pydicom

    for index, path in enumerate(paths):  # fixed UIDs: the same bytes, so the same examples, every run
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1003", "1.2.826.0.1.3680043.10.1004"
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.10.1005"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.1006.{index}"
        ds.save_as(path)
    originals = {p.name: p.read_bytes() for p in paths}

    @_settings(80)
    @given(victim=st.integers(0, 3), mutations=st.lists(mutation, min_size=1, max_size=3),
           header=st.sampled_from([132, 400, 1024]))
    def run(victim, mutations, header):
        stats["examples"] += 1
        base = fuzz_dir / f"series{next(_FOLDERS):06d}"
        folder = base / "series"
        folder.mkdir(parents=True)
        for index, (name, data) in enumerate(originals.items()):
            (folder / name).write_bytes(mutate(data, mutations, header) if index == victim else data)
        _write_neighbours(base)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = read_or_refuse(folder, stats=stats)
            stats["read" if isinstance(outcome, Image) else "refused"] += 1
            check_scan(base, folder / paths[victim].name, stats)

    started = time.perf_counter()
    run()
    _report("series", stats, started)


# ----------------------------------------------------------------------------- regressions

# Crashes the fuzzers found, each reduced to the bytes that trigger it. See the final report to the
# lead for the file and line of each bug.

def _damaged_copy(folder: Path, name: str, old: bytes, new: bytes) -> tuple[Path, Path]:
    """CT_small with one byte string replaced, next to an intact CT of another series."""
    data = seeds()["ct.dcm"]
    assert data.count(old) == 1 and len(old) == len(new)
    path = folder / name
    path.write_bytes(data.replace(old, new))
    good = folder / "intact_ct.dcm"
    good.write_bytes(seeds()["neighbour"])
    return path, good


def _assert_refused_and_neighbour_kept(path: Path, good: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError) as info:
            read_image(path)
        assert path.name in str(info.value)
        infos, errors = scan_sources(path.parent)
    assert [i.path for i in infos] == [str(good)], [str(e) for e in errors]
    assert len(errors) == 1 and path.name in str(errors[0])


def test_a_damaged_value_representation_is_an_input_error(tmp_path):
    """Found by the fuzzer: one bit flipped in Modality's VR ('CS' -> 'BS') -> NotImplementedError."""
    path, good = _damaged_copy(tmp_path, "damaged_vr.dcm", b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00BS")
    _assert_refused_and_neighbour_kept(path, good)


def test_a_damaged_transfer_syntax_uid_is_an_input_error(tmp_path):
    """Found by the corpus (and the fuzzer): TransferSyntaxUID 1.2.840.10008.1.2.1 -> ...1.2.9."""
    path, good = _damaged_copy(tmp_path, "damaged_syntax.dcm", b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.9\x00")
    _assert_refused_and_neighbour_kept(path, good)


def test_a_png_with_a_short_ihdr_is_an_input_error(tmp_path):
    """Found by the fuzzer: the IHDR length byte 13 -> 12 (one bit) makes Pillow raise ValueError."""
    data = bytearray(seeds()["grey.png"])
    assert data[8:16] == b"\x00\x00\x00\rIHDR"
    data[11] = 12
    path = tmp_path / "short_ihdr.png"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        read_image(path)
    assert "short_ihdr.png" in str(info.value)
    infos, errors = scan_sources(tmp_path)
    assert not infos and len(errors) == 1 and "short_ihdr.png" in str(errors[0])


def test_an_odd_length_number_is_an_input_error(tmp_path):
    """Found by the fuzzer: Rows (US) with a 3-byte value -> pydicom BytesLengthException on access."""
    path = tmp_path / "odd_rows.dcm"
    path.write_bytes(corpus.dicom_odd_length_rows())
    good = tmp_path / "intact_ct.dcm"
    good.write_bytes(seeds()["neighbour"])
    _assert_refused_and_neighbour_kept(path, good)


def test_a_nan_nifti_affine_is_not_passed_on(tmp_path):
    """Found by the fuzzer: 0xFFFF written over srow_x[3] (header byte 294) -> a NaN affine."""
    data = bytearray(corpus.nifti_bytes(corpus.volume_pixels(), compressed=False))
    struct.pack_into("<f", data, 292, float("nan"))  # srow_x[3]; the sform (code 2) is the affine
    path = tmp_path / "nan_affine.nii"
    path.write_bytes(bytes(data))
    try:
        image = read_image(path)
    except InputError as exc:
        assert path.name in str(exc)
        return
    assert image.affine is None or np.all(np.isfinite(image.affine)), image.affine
