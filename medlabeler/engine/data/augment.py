"""Batched, per-sample random augmentation of image tensors (B, C, H, W), optionally with masks.

Every sample gets its own random parameters; all samples are transformed together with one
`affine_grid`/`grid_sample` (geometry) and a few vectorised tensor ops (intensity), so the same
code runs fast on CPU and GPU. Geometry (flips, rotation, zoom, translation, random resized
crop, smooth elastic displacement) is applied identically to a mask (nearest neighbour);
intensity changes never touch the mask. Colour jitter and grayscale act only on 3-channel
images. Random parameters come from `generator` (a CPU `torch.Generator`) when given, otherwise
from torch's global RNG, so results are reproducible either way.

Images are assumed normalised (z-scored); intensity magnitudes are in units of each image's
own standard deviation, so the presets work for CT, MR, X-ray and photographs alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentSpec:
    """Magnitudes and probabilities of each augmentation (0 disables it).

    hflip_p / vflip_p: probability of a left-right / up-down flip.
    rotate_deg: rotation uniform in [-rotate_deg, rotate_deg] (in pixel space).
    translate: shift uniform in [-translate, translate], as a fraction of the image size.
    zoom: isotropic scale factor range (>1 magnifies).
    crop_area: random resized crop, area fraction range (aspect 3/4..4/3); None = no crop.
    elastic: std of a smooth random displacement (fraction of the image size); elastic_p its
        probability per sample.
    brightness: additive shift uniform in +-brightness (image std units).
    contrast: multiplicative factor uniform in 1 +- contrast around the image mean.
    gamma: log-gamma uniform in +-gamma, on the image rescaled to [0, 1]; gamma_p probability.
    noise_std: gaussian noise std uniform in [0, noise_std] (image std units); noise_p probability.
    blur_p / blur_sigma: probability and sigma range (pixels) of a gaussian blur.
    cutout_p / cutout_size: probability and side range (fraction of size) of one filled rectangle.
    saturation: colour saturation factor in 1 +- saturation (3-channel images only).
    grayscale_p: probability of turning a 3-channel image to gray.
    """

    hflip_p: float = 0.0
    vflip_p: float = 0.0
    rotate_deg: float = 0.0
    translate: float = 0.0
    zoom: tuple[float, float] = (1.0, 1.0)
    crop_area: tuple[float, float] | None = None
    elastic: float = 0.0
    elastic_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    gamma_p: float = 0.0
    noise_std: float = 0.0
    noise_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    cutout_p: float = 0.0
    cutout_size: tuple[float, float] = (0.1, 0.3)
    saturation: float = 0.0
    grayscale_p: float = 0.0

    def blend(self, other: "AugmentSpec", t: float) -> "AugmentSpec":
        """Field-wise linear interpolation: t=0 gives self, t=1 gives `other` (a strength ramp)."""
        t = float(min(max(t, 0.0), 1.0))
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "crop_area":
                if a is None and b is None:
                    values[f.name] = None
                    continue
                a = a or (1.0, 1.0)
                b = b or (1.0, 1.0)
            if isinstance(a, tuple):
                values[f.name] = tuple((1 - t) * ai + t * bi for ai, bi in zip(a, b))
            else:
                values[f.name] = (1 - t) * a + t * b
        return replace(self, **values)


IDENTITY = AugmentSpec()

WEAK = AugmentSpec(
    hflip_p=0.5, rotate_deg=10.0, translate=0.0625, zoom=(0.95, 1.05), brightness=0.1, contrast=0.1
)

STRONG = AugmentSpec(
    hflip_p=0.5,
    rotate_deg=30.0,
    translate=0.125,
    zoom=(0.8, 1.25),
    elastic=0.02,
    elastic_p=0.5,
    brightness=0.3,
    contrast=0.3,
    gamma=0.4,
    gamma_p=0.5,
    noise_std=0.15,
    noise_p=0.5,
    blur_p=0.3,
    blur_sigma=(0.1, 1.5),
    cutout_p=0.5,
    cutout_size=(0.1, 0.35),
    saturation=0.4,
    grayscale_p=0.1,
)

# SimCLR-style views: random resized crop scale 0.2-1, flips, rotation, intensity.
CONTRASTIVE = AugmentSpec(
    hflip_p=0.5,
    rotate_deg=15.0,
    crop_area=(0.2, 1.0),
    brightness=0.4,
    contrast=0.4,
    gamma=0.3,
    gamma_p=0.3,
    noise_std=0.1,
    noise_p=0.3,
    blur_p=0.5,
    blur_sigma=(0.1, 1.5),
    saturation=0.4,
    grayscale_p=0.2,
)

# PCL views (Zeng et al. 2021): flips, rotation, scale 0.7-1.3, elastic, random crop (shift).
PCL_CONTRASTIVE = AugmentSpec(
    hflip_p=0.5,
    rotate_deg=15.0,
    translate=0.1,
    zoom=(0.7, 1.3),
    elastic=0.02,
    elastic_p=0.5,
    brightness=0.2,
    contrast=0.2,
    noise_std=0.05,
    noise_p=0.3,
)

# GraVIS views: random resized crop 0.2-1, rotation 10, colour jitter, grayscale 0.2, blur,
# flips, cutout.
GRAVIS_VIEWS = AugmentSpec(
    hflip_p=0.5,
    vflip_p=0.5,
    rotate_deg=10.0,
    crop_area=(0.2, 1.0),
    brightness=0.4,
    contrast=0.4,
    blur_p=0.5,
    blur_sigma=(0.1, 1.5),
    cutout_p=0.5,
    cutout_size=(0.1, 0.3),
    saturation=0.4,
    grayscale_p=0.2,
)

# Strong views for segmentation (French et al. 2020; UniMatch): the strong geometry, intensity
# kept near the weak view's and no cutout. Intensity is what tells tissues apart on MRI and CT,
# so heavy intensity jitter teaches invariance to the very signal; CutMix (`cutmix`) supplies
# the strong perturbation instead.
STRONG_SEGMENTATION = replace(
    STRONG, brightness=0.1, contrast=0.1, gamma=0.0, gamma_p=0.0, noise_std=0.05, blur_sigma=(0.1, 1.0),
    cutout_p=0.0, saturation=0.1, grayscale_p=0.0,
)

PRESETS: dict[str, AugmentSpec] = {
    "identity": IDENTITY,
    "weak": WEAK,
    "strong": STRONG,
    "strong-segmentation": STRONG_SEGMENTATION,
    "contrastive": CONTRASTIVE,
    "pcl": PCL_CONTRASTIVE,
    "gravis": GRAVIS_VIEWS,
}


def get_spec(spec: str | AugmentSpec) -> AugmentSpec:
    """A preset by name, or the spec itself."""
    if isinstance(spec, AugmentSpec):
        return spec
    try:
        return PRESETS[spec]
    except KeyError:
        raise ValueError(f"unknown augmentation preset {spec!r}; known: {sorted(PRESETS)}") from None


# --- random draws --------------------------------------------------------------------------
def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def _bernoulli(n: int, p: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) < p


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None or generator.device == x.device:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


# --- geometry ------------------------------------------------------------------------------
def _affine_params(spec: AugmentSpec, b: int, h: int, w: int, generator) -> Tensor:
    """(B, 2, 3) float64 matrices mapping output normalised coords to input normalised coords."""
    fx = torch.where(_bernoulli(b, spec.hflip_p, generator), -1.0, 1.0).double()
    fy = torch.where(_bernoulli(b, spec.vflip_p, generator), -1.0, 1.0).double()
    angle = _uniform(b, -spec.rotate_deg, spec.rotate_deg, generator) * (math.pi / 180.0)
    zoom = torch.exp(_uniform(b, math.log(spec.zoom[0]), math.log(spec.zoom[1]), generator))
    shift = _uniform(2 * b, -spec.translate, spec.translate, generator).view(b, 2) * 2.0
    if spec.crop_area is not None:
        area = _uniform(b, spec.crop_area[0], spec.crop_area[1], generator)
        log_r = _uniform(b, math.log(3 / 4), math.log(4 / 3), generator)
        ratio = torch.exp(log_r)
        cw = torch.sqrt(area * ratio).clamp(max=1.0)
        ch = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = _uniform(b, -1.0, 1.0, generator) * (1.0 - cw)
        cy = _uniform(b, -1.0, 1.0, generator) * (1.0 - ch)
    else:
        cw = ch = torch.ones(b, dtype=torch.float64)
        cx = cy = torch.zeros(b, dtype=torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation in pixel space expressed in normalised coordinates: S^-1 R S with S = diag(w, h)
    rot = torch.stack(
        [torch.stack([cos, -sin * h / w], -1), torch.stack([sin * w / h, cos], -1)], -2
    )  # (B, 2, 2)
    flip = torch.diag_embed(torch.stack([fx, fy], -1))
    crop = torch.diag_embed(torch.stack([cw, ch], -1))
    a = crop @ rot @ flip / zoom.view(b, 1, 1)
    t = torch.stack([cx, cy], -1) + shift
    return torch.cat([a, t.unsqueeze(-1)], dim=-1)


def _elastic_field(spec: AugmentSpec, b: int, h: int, w: int, generator) -> Tensor | None:
    if spec.elastic <= 0 or spec.elastic_p <= 0:
        return None
    on = _bernoulli(b, spec.elastic_p, generator).double().view(b, 1, 1, 1)
    coarse = torch.randn(b, 2, 5, 5, generator=generator, dtype=torch.float64) * (2.0 * spec.elastic) * on
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)  # (B, H, W, 2) in normalised units


def _is_identity_geometry(spec: AugmentSpec) -> bool:
    return (
        spec.hflip_p <= 0
        and spec.vflip_p <= 0
        and spec.rotate_deg == 0
        and spec.translate == 0
        and spec.zoom == (1.0, 1.0)
        and (spec.crop_area is None or tuple(spec.crop_area) == (1.0, 1.0))
        and (spec.elastic <= 0 or spec.elastic_p <= 0)
    )


def _geometry(x: Tensor, mask: Tensor | None, spec: AugmentSpec, generator) -> tuple[Tensor, Tensor | None]:
    b, _, h, w = x.shape
    theta = _affine_params(spec, b, h, w, generator)
    field = _elastic_field(spec, b, h, w, generator)
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    grid = F.affine_grid(theta.to(device=x.device, dtype=work), [b, 1, h, w], align_corners=False)
    if field is not None:
        grid = grid + field.to(device=x.device, dtype=work)
    out = F.grid_sample(x.to(work), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out = out.to(x.dtype)
    if mask is None:
        return out, None
    planes = mask.unsqueeze(1) if mask.dim() == 3 else mask  # (B, H, W) or (B, slices, H, W)
    m = F.grid_sample(planes.to(work), grid, mode="nearest", padding_mode="reflection", align_corners=False)
    return out, (m.squeeze(1) if mask.dim() == 3 else m).round().to(mask.dtype)


# --- intensity -----------------------------------------------------------------------------
def _gaussian_blur(x: Tensor, sigma: Tensor, max_sigma: float | None = None) -> Tensor:
    """Per-sample separable gaussian blur; sigma (B,) in pixels, 0 means no blur.

    The kernel radius follows `max_sigma` (the spec's bound) so shapes stay constant across
    calls (convolution backends cache per shape).
    """
    b, c, h, w = x.shape
    bound = float(sigma.max()) if max_sigma is None else max(float(max_sigma), float(sigma.max()))
    radius = max(1, int(math.ceil(3.0 * bound)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    s = sigma.clamp(min=1e-6).view(b, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.to(device=x.device, dtype=x.dtype).repeat_interleave(c, dim=0)  # (B*C, K)
    k = kernel.shape[1]
    flat = x.reshape(1, b * c, h, w)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, k), groups=b * c)
    flat = F.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(b * c, 1, k, 1), groups=b * c)
    return flat.view(b, c, h, w)


def _intensity(x: Tensor, spec: AugmentSpec, generator, colour: bool | None = None) -> Tensor:
    b, c, h, w = x.shape
    colour = c == 3 if colour is None else colour
    dev, dt = x.device, x.dtype

    def col(values: Tensor) -> Tensor:
        return values.to(device=dev, dtype=dt).view(b, 1, 1, 1)

    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6) if x[0].numel() > 1 else torch.ones_like(mean)
    if spec.contrast > 0:
        x = mean + (x - mean) * col(_uniform(b, 1 - spec.contrast, 1 + spec.contrast, generator))
    if spec.brightness > 0:
        x = x + col(_uniform(b, -spec.brightness, spec.brightness, generator)) * std
    if spec.gamma > 0 and spec.gamma_p > 0:
        on = _bernoulli(b, spec.gamma_p, generator)
        g = torch.where(on, torch.exp(_uniform(b, -spec.gamma, spec.gamma, generator)), 1.0)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        span = (hi - lo).clamp(min=1e-6)
        unit = ((x - lo) / span).clamp(0, 1)
        x = lo + unit.pow(col(g)) * span
    if colour and spec.saturation > 0:
        gray = x.mean(dim=1, keepdim=True)
        x = gray + (x - gray) * col(_uniform(b, 1 - spec.saturation, 1 + spec.saturation, generator))
    if colour and spec.grayscale_p > 0:
        on = col(_bernoulli(b, spec.grayscale_p, generator).double())
        gray = x.mean(dim=1, keepdim=True).expand_as(x)
        x = on * gray + (1 - on) * x
    if spec.blur_p > 0:
        on = _bernoulli(b, spec.blur_p, generator)
        sigma = torch.where(on, _uniform(b, spec.blur_sigma[0], spec.blur_sigma[1], generator), 0.0)
        if bool(on.any()):
            x = _gaussian_blur(x, sigma, spec.blur_sigma[1])
    if spec.noise_std > 0 and spec.noise_p > 0:
        on = _bernoulli(b, spec.noise_p, generator)
        level = torch.where(on, _uniform(b, 0.0, spec.noise_std, generator), 0.0)
        x = x + _randn_like(x, generator) * col(level) * std
    if spec.cutout_p > 0:
        on = _bernoulli(b, spec.cutout_p, generator)
        side_h = _uniform(b, spec.cutout_size[0], spec.cutout_size[1], generator) * h
        side_w = _uniform(b, spec.cutout_size[0], spec.cutout_size[1], generator) * w
        cy = _uniform(b, 0.0, float(h), generator)
        cx = _uniform(b, 0.0, float(w), generator)
        ys = torch.arange(h, dtype=torch.float64).view(1, h, 1) + 0.5
        xs = torch.arange(w, dtype=torch.float64).view(1, 1, w) + 0.5
        inside = (
            ((ys - cy.view(b, 1, 1)).abs() <= side_h.view(b, 1, 1) / 2)
            & ((xs - cx.view(b, 1, 1)).abs() <= side_w.view(b, 1, 1) / 2)
            & on.view(b, 1, 1)
        )
        x = torch.where(inside.unsqueeze(1).to(dev), mean.expand_as(x), x)
    return x


def augment(
    x: Tensor,
    spec: str | AugmentSpec,
    mask: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    geometry: bool = True,
    intensity: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """Augment a batch `x` (B, C, H, W) with per-sample random parameters drawn from `spec`.

    With `mask` ((B, H, W) integer labels) returns `(x, mask)` with the same geometry applied
    to both (mask resampled nearest neighbour; intensity ops leave it alone), else returns x.
    `geometry=False` / `intensity=False` switch either half off (e.g. two views that share
    one geometry for pixelwise consistency). Runs in the input's precision, outside autocast.
    """
    spec = get_spec(spec)
    if x.dim() == 5:
        return _augment_volumes(x, spec, mask, generator=generator, geometry=geometry, intensity=intensity)
    if x.dim() != 4:
        raise ValueError(f"augment expects a (B, C, H, W) or (B, C, D, H, W) batch, got shape {tuple(x.shape)}")
    if mask is not None and (mask.dim() != 3 or mask.shape[0] != x.shape[0] or mask.shape[1:] != x.shape[2:]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match images {tuple(x.shape)}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("augment draws its random parameters on the CPU: pass a CPU torch.Generator")
    if x.shape[0] == 0:
        return (x, mask) if mask is not None else x
    with torch.autocast(device_type=x.device.type, enabled=False):  # full precision under AMP
        if geometry and not _is_identity_geometry(spec):
            x, mask = _geometry(x, mask, spec, generator)
        if intensity:
            x = _intensity(x, spec, generator)
    return (x, mask) if mask is not None else x


def _augment_volumes(x: Tensor, spec: AugmentSpec, mask: Tensor | None, *, generator, geometry: bool,
                     intensity: bool) -> Tensor | tuple[Tensor, Tensor]:
    """Volumes (B, C, D, H, W): the same in-plane augmentation for every slice of a volume (the
    usual choice for scans whose slices are thicker than their pixels); no colour operations."""
    b, c, d, h, w = x.shape
    if mask is not None and (mask.dim() != 4 or mask.shape[0] != b or mask.shape[1:] != x.shape[2:]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match volumes {tuple(x.shape)}")
    flat = x.reshape(b, c * d, h, w)
    if b == 0:
        return (x, mask) if mask is not None else x
    with torch.autocast(device_type=x.device.type, enabled=False):
        if geometry and not _is_identity_geometry(spec):
            flat, mask = _geometry(flat, mask, spec, generator)
        if intensity:
            flat = _intensity(flat, spec, generator, colour=False)
    out = flat.reshape(b, c, d, h, w)
    return (out, mask) if mask is not None else out


def cutmix(
    x: Tensor,
    mask: Tensor,
    *,
    p: float = 1.0,
    area: tuple[float, float] = (0.25, 0.5),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """CutMix for dense targets (Yun et al. 2019; French et al., BMVC 2020, for semi-supervised
    segmentation): with probability `p`, each sample gets one box pasted from the next sample of
    the batch, image and mask alike, so every pixel keeps its own target. The box covers a
    fraction of the image uniform in `area`: in 2D with sides in a ratio of up to 3 (a side
    longer than the image is cut at its edge, which leaves at least a third of the image), in a
    volume the same fraction along each axis.

    x (B, C, *spatial) with mask (B, *spatial): images or volumes. Returns new tensors, or the
    inputs themselves when there is nothing to mix (p = 0, or a batch of one).
    """
    b, spatial = x.shape[0], tuple(x.shape[2:])
    if mask.shape != (b, *spatial):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match images {tuple(x.shape)}")
    if b < 2 or p <= 0:
        return x, mask
    n = len(spatial)
    on = _bernoulli(b, p, generator)
    frac = _uniform(b, area[0], area[1], generator)
    # per-axis stretch factors whose product is 1 (the box's aspect), then its sides
    if n == 2:
        log_r = _uniform(b, -math.log(3.0) / 2, math.log(3.0) / 2, generator).view(b, 1)
        log_r = torch.cat([log_r, -log_r], dim=1)
    else:  # a volume: stretching along three axes would cut boxes at the edges far below `area`
        log_r = torch.zeros(b, n, dtype=torch.float64)
    box = on.view(b, *([1] * n)).expand(b, *spatial).clone()
    for axis, size in enumerate(spatial):
        side = (frac ** (1.0 / n) * torch.exp(log_r[:, axis]) * size).round().clamp(1, size).long()
        start = (_uniform(b, 0.0, 1.0, generator) * (size - side + 1)).floor().long()
        index = torch.arange(size).view(1, size)
        inside = (index >= start.view(b, 1)) & (index < (start + side).view(b, 1))  # (B, size)
        shape = [b] + [1] * n
        shape[axis + 1] = size
        box &= inside.view(shape)
    box = box.to(x.device)
    partner = torch.roll(torch.arange(b, device=x.device), -1)
    mixed_x = torch.where(box.unsqueeze(1), x[partner], x)
    mixed_mask = torch.where(box, mask[partner], mask)
    return mixed_x, mixed_mask


def weak(x: Tensor, mask: Tensor | None = None, *, generator: torch.Generator | None = None):
    """Flip, small rotation/translation/zoom, mild intensity jitter."""
    return augment(x, WEAK, mask, generator=generator)


def strong(x: Tensor, mask: Tensor | None = None, *, generator: torch.Generator | None = None):
    """Weak plus larger affine, elastic, gamma/contrast, noise, blur, cutout, colour (RGB)."""
    return augment(x, STRONG, mask, generator=generator)


def contrastive(
    x: Tensor, *, generator: torch.Generator | None = None, spec: str | AugmentSpec = CONTRASTIVE
):
    """One contrastive view (random resized crop 0.2-1, flips, rotation, intensity, colour)."""
    return augment(x, spec, generator=generator)
