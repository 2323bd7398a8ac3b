"""Scrolling a 512x512x300 CT series in the app with the learning loop on: does the UI keep up?

The series is written from a real CT when the Debian package invesalius-examples is installed
(its head CT, ``Cranium.inv3``: 108x256x256 int16 HU, resampled to 300x512x512 with linear
interpolation), else from a synthetic head (skull, brain, ventricles, noise, int16 HU); either way
300 single-frame DICOM files with ImagePositionPatient, pixel spacing and rescale, as a scanner
writes them. A slice-segmentation project is made of it; the app opens it with the learning loop
on (it starts pretraining an encoder on the 300 slices in the background), and the clinician
scrolls through the slices with napari's own arrow keys, one slice every ``--interval-ms``, there
and back. A 2 ms QTimer measures the Qt event loop throughout: gaps between ticks are stalls.

Printed: the time the project took to open on the main thread (reading the series), the
heartbeat p50/p99/max while scrolling, each arrow key's main-thread time, and what one repaint of
the unchanged window costs (under Xvfb the canvas is drawn by software OpenGL: the floor of any
frame). Figures, not assertions. Run it under a display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/ui_ct_scroll.py --slices 120

`--bare` measures the floor instead: plain napari in the same maximized window (an empty dock as
wide as the app's), no medlabeler and no learning, shown the same volume (read, scaled and windowed as the app reads it) in an image and
an empty uint8 labels layer, and scrolled with the same keys. What the app adds to opening and
scrolling is the difference from the app with `--loop off`.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_heartbeat import Heartbeat, StallSampler, dock_placeholder, percentiles, private_home  # noqa: E402  (the same 2 ms timer)

#: How long after the first slice shows the opening's heartbeat goes on: the app shows the layers
#: and fits the hidden overlays in turns of their own after it (napari draws the first frame too).
SETTLE_S = 1.0
CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
SHAPE = (300, 512, 512)
INTERCEPT = -1024.0


def real_ct(shape=SHAPE) -> tuple[np.ndarray, tuple[float, float, float], str] | None:
    """InVesalius' head CT resampled to ``shape`` (z, y, x), with its spacing; None if not installed."""
    if not CRANIUM.is_file():
        return None
    from scipy.ndimage import zoom

    with tarfile.open(CRANIUM) as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        meta = plistlib.loads(archive.extractfile(members["main.plist"]).read())
        raw = archive.extractfile(members[meta["matrix"]["filename"]]).read()
    source = np.frombuffer(raw, dtype=meta["matrix"]["dtype"]).reshape(meta["matrix"]["shape"])
    factors = [t / s for t, s in zip(shape, source.shape)]
    volume = zoom(source.astype(np.float32), factors, order=1)
    sx, sy, sz = meta["spacing"]
    spacing = (sz / factors[0], sy / factors[1], sx / factors[2])
    return np.clip(np.rint(volume), -1024, 3071).astype(np.int16), spacing, f"InVesalius head CT {source.shape} resampled"


