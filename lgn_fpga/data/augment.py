"""Training-time augmentation of uint8 images ``[N, C, H, W]``, before the thermometer encoding.

Two knobs, both config keys (docs/training.md "Augmentation"):

* ``flip``: each image is mirrored left-right with probability 1/2 (for natural images such as
  CIFAR-10; never for digits, whose mirror images are other glyphs);
* ``shift``: each image is translated by ``dy, dx`` drawn uniformly from ``-shift..shift`` pixels, the
  uncovered border filled with 0 (black: every thermometer bit 0).  The usual CIFAR-10 crop, without
  the crop's resampling: the image keeps its size.

The draws depend only on ``(seed, step)``: a resumed run sees the same images as an uninterrupted one,
and every process of a distributed run draws the same global batch before taking its slice.
Evaluation never augments.
"""
from __future__ import annotations

import torch

__all__ = ["augment", "augment_generator"]

_STREAM = 0x5EED_A11   # keeps this generator's seeds apart from the batch permutation's


def augment_generator(seed: int, step: int) -> torch.Generator:
    """The generator of ``step``'s augmentation draws (CPU; same on every process)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) ^ _STREAM)


def augment(images: torch.Tensor, flip: bool, shift: int, generator: torch.Generator) -> torch.Tensor:
    """``images`` (uint8 ``[B, C, H, W]``) mirrored and/or translated per image; unchanged when both are off."""
    if not flip and not shift:
        return images
    if images.dim() != 4:
        raise ValueError(f"augment needs images [B, C, H, W], not shape {tuple(images.shape)}")
    B, C, H, W = images.shape
    # Draw on the CPU in a fixed order (flips, then shifts) so that every device gets the same batch.
    mirror = torch.rand(B, generator=generator) < 0.5 if flip else None
    offsets = torch.randint(-shift, shift + 1, (2, B), generator=generator) if shift else None
    x = images
    if mirror is not None:
        x = torch.where(mirror.to(x.device)[:, None, None, None], x.flip(-1), x)
    if offsets is not None:
        s = int(shift)
        padded = torch.nn.functional.pad(x, (s, s, s, s))          # zeros around the image
        dy, dx = (offsets + s).to(x.device)                        # top-left corner of the window in `padded`
        rows = dy[:, None] + torch.arange(H, device=x.device)      # [B, H]
        cols = dx[:, None] + torch.arange(W, device=x.device)      # [B, W]
        b = torch.arange(B, device=x.device)[:, None, None, None]
        c = torch.arange(C, device=x.device)[None, :, None, None]
        x = padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]
    return x.contiguous()
