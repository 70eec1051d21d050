"""Training-time augmentation: each image is its naive mirror/translation, draws are reproducible."""
import numpy as np
import pytest
import torch

from lgn_fpga.data.augment import augment, augment_generator


def naive(img: np.ndarray, mirrored: bool, dy: int, dx: int) -> np.ndarray:
    """One image [C, H, W]: mirrored, then its pixel (y, x) taken from (y + dy, x + dx), 0 outside."""
    x = img[:, :, ::-1] if mirrored else img
    C, H, W = x.shape
    out = np.zeros_like(x)
    for y in range(H):
        for xx in range(W):
            sy, sx = y + dy, xx + dx
            if 0 <= sy < H and 0 <= sx < W:
                out[:, y, xx] = x[:, sy, sx]
    return out


@pytest.mark.parametrize("flip,shift", [(True, 0), (False, 2), (True, 3)])
def test_each_image_is_its_naive_transform(flip, shift):
    rng = np.random.default_rng(1)
    imgs = torch.from_numpy(rng.integers(0, 256, (40, 3, 7, 9), dtype=np.uint8))
    out = augment(imgs, flip, shift, augment_generator(5, 17)).numpy()
    # The same draws, in the order augment() makes them.
    g = augment_generator(5, 17)
    mirror = (torch.rand(40, generator=g) < 0.5).numpy() if flip else np.zeros(40, bool)
    dy, dx = torch.randint(-shift, shift + 1, (2, 40), generator=g).numpy() if shift else np.zeros((2, 40), int)
    for i in range(40):
        assert np.array_equal(out[i], naive(imgs[i].numpy(), mirror[i], dy[i], dx[i])), i
    if flip:
        assert 0 < mirror.sum() < 40            # both kinds occur
    if shift:
        assert len(set(zip(dy, dx))) > 5       # many offsets occur


def test_off_is_the_identity_and_draws_depend_on_seed_and_step():
    imgs = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    assert augment(imgs, False, 0, augment_generator(0, 0)) is imgs
    a = augment(imgs, True, 2, augment_generator(0, 3))
    assert torch.equal(a, augment(imgs, True, 2, augment_generator(0, 3)))
    assert not torch.equal(a, augment(imgs, True, 2, augment_generator(0, 4)))
    assert not torch.equal(a, augment(imgs, True, 2, augment_generator(1, 3)))
    assert a.dtype == torch.uint8 and a.shape == imgs.shape
