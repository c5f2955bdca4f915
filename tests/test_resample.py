import numpy as np
import torch

from eneuronet_bids.resample import resample, resample_argmax


def test_axis_permutation_and_flip_are_exact():
    rng = np.random.default_rng(0)
    a = rng.random((5, 6, 7)).astype(np.float32)
    # output (i, j, k) reads input (k, 5 - j, i)
    m = np.array([[0, 0, 1, 0], [0, -1, 0, 5], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    out = resample(a, m, (7, 6, 5)).numpy()
    assert np.allclose(out, np.transpose(a[:, ::-1, :], (2, 1, 0)), atol=1e-5)


def test_translation_interpolates_and_pads_with_zero():
    a = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 3, 3), np.float32)
    m = np.eye(4)
    m[0, 3] = 0.5
    out = resample(a, m, (10, 3, 3)).numpy()
    assert np.allclose(out[:9, 1, 1], np.arange(9) + 0.5)
    assert out[9, 1, 1] < a[9, 1, 1]  # half of it comes from outside (zero)


def test_nearest_keeps_label_values():
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 5, (8, 8, 8)).astype(np.float32)
    m = np.diag([0.5, 0.5, 0.5, 1.0])
    out = resample(lab, m, (16, 16, 16), mode="nearest").numpy()
    assert set(np.unique(out)) <= set(range(5))


def test_slabwise_argmax_equals_full_resampling():
    rng = np.random.default_rng(2)
    probs = torch.from_numpy(rng.random((4, 10, 12, 14)).astype(np.float32))
    theta = 0.3
    m = np.eye(4)
    m[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    m[:3, 3] = [1.0, -2.0, 0.5]
    full = resample(probs, m, (20, 9, 11)).argmax(0).numpy()
    slabs = resample_argmax(probs.half(), m, (20, 9, 11), slab=3)
    agree = (full == slabs).mean()
    assert agree > 0.98  # float16 storage may flip near-ties


def test_argmax_shortcut_equals_resampling_every_class():
    # Regions of one likely class with noisy probabilities, like a parcellation: most output
    # voxels are decided by the two-channel bound, the rest by all channels.
    rng = np.random.default_rng(3)
    regions = np.kron(rng.integers(0, 6, size=(4, 4, 4)), np.ones((5, 5, 5), dtype=np.int64))
    logits = torch.nn.functional.one_hot(torch.from_numpy(regions), 6).permute(3, 0, 1, 2) * 4.0
    probs = (logits + torch.from_numpy(rng.normal(0, 1.0, logits.shape)).float()).softmax(0)
    theta = 0.2
    m = np.eye(4)
    m[1:3, 1:3] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    m[:3, 3] = [-1.3, 2.2, -0.6]  # some output voxels fall outside the input
    out = np.zeros((22, 18, 20, 6), dtype=np.uint8)
    every_class = resample_argmax(probs, m, (22, 18, 20), slab=5, probabilities_out=out)
    shortcut = resample_argmax(probs, m, (22, 18, 20), slab=5)
    assert (shortcut == every_class).mean() > 0.999
    assert (shortcut == 0).any() and len(np.unique(shortcut)) == 6
