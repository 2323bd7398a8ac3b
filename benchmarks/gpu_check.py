"""The CUDA path, measured: AMP training and the out-of-memory batch back-off (see gpu_check.sh).

    python benchmarks/gpu_check.py amp   # the same short training in fp32 and with autocast
    python benchmarks/gpu_check.py oom   # a real CUDA OOM: the loop halves the batch and finishes

Both train the engine's U-Net through `train_project` on a small synthetic segmentation project
(bright squares on noise, written as NIfTI volumes). Without CUDA, `amp` runs on the CPU (where
autocast is off by design) and `oom` says why it cannot run. Prints figures, asserts nothing.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medlabeler.engine.io import scan_sources
from medlabeler.engine.workflows.train import train_project
from medlabeler.engine.store import Project
from medlabeler.engine.training import run_to_end


def make_project(root: Path, n_volumes: int = 6, depth: int = 16, side: int = 96, label_every: int = 1) -> Project:
    """Bright squares on noise; every `label_every`-th slice labeled (the rest for semi-supervised methods)."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for i in range(n_volumes):
        volume = rng.normal(80, 15, (side, side, depth)).astype(np.float32)
        for z in range(depth):
            y, x = rng.integers(8, side - 32, 2)
            volume[y:y + 24, x:x + 24, z] += 120
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(root / "images" / f"scan{i}.nii.gz"))
    infos, errors = scan_sources(root / "images")
    if errors:
        raise SystemExit(f"cannot read the synthetic scans: {errors}")
    project = Project.create(root / "project", task="segmentation", names=["square"], unit="slice", seed=0)
    project.add_sources(infos)
    for sample in project.samples()[::label_every]:
        project.save_label(sample.id, (project.load_pixels(sample) > 150).astype(np.uint8))
    return project


def train(project: Project, config: dict) -> tuple[object, list[str]]:
    logs: list[str] = []

    def keep(event) -> None:
        if event.kind == "log" and event.message:
            logs.append(event.message)

    return run_to_end(train_project(project, method="supervised", config=config), keep), logs


def check_amp(project: Project, device: str) -> None:
    base = {"device": device, "image_size": 256, "features": [32, 64, 128, 256], "batch_size": 16,
            "steps": 60, "steps_per_epoch": 60, "cap_threads": False}
    if device == "cpu":
        base.update(image_size=64, features=[8, 16, 32], batch_size=4, steps=10, steps_per_epoch=10)
    for amp in (False, None):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        result, logs = train(project, {**base, "amp": amp})
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else math.nan
        mode = next((m for m in logs if " on " in m and "steps" in m), "")
        print(f"amp={'auto' if amp is None else 'off'}: {mode}")
        print(f"  {result.images_per_second:.1f} images/s, final loss {result.final_loss:.4f} "
              f"(finite: {math.isfinite(result.final_loss)}), val dice {result.metrics.get('dice', math.nan):.3f}, "
              f"peak memory {peak:.0f} MiB, {seconds:.1f} s")


def check_oom(project: Project) -> None:
    if not torch.cuda.is_available():
        print("oom: no CUDA device, skipped (the back-off is for CUDA/MPS memory)")
        return
    batch = 32
    config = {"device": "cuda", "image_size": 256, "features": [32, 64, 128, 256], "batch_size": batch,
              "steps": 4, "steps_per_epoch": 4, "cap_threads": False, "amp": False}
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    train(project, {**config, "steps": 2, "steps_per_epoch": 2})
    peak = torch.cuda.max_memory_allocated()
    total = torch.cuda.get_device_properties(0).total_memory
    # cap the allocator between the peak of batch/2 (about half the activations) and of batch: a
    # real OutOfMemoryError from the CUDA caching allocator at the full batch
    limit = 0.8 * peak
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(limit / total)
    try:
        started = time.perf_counter()
        result, logs = train(project, config)
        halved = [m for m in logs if "out of cuda memory" in m]
        print(f"oom: peak at batch {batch} {peak / 2**20:.0f} MiB, allocator capped at {limit / 2**20:.0f} MiB")
        print(f"  {halved[0] if halved else 'no out-of-memory happened (the cap was too generous)'}")
        print(f"  finished with batch {result.batch_size}: {result.steps} steps, final loss {result.final_loss:.4f}, "
              f"model v{result.version}, {time.perf_counter() - started:.1f} s")
    except Exception as exc:  # the figure to report is what happened
        print(f"oom: the run failed: {type(exc).__name__}: {exc}")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "amp"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        project = make_project(Path(tmp))
        try:
            if what == "amp":
                check_amp(project, device)
            elif what == "oom":
                check_oom(project)
            else:
                raise SystemExit(f"unknown check {what!r}: amp or oom")
        finally:
            project.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
