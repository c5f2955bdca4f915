import pytest
import torch

import numpy as np

from eneuronet_bids.infer import network_box, predict_probabilities
from eneuronet_bids.model import (ENeuroNet, ModelConfig, StrideOneTransposedConv3d,
                                  count_conv_layers, count_parameters, model_input)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ENeuroNet(ModelConfig(n_classes=101)).eval()


def test_output_shape_matches_input(model):
    x = torch.rand(1, 4, 32, 48, 64)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (1, 101, 32, 48, 64)
    assert torch.isfinite(y).all()


def test_parameter_and_layer_counts(model):
    # 2,180,405 parameters for 101 classes with positional channels (docs/model.md)
    assert count_parameters(model) == 2_180_405
    assert count_parameters(ENeuroNet(ModelConfig(n_classes=101, positional=False))) == 2_179_109
    # stem 2 + encoder 13 blocks x 3 + decoder 13 blocks x 3 + head 2 = 82 convolutions
    assert count_conv_layers(model) == 82


def test_no_batch_norm_and_leaky_relu_03(model):
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.3}
    grouped = [m for m in model.modules()
               if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) and m.groups > 1]
    assert len(grouped) == 26 and all(m.groups == 8 for m in grouped)


def test_skips_are_summed_not_concatenated(model):
    # a concatenating decoder would need more input channels than the encoder stage produces
    assert model.dec2[0].branch[0].in_channels == model.enc2[-1].branch[-1].out_channels


def test_rejects_sizes_not_divisible_by_16(model):
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.zeros(1, 4, 24, 32, 32))


def test_model_input_adds_grid_coordinates_of_the_block():
    cfg = ModelConfig(n_classes=3)
    image = torch.ones((1, 4, 6, 8))
    x = model_input(image, cfg, grid_shape=(9, 6, 8), starts=[(4, 0, 0)])
    assert x.shape == (1, 4, 4, 6, 8) and x.is_contiguous(memory_format=torch.channels_last_3d)
    x = x[0]
    assert torch.equal(x[0], image[0])
    assert torch.allclose(x[1, :, 0, 0], torch.tensor([0.0, 0.25, 0.5, 0.75]))  # rows 4..7 of 9
    assert torch.allclose(x[2, 0, [0, -1], 0], torch.tensor([-1.0, 1.0]))
    assert torch.allclose(x[3, 0, 0, [0, -1]], torch.tensor([-1.0, 1.0]))
    two = model_input(torch.ones((2, 4, 6, 8)), cfg, (9, 6, 8), [(4, 0, 0), (0, 0, 0)])
    assert torch.equal(two[0], x) and float(two[1, 1, 0, 0, 0]) == -1.0  # each block its own
    assert model_input(image, ModelConfig(n_classes=3, positional=False), (4, 6, 8),
                       [(0, 0, 0)]).shape == (1, 1, 4, 6, 8)


def test_network_box_covers_the_brain_in_multiples_of_16():
    image = np.zeros((64, 80, 96), dtype=np.float32)
    image[5:30, 20:41, 70:90] = 1.0
    box = network_box(image, margin=4)
    for sl, lo, hi, n in zip(box, (5, 20, 70), (30, 41, 90), image.shape):
        assert (sl.stop - sl.start) % 16 == 0
        assert 0 <= sl.start <= lo - 4 or sl.start == 0
        assert min(hi + 4, n) <= sl.stop <= n
    assert network_box(np.zeros((32, 32, 32))) == (slice(0, 32),) * 3


def test_outside_the_network_box_is_certain_background(model):
    image = np.zeros((48, 48, 64), dtype=np.float32)
    image[20:30, 20:30, 20:30] = 0.5
    probs = predict_probabilities(model, image, torch.device("cpu"))
    box = network_box(image)
    assert probs.shape == (model.config.n_classes, 48, 48, 64)
    outside = torch.ones(image.shape, dtype=torch.bool)
    outside[box] = False
    assert outside.any()
    assert (probs[0][outside] == 1).all() and (probs[1:, outside] == 0).all()
    inside = probs[(slice(None), *box)].float().sum(0)
    assert torch.allclose(inside, torch.ones_like(inside), atol=0.05)


def test_only_the_region_is_classified(model):
    image = np.zeros((48, 48, 64), dtype=np.float32)
    image[18:32, 18:32, 20:34] = 0.5
    region = np.zeros(image.shape, dtype=bool)
    region[20:30, 22:28, 24:30] = True
    everything = predict_probabilities(model, image, torch.device("cpu"))
    restricted = predict_probabilities(model, image, torch.device("cpu"), region=region,
                                       chunk=100)
    assert torch.equal(restricted[:, region], everything[:, region])
    assert (restricted[0][~region] == 1).all() and (restricted[1:, ~region] == 0).all()


def test_test_time_flip_averages_the_mirrored_estimate(model):
    # A left-right symmetric image: the mirrored pass sees exactly the plain pass's input, so
    # its estimate at a voxel is the plain estimate at the mirror voxel, hemispheres swapped.
    n_classes = model.config.n_classes
    partner = np.arange(n_classes)
    partner[[1, 2]] = [2, 1]
    image = np.zeros((48, 48, 64), dtype=np.float32)
    image[12:24, 14:34, 20:40] = np.random.default_rng(0).random((12, 20, 20))
    image[24:36] = image[12:24][::-1]
    image = image + image[::-1]
    plain = predict_probabilities(model, image, torch.device("cpu")).float()
    flipped = predict_probabilities(model, image, torch.device("cpu"), mirror=partner).float()
    expected = (plain + plain.flip(1)[torch.from_numpy(partner)]) / 2
    assert torch.allclose(flipped, expected, atol=2e-3)
    assert not torch.allclose(flipped, plain, atol=2e-3)


def test_stride_one_transposed_convolution_equals_torch_transposed():
    torch.manual_seed(1)
    reference = torch.nn.ConvTranspose3d(16, 8, 3, padding=1, groups=4)
    fast = StrideOneTransposedConv3d(16, 8, 3, padding=1, groups=4)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(2, 16, 6, 7, 8)
    assert torch.allclose(fast(x), reference(x), atol=1e-5)
    # only the stride-1 case is a plain convolution
    with pytest.raises(ValueError, match="stride-1"):
        StrideOneTransposedConv3d(16, 8, 3, stride=2, padding=1, output_padding=1)
