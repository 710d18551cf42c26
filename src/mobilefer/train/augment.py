"""Batch augmentation on tensors, suited to faces: random resized crop/shift, horizontal flip, small
rotation, brightness/contrast, random erasing, and optional mixup/CutMix.

All functions take a float batch in pixel units (0-255), shape (N, C, H, W), and a ``torch.Generator``
so a run is reproducible from its seed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mobilefer.train.config import AugmentConfig

__all__ = ["augment_batch", "mix_batch"]


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply the geometric and photometric augmentations of ``cfg`` to a (N, C, H, W) pixel batch."""
    n = x.shape[0]
    if n == 0:
        return x
    # Geometry: one affine warp per sample (zoom, rotation, shift, flip); borders replicate edge pixels.
    zoom = _uniform(n, cfg.scale[0], cfg.scale[1], gen)
    angle = _uniform(n, -cfg.rotate, cfg.rotate, gen) * (math.pi / 180.0)
    tx = _uniform(n, -cfg.shift, cfg.shift, gen) * 2.0
    ty = _uniform(n, -cfg.shift, cfg.shift, gen) * 2.0
    flip = torch.where(torch.rand(n, generator=gen) < cfg.hflip, -1.0, 1.0)
    if cfg.scale != (1.0, 1.0) or cfg.rotate > 0 or cfg.shift > 0 or cfg.hflip > 0:
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Photometric: contrast around the per-image mean, then brightness.
    if cfg.contrast > 0:
        c = _uniform(n, 1.0 - cfg.contrast, 1.0 + cfg.contrast, gen).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean
    if cfg.brightness > 0:
        x = x + _uniform(n, -cfg.brightness, cfg.brightness, gen).view(n, 1, 1, 1) * 255.0
    x = x.clamp(0.0, 255.0)
    # Random erasing: one rectangle (2-25% of the area, aspect 0.3-3.3) filled with uniform noise.
    if cfg.erasing > 0:
        h, w = x.shape[2], x.shape[3]
        chosen = (torch.rand(n, generator=gen) < cfg.erasing).nonzero().flatten().tolist()
        area = _uniform(n, 0.02, 0.25, gen)
        log_ratio = _uniform(n, math.log(0.3), math.log(3.3), gen)
        fy, fx = torch.rand(n, generator=gen), torch.rand(n, generator=gen)
        for i in chosen:
            ratio = math.exp(float(log_ratio[i]))
            eh = max(1, min(h, int(round(math.sqrt(float(area[i]) * h * w / ratio)))))
            ew = max(1, min(w, int(round(math.sqrt(float(area[i]) * h * w * ratio)))))
            top = int(float(fy[i]) * (h - eh + 1))
            left = int(float(fx[i]) * (w - ew + 1))
            x[i, :, top : top + eh, left : left + ew] = torch.rand((x.shape[1], eh, ew), generator=gen) * 255.0
    return x


def mix_batch(
    x: torch.Tensor, targets: torch.Tensor, num_classes: int, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix (chosen at random when both are on) with probability ``cfg.mix_prob``.

    Returns the (possibly mixed) batch and soft targets (N, num_classes).
    """
    soft = F.one_hot(targets, num_classes).to(x.dtype)
    if (cfg.mixup <= 0 and cfg.cutmix <= 0) or float(torch.rand(1, generator=gen)) >= cfg.mix_prob:
        return x, soft
    perm = torch.randperm(x.shape[0], generator=gen)
    use_cutmix = cfg.cutmix > 0 and (cfg.mixup <= 0 or float(torch.rand(1, generator=gen)) < 0.5)
    alpha = cfg.cutmix if use_cutmix else cfg.mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())  # uses the global RNG; seeded by the trainer
    if use_cutmix:
        h, w = x.shape[2], x.shape[3]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))
        y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
    else:
        x = x * lam + x[perm] * (1.0 - lam)
    return x, soft * lam + soft[perm] * (1.0 - lam)