def synthetic_ct(shape=SHAPE, seed: int = 0) -> tuple[np.ndarray, tuple[float, float, float], str]:
    """A head as a CT shows it, in HU: air, skin, a skull shell, brain, ventricles, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[-1:1:shape[0] * 1j, -1:1:shape[1] * 1j, -1:1:shape[2] * 1j]
    r = np.sqrt((x / 0.78) ** 2 + (y / 0.9) ** 2 + (z / 1.05) ** 2)
    volume = np.full(shape, -1000.0, np.float32)
    volume[r < 1.0] = 40.0  # soft tissue
    volume[(r < 0.95) & (r >= 0.88)] = 900.0  # skull
    volume[r < 0.88] = 32.0  # brain
    ventricles = np.sqrt((np.abs(x) - 0.12) ** 2 / 0.01 + y ** 2 / 0.09 + z ** 2 / 0.16) < 1.0
    volume[ventricles & (r < 0.88)] = 8.0
    volume += rng.normal(0, 12, shape).astype(np.float32)
    return np.clip(volume, -1024, 3071).astype(np.int16), (0.6, 0.45, 0.45), "synthetic head phantom"


def write_series(folder: Path, volume: np.ndarray, spacing) -> None:
    """One uncompressed CT file per slice, positioned along the slice normal, HU via rescale."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    ct = "1.2.840.10008.5.1.4.1.1.2"
    for k, plane in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ct, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"CT{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = ct, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "CT", "head", 1, k + 1
        ds.PatientName, ds.PatientID = "Benchmark^Head", "BENCH"
        ds.ImagePositionPatient = [0.0, 0.0, round(k * spacing[0], 4)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.RescaleSlope, ds.RescaleIntercept = 1, INTERCEPT
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = (plane.astype(np.int32) - int(INTERCEPT)).astype(np.int16).tobytes()
        ds.save_as(folder / f"CT{k:04d}.dcm", enforce_file_format=True)


def label_by_threshold(project, count: int) -> int:
    """Label ``count`` training slices spread through the series as a quick clinician would:
    bone where HU > 300, brain (soft tissue) where 0 < HU < 80 inside the head. Returns how many."""
    train = [s for s in project.samples(split="train") if s.slice_index is not None]
    picks = [train[round(k)] for k in np.linspace(len(train) * 0.3, len(train) * 0.7, count)] if count else []
    for sample in picks:
        hu = np.asarray(project.load_pixels(sample), np.float32)
        mask = np.zeros(hu.shape, np.uint8)
        mask[(hu > 0) & (hu < 80)] = 2
        mask[hu > 300] = 1
        project.save_label(sample.id, mask, author="benchmark")
    return len(picks)


def read_first_volume(root: Path):
    """The volume of the project's first sample, read as the app reads it (`read_volume`)."""
    from medlabeler.engine.store import Project
    from medlabeler.ui.layers import read_volume

    with Project.open(root, readonly=True) as project:
        return read_volume(project.samples()[0], project)


def warm_up_napari(viewer, pump) -> None:
    """napari's first-layer costs (modules, shaders, the first textures), paid on small layers."""
    small = np.zeros((4, 8, 8), np.float32)
    image = viewer.add_image(small, contrast_limits=(0.0, 1.0))
    labels = viewer.add_labels(small.astype(np.uint8))
    pump(0.5)
    viewer.layers.remove(labels)
    viewer.layers.remove(image)
    pump(0.5)


def show_bare(viewer, volume, pump) -> tuple[float, float]:
    """Plain napari shows the volume as the app would: an image and an empty uint8 labels layer,
    the camera turned alike. Returns the seconds until the layers were made and until the first
    repaint was done."""
    started = time.perf_counter()
    viewer.add_image(volume.pixels, scale=volume.scale, contrast_limits=volume.limits, name="image")
    pump(0.05)  # each layer in its own turn of the event loop: the longest stall is one layer's
    labels = viewer.add_labels(np.zeros(volume.pixels.shape, np.uint8), scale=volume.scale, name="labels")
    labels.mode = "paint"
    viewer.scene.camera.orientation2d = volume.orientation
    viewer.reset_view()
    layers_s = time.perf_counter() - started
    pump(0.2)  # the first repaint
    return layers_s, time.perf_counter() - started


def main(argv=None) -> int:
    private_home()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-dir", help="a folder to write the series to, or holding it already (default: temporary)")
    parser.add_argument("--slices", type=int, default=120, help="arrow-key presses each way")
    parser.add_argument("--interval-ms", type=float, default=40.0, help="time between two presses (25/s: a held key)")
    parser.add_argument("--loop", choices=("on", "off"), default="on", help="the learning loop while scrolling")
    parser.add_argument("--synthetic", action="store_true", help="a synthetic head even if the real CT is installed")
    parser.add_argument("--labeled", type=int, default=3,
                        help="training slices labeled (by thresholds) before opening, so the loop trains while "
                             "the clinician scrolls (0: the loop waits for labels)")
    parser.add_argument("--profile", action="store_true", help="where the main thread is during stalls")
    parser.add_argument("--bare", action="store_true",
                        help="the floor: plain napari shows the same volume in two layers (no app, no learning)")
    args = parser.parse_args(argv)
    if args.bare:
        args.loop = "off"
    os.environ["MEDLABELER_LEARN"] = "1" if args.loop == "on" else "0"

    tmp = tempfile.TemporaryDirectory(prefix="medlabeler-ct-")
    ct_dir = Path(args.ct_dir) if args.ct_dir else Path(tmp.name) / "ct"
    if not any(ct_dir.glob("*.dcm")):
        started = time.perf_counter()
        made = None if args.synthetic else real_ct()
        volume, spacing, source = made or synthetic_ct()
        write_series(ct_dir, volume, spacing)
        print(f"wrote {volume.shape[0]} DICOM files of {volume.shape[1]}x{volume.shape[2]} int16 ({source}, "
              f"spacing {tuple(round(s, 3) for s in spacing)} mm) in {time.perf_counter() - started:.1f} s")

    from medlabeler.engine.project.project_import import create_project

    started = time.perf_counter()
    root = Path(tmp.name) / "project"
    project, report = create_project(root, ct_dir, task="segmentation", names=["bone", "brain"], unit="slice")
    n_samples = len(project.samples())
    labeled = label_by_threshold(project, args.labeled)
    project.close()
    print(f"project: {report.summary()} -> {n_samples} slice samples, {labeled} labeled "
          f"({time.perf_counter() - started:.1f} s)")

    import napari
    from qtpy.QtWidgets import QApplication

    from medlabeler.ui.app import build_app, fit_window, new_viewer

    viewer = new_viewer("medlabeler CT scroll benchmark")
    app = QApplication.instance()
    session = None if args.bare else build_app(viewer).session
    if args.bare:
        dock_placeholder(viewer)
    fit_window(viewer)
    canvas = viewer.window._qt_viewer.canvas
    handler = viewer.window._qt_viewer._key_map_handler

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)

    pump(3.0)  # the clinician picks the folder: the start-up warm-up threads finish meanwhile
    volume = None
    if args.bare:  # off the clock, as the app reads on a thread and pays napari's first-layer costs ahead
        volume = read_first_volume(root)
        warm_up_napari(viewer, pump)
    beat = Heartbeat()
    beat.start()
    open_sampler = StallSampler(beat, depth=3).start() if args.profile else None
    if args.bare:
        open_call_s, open_s = show_bare(viewer, volume, pump)
    else:
        started = time.perf_counter()
        session.open_project(root)
        open_call_s = time.perf_counter() - started
        while session.sample is None and time.perf_counter() - started < 300:
            pump(0.01)
        open_s = time.perf_counter() - started
    pump(SETTLE_S)  # the turns that follow: the layers shown one by one, the hidden overlays fitted
    opening = beat.stop()
    if open_sampler is not None:
        open_sampler.stop()
    beat.start()
    pump(3.0)  # the loop starts; torch loads on its thread
    settling = beat.stop()
    floor = []
    for _ in range(5):
        app.processEvents()
        t0 = time.perf_counter()
        canvas.native.repaint()
        floor.append(1000 * (time.perf_counter() - t0))
    sampler = StallSampler(beat, depth=3).start() if args.profile else None
    key_ms = []
    beat.start()
    for key in ("Right", "Left"):
        for _ in range(args.slices):
            t0 = time.perf_counter()
            handler.press_key(key)
            handler.release_key(key)
            key_ms.append(1000 * (time.perf_counter() - t0))
            pump(args.interval_ms / 1000)
    scrolling = beat.stop()
    loop_now = "none (bare napari)" if args.bare else session.learning.now
    image = viewer.layers[0]
    what = "the layers made" if args.bare else f"the open call itself {open_call_s:.2f} s; {n_samples} DICOM files read on a thread"
    print(f"{'bare napari: ' if args.bare else ''}opened {image.data.shape} {image.data.dtype}: first slice shown "
          f"{open_s:.2f} s after Open ({what}); canvas {canvas.native.width()}x{canvas.native.height()} px")
    print(f"heartbeat while opening ({'making the layers' if args.bare else 'reading, then making the layers'}, "
          f"until {SETTLE_S:.0f} s after the first slice shows): "
          f"{percentiles(opening)}")
    print(f"heartbeat (2 ms timer) for 3 s after opening, loop {args.loop}: {percentiles(settling)}")
    print(f"repaint of the unchanged window: p50 {np.median(floor):.0f} ms, max {max(floor):.0f} ms "
          f"(the floor of every frame on this display)")
    print(f"heartbeat while scrolling {2 * args.slices} slices, one per {args.interval_ms:.0f} ms, loop {args.loop}: "
          f"{percentiles(scrolling)}")
    print(f"  arrow key on the main thread (slice the layers): p50 {np.median(key_ms):.1f} ms, "
          f"p99 {np.percentile(key_ms, 99):.1f} ms, max {max(key_ms):.1f} ms")
    print(f"  the learning loop meanwhile: {loop_now}")
    if open_sampler is not None:
        print(f"where the main thread was while the heartbeat was over 30 ms late, opening ({open_sampler.samples} samples):")
        print(open_sampler.report(top=12))
    if sampler is not None:
        sampler.stop()
        print(f"where the main thread was while the heartbeat was over 30 ms late ({sampler.samples} samples):")
        print(sampler.report(top=10))
    if session is not None:
        session.shutdown()
    viewer.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
