"""Augmentation on whole batches on the training device: a random affine transform and an elastic distortion
composed into one sampling grid (so one `grid_sample` moves every pixel once), then optionally random stroke
thickening or thinning and blur."""

import functools
import math

import torch
import torch.nn.functional as F

from digits.training.recipe import Recipe


@functools.cache
def _grid_basis(device: torch.device) -> torch.Tensor:
    """784×19: each pixel's homogeneous coordinates (x, y, 1), then its bicubic weights on a 4×4 field.

    A batch's sampling grid is then one matrix product with its affine and elastic parameters; F.affine_grid
    and F.interpolate on such small tensors cost several times more on a CPU.
    """
    c = (torch.arange(28, device=device, dtype=torch.float32) * 2 + 1) / 28 - 1  # pixel centres, align_corners=False
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    coords = torch.stack([xs.flatten(), ys.flatten(), torch.ones(784, device=device)], 1)
    field = F.interpolate(
        torch.eye(16, device=device).view(16, 1, 4, 4), size=(28, 28), mode="bicubic", align_corners=True
    ).view(16, 784)
    return torch.cat([coords, field.T], 1)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey-level dilation as two separable maxima; F.max_pool2d is over 10x slower on one channel on a CPU."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def augment(x: torch.Tensor, g: torch.Generator, recipe: Recipe) -> torch.Tensor:
    """Random rotation, scale, shear, shift, elastic warp and stroke width, for a batch (B×1×28×28 in [0,1])."""
    b, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, device=dev, generator=g) * (hi - lo) + lo

    a = recipe.affine
    angle = uniform(-12 * a, 12 * a) * math.pi / 180
    shear = uniform(-0.25 * a, 0.25 * a)
    sx, sy = uniform(1 - 0.15 * a, 1 + 0.15 * a), uniform(1 - 0.15 * a, 1 + 0.15 * a)
    tx, ty = uniform(-0.15 * a, 0.15 * a), uniform(-0.15 * a, 0.15 * a)  # grid units: 1.0 is half the image, so ±2 px
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [  # B×3×2: maps an output pixel's (x, y, 1) to where it samples the input
            torch.stack([sx * cos, sy * sin], 1),
            torch.stack([sx * (shear * cos - sin), sy * (shear * sin + cos)], 1),
            torch.stack([tx, ty], 1),
        ],
        1,
    )
    # The elastic part: a smooth random field from 4x4 control points, like Simard's Gaussian-smoothed noise.
    coarse = torch.randn(b, 16, 2, device=dev, generator=g) * (recipe.elastic * 2 / 28)
    grid = torch.einsum("pk,bkc->bpc", _grid_basis(dev), torch.cat([theta, coarse], 1))
    x = F.grid_sample(x, grid.view(b, 28, 28, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
    if recipe.stroke > 0:
        # People's pens are thicker or thinner than MNIST's: blend towards a 3x3 dilation or erosion.
        amount = (torch.rand(b, 1, 1, 1, device=dev, generator=g) * 2 - 1) * recipe.stroke
        thick, thin = dilate(x), -dilate(-x)
        x = x + amount.clamp(min=0) * (thick - x) + (-amount).clamp(min=0) * (thin - x)
    if recipe.blur > 0:
        x = blur(x, torch.rand(b, device=dev, generator=g) * recipe.blur)
    return x


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of each image (B×1×28×28) by its own sigma in pixels, as two separable 5-tap passes:
    an out-of-focus photo or a soft pen. Shifted sums, because conv2d takes one kernel for the whole batch."""
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    w = torch.exp(-(taps**2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    w = (w / w.sum(1, keepdim=True)).view(-1, 1, 5, 1, 1)
    p = F.pad(x, (2, 2, 2, 2))
    rows = torch.stack([w[:, :, i] * p[:, :, :, i : i + 28] for i in range(5)]).sum(0)
    return torch.stack([w[:, :, i] * rows[:, :, i : i + 28, :] for i in range(5)]).sum(0)
