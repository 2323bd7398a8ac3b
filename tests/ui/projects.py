"""Small real projects for the GUI tests: slabs of the MNI152 brain MRI shipped inside nilearn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAMES = ["grey_matter", "white_matter"]
COLORS = ["#e6a23c", "#409eff"]
# Tiny and quick on a 2-core CPU: 48 px inputs, a narrow U-Net, a few steps.
TINY = {"image_size": 48, "batch_size": 4, "unlabeled_batch_size": 4, "steps_per_epoch": 4,
        "features": [8, 16, 32, 64], "cache_mb": 64}


def write_brain_slabs(folder: Path, n_volumes: int = 4, depth: int = 6) -> tuple[Path, Path]:
    """NIfTI volumes (50 x 59 x depth, 4 mm) cut from the MNI152 T1, and their tissue masks.

    Masks come from thresholding nilearn's grey/white matter probability maps (1 grey, 2 white).
    Each volume is its own group, so the store can put them in different splits.
    """
    import nibabel as nib

    from medlabeler.engine.workflows.demo import mni_file

    def load(kind):
        return np.asarray(nib.load(mni_file(kind)).dataobj)[::4, ::4, ::4].astype(np.float32)

    t1, grey, white = load("t1"), load("gm"), load("wm")
    tissue = np.stack([grey, white])
    truth = (tissue.argmax(0) + 1).astype(np.uint8)
    truth[tissue.max(0) < 128] = 0
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    for i in range(n_volumes):
        z = 14 + i * depth
        nib.save(nib.Nifti1Image(t1[:, :, z : z + depth], affine), images / f"brain{i}.nii.gz")
        nib.save(nib.Nifti1Image(truth[:, :, z : z + depth], affine), masks / f"brain{i}.nii.gz")
    return images, masks


def truth_slice(masks: Path, sample) -> np.ndarray:
    """The reference mask of a slice sample, read the way the app reads the image."""
    from medlabeler.engine.io import read_image

    return read_image(masks / Path(sample.path).name).array[sample.slice_index].astype(np.uint8)


CLASSES = ["little_white_matter", "much_white_matter"]


def write_brain_pngs(folder: Path, n: int = 16) -> tuple[Path, dict[str, int]]:
    """Axial slices of the MNI152 T1 (2D PNGs, 48 x 58) and their class by white-matter share.

    Returns the folder and {file name: class index}; the class is kept out of the folder layout
    so the project starts unlabeled.
    """
    import nibabel as nib
    from PIL import Image

    from medlabeler.engine.workflows.demo import mni_file

    t1 = np.asarray(nib.load(mni_file("t1")).dataobj)[::4, ::4, :].astype(np.float32)
    white = np.asarray(nib.load(mni_file("wm")).dataobj)[::4, ::4, :].astype(np.float32)
    zs = np.linspace(40, 150, n).round().astype(int)
    share = np.array([(white[:, :, z] > 128).mean() for z in zs])
    cut = np.median(share)
    folder.mkdir(parents=True, exist_ok=True)
    classes = {}
    for z, s in zip(zs, share):
        name = f"slice{z:03d}.png"
        Image.fromarray(np.clip(t1[:, :, z], 0, 255).astype(np.uint8)).save(folder / name)
        classes[name] = int(s > cut)
    return folder, classes
