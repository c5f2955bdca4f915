"""The left-right asymmetry scripts: tables read, structures paired, the mirrored pass alone."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from eneuronet_bids.infer import predict_probabilities
from eneuronet_bids.model import ENeuroNet, ModelConfig


def _script(name: str):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


asym = _script("hemisphere_asymmetry")
mirror_pass = _script("mirror_pass_dice")


def test_pairs_left_with_right_and_skips_missing_values(tmp_path):
    table = tmp_path / "accuracy.tsv"
    table.write_text(
        "participant\tcortical\tnon-cortical\twhite-matter\tall\nmean\t0.5\t0.5\t0.5\t0.5\n\n"
        "structure\tmean_dice\n"
        "Left-Thalamus\t0.80\nRight-Thalamus\t0.90\n"
        "ctx-lh-insula\t0.70\nctx-rh-insula\t0.60\n"
        "Left-Caudate\tn/a\nRight-Caudate\t0.50\n"
        "Brain-Stem\t0.95\n")
    left, right = asym.hemisphere_pairs(asym.structure_dice(table))
    assert sorted(zip(left.tolist(), right.tolist())) == [(0.7, 0.6), (0.8, 0.9)]


def test_a_table_without_structures_is_refused(tmp_path):
    table = tmp_path / "accuracy.tsv"
    table.write_text("participant\tcortical\nmean\t0.5\n")
    with pytest.raises(SystemExit, match="no 'structure"):
        asym.structure_dice(table)


def test_the_mirrored_pass_alone_is_what_the_test_time_flip_averages():
    torch.manual_seed(0)
    model = ENeuroNet(ModelConfig(n_classes=5)).eval()
    partner = np.array([0, 2, 1, 4, 3])
    image = np.zeros((48, 48, 64), dtype=np.float32)  # deliberately not symmetric
    image[10:30, 14:34, 20:40] = np.random.default_rng(1).random((20, 20, 20))
    cpu = torch.device("cpu")
    plain = predict_probabilities(model, image, cpu).float()
    mirrored = mirror_pass.mirrored_pass(model, image, cpu, partner).float()
    flipped = predict_probabilities(model, image, cpu, mirror=partner).float()
    assert torch.allclose((plain + mirrored) / 2, flipped, atol=2e-3)
    assert not torch.allclose(mirrored, plain, atol=2e-3)
