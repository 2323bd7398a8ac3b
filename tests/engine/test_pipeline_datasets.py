"""Datasets over a project: normalisation, geometry, slice positions, caching, batches, config."""

import dataclasses
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medlabeler.engine.data.datasets import (
    Geometry, InfiniteBatches, LabeledDataset, Preprocess, SampleTensors, UnlabeledDataset,
    build_project_data, intensity_stats, label_window, normalise_grey, normalise_rgb,
)
from medlabeler.engine.io import scan_sources
from medlabeler.engine.store import Project


# --- project builders (also used by test_pipeline.py) ------------------------------------------


def write_volumes(folder, n=4, depth=6, shape=(36, 40), seed=0):
    """NIfTI volumes with a bright square (the 'lesion') drifting across slices."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for v in range(n):
        vol = rng.normal(100.0, 10.0, (depth, *shape)).astype(np.float32)
        for z in range(depth):
            r, c = 6 + z + v, 8 + 2 * v
            vol[z, r:r + 12, c:c + 14] += 80.0
        # nibabel's (i, j, k) is the reverse of the (Z, Y, X) array medlabeler reads
        nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0), np.diag([0.8, 0.8, 2.5, 1.0])), folder / f"v{v}.nii.gz")


def fixed_groups(infos):
    """Patient groups named by file name, so splits do not depend on the temp folder's path."""
    return [dataclasses.replace(info, group=f"patient-{i}") for i, info in
            enumerate(sorted(infos, key=lambda info: str(info.path)))]


def make_seg_project(root, *, n=4, depth=6, shape=(36, 40), label_fraction=1.0, seed=0):
    """A unit-"slice" segmentation project; labels = the bright square (thresholded pixels)."""
    write_volumes(root / "images", n, depth, shape, seed)
    infos, errors = scan_sources(root / "images")
    assert not errors
    project = Project.create(root / "project", task="segmentation", names=["lesion"], unit="slice", seed=seed)
    project.add_sources(fixed_groups(infos))
    for i, sample in enumerate(project.samples()):
        if (i * label_fraction) % 1 < label_fraction or label_fraction >= 1:
            project.save_label(sample.id, (project.load_pixels(sample) > 140).astype(np.uint8))
    return project


