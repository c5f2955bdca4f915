import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eneuronet_bids.augment import (Compose, RandomBiasField, RandomContrast, RandomGamma,
                                    RandomNoise)
from eneuronet_bids.train import Example, PatchSampler, TrainConfig, _lr_at, segmentation_loss


def test_loss_matches_one_hot_dice_plus_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 6, 6)
    target = torch.randint(0, 4, (2, 6, 6, 6))  # class 4 absent: not in the Dice mean
    p = logits.softmax(1)
    onehot = F.one_hot(target, 5).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    present = onehot.sum(dims) > 0
    dice = (2 * (p * onehot).sum(dims) + 1e-5) / (p.sum(dims) + onehot.sum(dims) + 1e-5)
    expected = 1 - dice[present].mean() + F.cross_entropy(logits, target)
    assert segmentation_loss(logits, target, 1.0).item() == pytest.approx(expected.item(), rel=1e-5)
    pure = segmentation_loss(logits, target, 0.0).item()
    assert pure == pytest.approx((1 - dice[present].mean()).item(), rel=1e-5)


def test_perfect_prediction_has_zero_dice_loss():
    target = torch.randint(0, 3, (1, 4, 4, 4))
    logits = 50 * F.one_hot(target, 3).permute(0, 4, 1, 2, 3).float()
    assert segmentation_loss(logits, target, 0.0).item() == pytest.approx(0.0, abs=1e-4)


def test_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(bids_dir=None, output_dir=None, labels_dir=None, steps=1000, lr=1e-3)
    lrs = [_lr_at(s, cfg) for s in range(1000)]
    assert lrs[0] < lrs[99] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(5e-5, rel=0.01)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))


def test_patches_have_the_right_size_and_mostly_foreground():
    rng = np.random.default_rng(0)
    classes = np.zeros((40, 40, 40), np.uint8)
    classes[30:36, 30:36, 30:36] = 7
    ex = Example("01", rng.random((40, 40, 40)).astype(np.float32), classes)
    sampler = PatchSampler([ex], 16, rng)
    hits = 0
    for _ in range(50):
        img, lab, start = sampler.sample()
        assert img.shape == lab.shape == (16, 16, 16)
        assert np.array_equal(lab, classes[tuple(slice(s, s + 16) for s in start)])
        hits += (lab == 7).any()
    assert hits >= 35


def test_augmentations_keep_shape_dtype_and_background():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 20, 20), np.float32)
    x[5:15, 5:15, 5:15] = rng.uniform(0.2, 1.0, (10, 10, 10))
    aug = Compose([RandomGamma(p=1), RandomContrast(p=1), RandomBiasField(p=1), RandomNoise(p=1)])
    y = aug(x, rng)
    assert y.shape == x.shape and y.dtype == np.float32
    assert (y[x == 0] == 0).all()
    assert not np.allclose(y, x)
