"""A second real 2D segmentation set for the pipelines benchmark: stardist's fluorescent nuclei.

The bundled benchmarks are all one brain MRI. To check that the recommended pipeline pays (and
does no harm) on images of another kind, this script cuts stardist's 512x512 nuclei test image
and its hand-drawn instance mask into 64 tiles of 64x64 px (nuclei as one label) and writes a
labeled project that `medlabeler benchmark pipelines --dataset PROJECT` accepts.

stardist is not a dependency (it pulls in TensorFlow's helpers); only its wheel's data is read:

    pip download stardist --no-deps -d WHEELS     # once, from the package registry
    python benchmarks/nuclei_project.py WHEELS/stardist-*.whl OUT
    medlabeler benchmark pipelines --dataset OUT/project --methods supervised,auto \
        --seeds 3 --labels 4,8,16,full --steps 300 --threads 1 --out RESULTS

An installed stardist works too: pass `stardist` instead of the wheel.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

IMAGE, MASK = "stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif"
TILE = 64


def read_pair(source: str) -> tuple[np.ndarray, np.ndarray]:
    """The nuclei image and its instance mask, from a stardist wheel or the installed package."""
    import tifffile

    if source == "stardist":
        from stardist.data import test_image_nuclei_2d

        return test_image_nuclei_2d(return_mask=True)
    with zipfile.ZipFile(source) as wheel:
        return tuple(tifffile.imread(io.BytesIO(wheel.read(name))) for name in (IMAGE, MASK))


def write_tiles(image: np.ndarray, mask: np.ndarray, folder: Path) -> None:
    """8-bit image tiles and binary mask tiles of the same names (what import-labels matches)."""
    from PIL import Image

    grey = np.clip(image.astype(np.float32) / image.max() * 255, 0, 255).astype(np.uint8)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for row in range(image.shape[0] // TILE):
        for col in range(image.shape[1] // TILE):
            window = np.s_[row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE]
            name = f"tile_{row}_{col}.png"
            Image.fromarray(grey[window]).save(folder / "images" / name)
            Image.fromarray((mask[window] > 0).astype(np.uint8)).save(folder / "masks" / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a stardist wheel (.whl), or 'stardist' for the installed package")
    parser.add_argument("out", type=Path, help="a new folder: tiles in images/ and masks/, the project in project/")
    args = parser.parse_args()

    from medlabeler.engine.project.project_import import create_project, import_labels

    write_tiles(*read_pair(args.source), args.out)
    project, report = create_project(args.out / "project", args.out / "images", task="segmentation",
                                     names=["nucleus"])
    print(report.summary())
    print(f"imported {import_labels(project, args.out / 'masks').labeled} masks")
    project.close()


if __name__ == "__main__":
    main()