def write_pngs(folder, n=24, shape=(30, 40), rgb=False, seed=0):
    """Grey (or RGB) PNGs; class 1 has a bright block top-left. Returns {path: class}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    classes = {}
    for i in range(n):
        img = rng.normal(90, 20, shape).clip(0, 255)
        cls = i % 2
        if cls:
            img[3:15, 4:18] += 90
        img = img.clip(0, 255).astype(np.uint8)
        if rgb:
            img = np.stack([img, (img * 0.8).astype(np.uint8), 255 - img], -1)
        path = folder / f"img{i:02d}.png"
        Image.fromarray(img).save(path)
        classes[str(path.resolve())] = cls
    return classes


def make_cls_project(root, *, n=24, rgb=False, seed=0):
    classes = write_pngs(root / "images", n, rgb=rgb, seed=seed)
    infos, errors = scan_sources(root / "images")
    assert not errors
    project = Project.create(root / "project", task="classification", names=["normal", "lesion"], seed=seed)
    project.add_sources(fixed_groups(infos))
    for sample in project.samples():
        project.save_label(sample.id, classes[str(sample.path)])
    return project


# --- preprocessing ----------------------------------------------------------------------------


def test_grey_normalisation_clips_percentiles_then_z_scores():
    rng = np.random.default_rng(0)
    x = rng.normal(50, 5, (40, 40)).astype(np.float32)
    x[0, 0] = 1e6  # an outlier the 99th percentile clips away
    out = normalise_grey(x)
    assert out.dtype == np.float32 and abs(out.mean()) < 0.05 and abs(out.std() - 1) < 0.05
    stats = intensity_stats(x)
    assert stats.high < 100 and out.max() == pytest.approx((stats.high - stats.mean) / stats.std, rel=1e-4)
    windowed = normalise_grey(np.array([[-1000.0, 40.0, 240.0, 3000.0]]), window=(40.0, 400.0))
    assert windowed.tolist() == [[-1.0, 0.0, 1.0, 1.0]]


def test_rgb_is_scaled_and_standardised_per_channel():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3)).astype(np.float32)
    out = normalise_rgb(img)
    assert out.shape == (3, 20, 30)
    assert np.allclose(out.reshape(3, -1).mean(1), 0, atol=1e-5) and np.allclose(out.reshape(3, -1).std(1), 1, atol=1e-4)


def test_letterbox_geometry_round_trip():
    geo = Geometry.fit((30, 60), 32)
    assert geo.resized == (16, 32) and geo.pad_before == (8, 0) and geo.size == (32, 32)
    image = torch.rand(1, 30, 60)
    model_in = geo.image_to_model(image)
    assert model_in.shape == (1, 32, 32) and torch.all(model_in[:, :8] == 0) and torch.all(model_in[:, 24:] == 0)
    mask = torch.zeros(30, 60, dtype=torch.long)
    mask[10:20, 20:40] = 2
    small = geo.mask_to_model(mask)
    assert small.dtype == torch.long and set(small.unique().tolist()) == {0, 2}
    # probabilities at model size map back to the original size; a blocky mask survives
    probs = torch.stack([(small != 2).float(), (small == 2).float()])
    back = geo.to_original(probs)
    assert back.shape == (2, 30, 60)
    assert (back.argmax(0) == (mask == 2).long()).float().mean() > 0.95
    assert geo.to_original(torch.rand(4, 2, 32, 32)).shape == (4, 2, 30, 60)
    stretch = Geometry.fit((30, 60), 32, "stretch")
    assert stretch.resized == (32, 32) and stretch.pad_before == (0, 0)
    crop = Geometry.fit((20, 70), 32, "crop")
    assert crop.size == (32, 70) and crop.resized == (20, 70)
    with pytest.raises(ValueError, match="resize"):
        Preprocess(resize="squash")


def test_native_resolution_scales_down_only_images_above_max_side():
    small = Geometry.fit((197, 233), 128, "crop", max_side=256)
    assert small.resized == (197, 233) and small.size == (197, 233)  # the demo's slices stay native
    big = Geometry.fit((512, 400), 128, "crop", max_side=256)
    assert big.resized == (256, 200) and big.size == (256, 200)
    thin = Geometry.fit((600, 90), 128, "crop", max_side=300)
    assert thin.resized == (300, 45) and thin.size == (300, 128) and thin.pad_before == (0, 41)
    image = torch.rand(1, 512, 400)
    assert big.image_to_model(image).shape == (1, 256, 200)
    mask = torch.zeros(512, 400, dtype=torch.long)
    mask[100:300, 50:250] = 1
    probs = torch.stack([(big.mask_to_model(mask) == 0).float(), (big.mask_to_model(mask) == 1).float()])
    back = big.to_original(probs)
    assert back.shape == (2, 512, 400) and (back.argmax(0) == mask).float().mean() > 0.99
    with pytest.raises(ValueError, match="max_side"):
        Preprocess(size=128, resize="crop", max_side=64)


def test_auto_resize_is_native_for_segmentation_and_letterbox_for_classification():
    config = {"resize": "auto", "max_side": 256, "image_size": 96}
    seg, cls = Preprocess.from_config(config, "segmentation"), Preprocess.from_config(config, "classification")
    assert (seg.resize, seg.max_side, seg.size) == ("crop", 256, 96)
    assert (cls.resize, cls.max_side) == ("letterbox", None)
    # 2D native-resolution inputs go through the network whole; volumes slide; letterboxed ones fit
    assert seg.window_size(2) is None and seg.window_size(3) == 64 and cls.window_size(2) is None
    # a crop model saved before max_side existed keeps predicting by sliding window
    assert Preprocess(size=96, resize="crop").window_size(2) == 96


# --- datasets over a project ------------------------------------------------------------------


def test_slice_datasets_share_volume_statistics_and_positions(tmp_path):
    project = make_seg_project(tmp_path, n=2, depth=5)
    tensors = SampleTensors(project, Preprocess(size=32))
    samples = project.samples()
    first = [s for s in samples if s.path == samples[0].path]
    assert len({tensors.stats(s) for s in first}) == 1  # one volume, one set of statistics
    data = UnlabeledDataset(first, tensors)
    positions = [float(data[i][1]) for i in range(len(data))]
    assert positions == pytest.approx([(s.slice_index + 1) / 5 for s in first])
    image, _ = data[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    labeled = LabeledDataset(project, first, tensors)
    x, y = labeled[2]
    assert y.shape == (32, 32) and y.dtype == torch.long and set(y.unique().tolist()) <= {0, 1}
    assert y.sum() > 0 and x[0][y == 1].mean() > x[0][y == 0].mean() + 1  # the mask sits on the bright square
    project.close()


def test_tensors_are_cached_across_epochs(tmp_path, monkeypatch):
    project = make_cls_project(tmp_path, n=6)
    calls = []
    original = project.load_pixels
    monkeypatch.setattr(project, "load_pixels", lambda s: (calls.append(s.id), original(s))[1])
    data = LabeledDataset(project, project.samples(), SampleTensors(project, Preprocess(size=32)))
    for _ in range(3):
        for i in range(len(data)):
            data[i]
    assert len(calls) == 6 * 2  # statistics + pixels once per image, never again
    x, y = data[0]
    assert x.shape == (1, 32, 32) and y.ndim == 0 and y.dtype == torch.long
    project.close()


def test_rgb_project_gives_three_channels_and_2d_positions_are_nan(tmp_path):
    project = make_cls_project(tmp_path, n=4, rgb=True)
    data = build_project_data(project, Preprocess(size=32))
    assert data.in_channels == 3 and data.spatial_dims == 2
    pool = UnlabeledDataset(project.samples(), data.tensors)
    image, pos = pool[0]
    assert image.shape == (3, 32, 32) and math.isnan(float(pos))
    project.close()


def test_build_project_data_respects_splits(tmp_path):
    project = make_seg_project(tmp_path, n=4, depth=4, label_fraction=0.5)
    data = build_project_data(project, Preprocess(size=32))
    by_id = {s.id: s for s in project.samples()}
    assert {by_id[i].split for i in data.labeled.ids} <= {"train"}
    assert {by_id[i].split for i in data.unlabeled.ids} <= {"train"}
    assert {by_id[i].split for i in data.val.ids} <= {"val"}
    assert not set(data.labeled.ids) & set(data.unlabeled.ids)
    assert all(by_id[i].split != "test" for i in data.labeled.ids + data.unlabeled.ids + data.val.ids)
    project.close()


def test_crop_mode_gives_native_resolution_windows(tmp_path):
    project = make_seg_project(tmp_path, n=2, depth=3, shape=(36, 50))
    data = build_project_data(project, Preprocess(size=32, resize="crop"))
    assert data.labeled.crop and not data.val.crop
    data.labeled = LabeledDataset(project, project.samples(), data.tensors, crop=True)
    x, y = data.labeled[0]
    assert x.shape == (1, 32, 32) and y.shape == (32, 32)
    full = data.tensors.image(data.labeled.samples[0])  # whole native image: what validation sees
    assert full.shape == (1, 36, 50)
    windows = {tuple(data.labeled[0][0].flatten()[:4].tolist()) for _ in range(6)}
    assert len(windows) > 1  # random windows
    project.close()


def test_foreground_crops_find_a_small_label_as_often_as_a_large_one():
    label = torch.zeros(200, 240, dtype=torch.long)
    label[20:180, 20:220] = 1          # a large structure
    label[150:153, 200:203] = 2        # 9 pixels: what a uniform 32 px crop rarely holds
    generator = torch.Generator().manual_seed(0)
    pixels: dict = {}
    windows = [label_window(label, 32, generator, 1.0, pixels) for _ in range(400)]
    assert all(label[w].shape == (32, 32) for w in windows)
    holds_small = np.mean([bool((label[w] == 2).any()) for w in windows])
    assert 0.4 < holds_small < 0.6  # the label is drawn uniformly among those present
    assert set(pixels) == {0, 1, 2} and len(pixels[2]) == 9  # each label's pixels found once, kept
    uniform = [label_window(label, 32, generator, 0.0) for _ in range(400)]
    assert np.mean([bool((label[w] == 2).any()) for w in uniform]) < 0.05
    # an empty mask, or one window as large as the image, still gives a valid window
    assert label_window(torch.zeros(40, 50, dtype=torch.long), 32, generator, 1.0) is not None
    assert label_window(label, 200, generator, 1.0)[0] == slice(0, 200)


def test_infinite_batches_are_full_shuffled_and_seeded():
    dataset = torch.utils.data.TensorDataset(torch.arange(5).float()[:, None], torch.arange(5))
    first = [b[1].tolist() for _, b in zip(range(4), InfiniteBatches(dataset, 4, seed=1))]
    again = [b[1].tolist() for _, b in zip(range(4), InfiniteBatches(dataset, 4, seed=1))]
    other = [b[1].tolist() for _, b in zip(range(4), InfiniteBatches(dataset, 4, seed=2))]
    assert first == again and first != other
    assert all(len(b) == 4 for b in first)
    flat = sum(first, [])
    assert sorted(flat[:5]) == [0, 1, 2, 3, 4]  # each permutation covers the dataset once
    with pytest.raises(ValueError, match="empty"):
        InfiniteBatches(torch.utils.data.TensorDataset(torch.zeros(0)), 2)
