"""Batched augmentation: shapes, determinism, masks follow the geometry, colour only for RGB."""

import pytest
import torch

from medlabeler.engine.data import augment as A


def squares(n=6, size=24):
    mask = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        mask[i, 4 + i : 12 + i, 6 : 14 + i] = 1
        mask[i, 16:20, 2 + i : 6 + i] = 2
    return mask.float().unsqueeze(1), mask


@pytest.mark.parametrize("preset", sorted(A.PRESETS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_preset_keeps_shapes_and_is_reproducible(preset, channels):
    x = torch.randn(5, channels, 20, 28)
    mask = torch.randint(0, 3, (5, 20, 28))
    out1, m1 = A.augment(x, preset, mask, generator=torch.Generator().manual_seed(1))
    out2, m2 = A.augment(x, preset, mask, generator=torch.Generator().manual_seed(1))
    assert out1.shape == x.shape and m1.shape == mask.shape and m1.dtype == mask.dtype
    assert torch.equal(out1, out2) and torch.equal(m1, m2)
    assert torch.isfinite(out1).all()
    assert set(m1.unique().tolist()) <= {0, 1, 2}
    if preset != "identity":
        out3 = A.augment(x, preset, generator=torch.Generator().manual_seed(2))
        assert not torch.equal(out1, out3)


def test_global_seed_makes_runs_reproducible():
    x = torch.randn(4, 1, 16, 16)
    torch.manual_seed(5)
    a = A.strong(x)
    torch.manual_seed(5)
    assert torch.equal(a, A.strong(x))


def test_identity_spec_returns_the_input():
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(A.augment(x, A.IDENTITY), x)


def test_flips_are_exact_and_masks_follow_them():
    image, mask = squares()
    spec = A.AugmentSpec(hflip_p=0.5, vflip_p=0.5)
    out, out_mask = A.augment(image, spec, mask, generator=torch.Generator().manual_seed(0))
    flipped = 0
    for i in range(image.shape[0]):
        candidates = [mask[i], mask[i].flip(-1), mask[i].flip(-2), mask[i].flip(-1).flip(-2)]
        hits = [k for k, c in enumerate(candidates) if torch.equal(out_mask[i], c)]
        assert hits, "mask is not a flip of the input"
        assert torch.allclose(out[i, 0], candidates[hits[0]].float(), atol=1e-5)
        flipped += hits[0] != 0
    assert flipped > 0


@pytest.mark.parametrize("preset", ["weak", "strong", "pcl", "contrastive"])
def test_masks_get_the_same_geometry_as_images(preset):
    image, mask = squares(8, 32)
    spec = A.get_spec(preset)
    out, out_mask = A.augment(image, spec, mask, generator=torch.Generator().manual_seed(3), intensity=False)
    agreement = (out.squeeze(1).round().long() == out_mask).float().mean()
    assert agreement > 0.93  # only interpolated edge pixels may disagree
    assert not torch.equal(out_mask, mask)


def test_rotation_by_90_degrees_in_pixel_space_on_a_non_square_image():
    # a horizontal bar in a 16x32 image turned by ~90 degrees becomes (mostly) vertical
    mask = torch.zeros(1, 16, 32, dtype=torch.long)
    mask[0, 7:9, 8:24] = 1
    spec = A.AugmentSpec(rotate_deg=90.0)
    # rotate_deg is a range; find a seed that draws close to +-90 degrees
    for seed in range(500):
        theta = A._affine_params(spec, 1, 16, 32, torch.Generator().manual_seed(seed))
        if abs(float(theta[0, 0, 0])) < 0.03:  # cos(angle) ~ 0
            break
    else:
        pytest.fail("no seed drew a right angle")
    _, out = A.augment(mask.float().unsqueeze(1), spec, mask, generator=torch.Generator().manual_seed(seed))
    rows = out[0].any(dim=1).sum()
    cols = out[0].any(dim=0).sum()
    assert rows >= 12 and cols <= 4


def test_intensity_changes_leave_masks_alone():
    image, mask = squares()
    spec = A.AugmentSpec(
        brightness=0.5,
        contrast=0.5,
        gamma=0.5,
        gamma_p=1.0,
        noise_std=0.3,
        noise_p=1.0,
        blur_p=1.0,
        cutout_p=1.0,
    )
    out, out_mask = A.augment(image, spec, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out_mask, mask) and not torch.allclose(out, image)


def test_colour_only_touches_rgb_images():
    spec = A.AugmentSpec(grayscale_p=1.0)
    rgb = torch.randn(4, 3, 8, 8)
    gray = A.augment(rgb, spec)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    single = torch.randn(4, 1, 8, 8)
    assert torch.equal(A.augment(single, A.AugmentSpec(grayscale_p=1.0, saturation=0.9)), single)


def test_each_sample_gets_its_own_parameters():
    x = torch.randn(1, 1, 16, 16).repeat(6, 1, 1, 1)
    out = A.strong(x, generator=torch.Generator().manual_seed(0))
    distinct = {tuple(out[i].flatten()[:20].tolist()) for i in range(6)}
    assert len(distinct) == 6


def test_blur_smooths_and_keeps_the_mean():
    x = torch.randn(3, 2, 16, 16)
    blurred = A._gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(blurred[0], x[0], atol=1e-6)
    assert blurred[2].std() < blurred[1].std() < x[1].std()


def test_cutout_fills_a_rectangle_with_the_image_mean():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    out = A.augment(
        x, A.AugmentSpec(cutout_p=1.0, cutout_size=(0.5, 0.5)), generator=torch.Generator().manual_seed(0)
    )
    changed = out != x
    assert 9 <= int(changed.sum()) <= 25
    assert torch.allclose(out[changed], torch.full_like(out[changed], float(x.mean())))


def test_blend_interpolates_specs_for_strength_ramps():
    half = A.WEAK.blend(A.STRONG, 0.5)
    assert half.rotate_deg == pytest.approx((A.WEAK.rotate_deg + A.STRONG.rotate_deg) / 2)
    assert A.WEAK.blend(A.CONTRASTIVE, 0.0).crop_area == (1.0, 1.0)
    assert A.WEAK.blend(A.CONTRASTIVE, 1.0) == A.CONTRASTIVE


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        A.augment(torch.randn(2, 8, 8), "weak")
    with pytest.raises(ValueError):
        A.augment(torch.randn(2, 1, 8, 8), "weak", torch.zeros(3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="preset"):
        A.augment(torch.randn(2, 1, 8, 8), "medium")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cpu_generator():
    x = torch.randn(4, 3, 16, 16, device="cuda")
    mask = torch.randint(0, 2, (4, 16, 16), device="cuda")
    out, m = A.augment(x, "strong", mask, generator=torch.Generator().manual_seed(0))
    assert out.device.type == "cuda" and m.device.type == "cuda"
    cpu, cpu_m = A.augment(x.cpu(), "strong", mask.cpu(), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.cpu(), cpu, atol=1e-4) and torch.equal(m.cpu(), cpu_m)


def test_autocast_does_not_change_the_augmented_dtype():
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = A.strong(x, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32


def test_volumes_get_one_in_plane_geometry_for_all_their_slices():
    """(B, C, D, H, W): every slice of a volume moves the same way, and its mask with it."""
    import torch

    from medlabeler.engine.data.augment import augment

    base = torch.zeros(2, 1, 1, 24, 24)
    base[:, :, :, 6:12, 4:16] = 1.0
    volume = base.expand(2, 1, 5, 24, 24).clone()
    mask = volume[:, 0].round().long()
    out, moved = augment(volume, "strong", mask, generator=torch.Generator().manual_seed(3), intensity=False)
    assert out.shape == volume.shape and moved.shape == mask.shape
    for k in range(1, 5):
        assert torch.allclose(out[:, :, k], out[:, :, 0]) and torch.equal(moved[:, k], moved[:, 0])
    assert (moved[:, 0] != (out[:, 0, 0] > 0.5).long()).float().mean() < 0.05  # mask follows the image
    assert not torch.equal(moved, mask)  # it did move


def test_cutmix_pastes_one_box_of_the_next_sample_into_image_and_mask_alike():
    b, h, w = 4, 20, 30
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 2, h, w).clone()
    mask = torch.arange(b).view(b, 1, 1).expand(b, h, w).clone()
    mixed_x, mixed_mask = A.cutmix(x, mask, p=1.0, area=(0.25, 0.5), generator=torch.Generator().manual_seed(0))
    for i in range(b):
        pasted = mixed_mask[i] != i
        assert torch.equal(mixed_mask[i][pasted], torch.full_like(mixed_mask[i][pasted], (i + 1) % b))
        # the image follows the mask pixel for pixel, in every channel
        assert torch.equal(mixed_x[i, :, :, :], mixed_mask[i].float().expand(2, h, w))
        rows, cols = pasted.nonzero(as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(box) == int(pasted.sum())  # one rectangle
        assert 0.2 * h * w <= int(pasted.sum()) <= 0.55 * h * w
    assert torch.equal(x[:, 0, 0, 0], torch.arange(b, dtype=torch.float32))  # inputs untouched


def test_cutmix_off_or_on_a_single_sample_returns_the_batch():
    x, mask = squares(3)
    assert A.cutmix(x, mask, p=0.0)[0] is x
    one_x, one_mask = A.cutmix(x[:1], mask[:1], p=1.0)
    assert torch.equal(one_x, x[:1]) and torch.equal(one_mask, mask[:1])


def test_cutmix_mixes_volumes_with_one_box_each():
    b, d, h, w = 3, 8, 12, 16
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, 1, d, h, w).clone()
    mask = torch.arange(b).view(b, 1, 1, 1).expand(b, d, h, w).clone()
    for seed in range(5):
        mixed_x, mixed_mask = A.cutmix(x, mask, area=(0.25, 0.5), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(mixed_x[:, 0], mixed_mask.float())
        for i in range(b):
            pasted = (mixed_mask[i] != i).nonzero()
            extent = (pasted.max(0).values - pasted.min(0).values + 1).prod()
            assert int(extent) == len(pasted)  # one box
            assert 0.15 * d * h * w < len(pasted) < 0.65 * d * h * w  # its area, up to rounding the sides
    with pytest.raises(ValueError, match="does not match"):
        A.cutmix(x, mask[:, 0])
