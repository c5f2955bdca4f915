"""Training from a bundle of prepared arrays (scripts/train_bundle.py), as on a GPU machine
that has neither the datasets nor ITK."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from eneuronet_bids.model_io import load_model
from eneuronet_bids.train import Example, TrainingData

SCRIPT = Path(__file__).parents[1] / "scripts" / "train_bundle.py"
_spec = importlib.util.spec_from_file_location("train_bundle", SCRIPT)
bundle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bundle)

ARGV = ["bids", "out", "train", "--labels", "labels", "--patch-size", "32", "--dropout", "0"]


def _data() -> TrainingData:
    rng = np.random.default_rng(0)

    def example(name):
        image = np.zeros((48, 48, 48), np.float32)
        image[8:40, 8:40, 8:40] = rng.uniform(0.1, 1.6, (32, 32, 32))
        classes = np.where(image > 0, rng.integers(1, 5, image.shape), 0).astype(np.uint8)
        return Example(name, image, classes)

    return TrainingData([example("01"), example("02")], [], [example("01->IXI002")],
                        ["01", "02"], [])


def test_a_bundle_keeps_the_arrays_to_within_half_a_step(tmp_path):
    data = _data()
    bundle.save(tmp_path / "b.npz", data, ARGV)
    back, argv = bundle.load(tmp_path / "b.npz")
    assert argv == ARGV
    assert [e.participant for e in back.warped] == ["01->IXI002"] and back.val_examples == []
    assert back.train_participants == ["01", "02"]
    for a, b in zip(data.examples + data.warped, back.examples + back.warped):
        assert np.array_equal(a.classes, b.classes) and b.classes.dtype == np.uint8
        assert np.abs(a.image - b.image).max() <= 0.5 / bundle.STEP + 1e-7
        assert b.image.dtype == np.float32 and (b.image[a.image == 0] == 0).all()
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, then renamed


def test_training_from_a_bundle_exports_a_loadable_model(tmp_path):
    bundle.save(tmp_path / "b.npz", _data(), ARGV)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "train", str(tmp_path / "b.npz"),
                           str(out), "--", "--steps", "2", "--device", "cpu", "--nprocs", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model, _ = load_model(out / "model" / "eneuronet.pt", torch.device("cpu"))
    assert model.config.dropout == 0
    assert [line.split(",")[0] for line in
            (out / "training_log.csv").read_text().splitlines()] == ["step", "1", "2"]


def test_the_model_benchmark_times_and_scores_the_bundles_validation_images(tmp_path):
    data = _data()
    data.val_examples = [data.examples[0]]
    bundle.save(tmp_path / "b.npz", data, ARGV)
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT.with_name("benchmark_model.py")),
                           str(tmp_path / "b.npz"), "--device", "cpu", "--repeats", "1",
                           "--train-batch-sizes", "1", "--patch", "32", "--patches", "2",
                           "--loader-workers", "1", "--loader-batches", "8",
                           "--loader-batch-size", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [r["test_time_flip"] for r in result["inference"]] == [True, False]
    for row in result["inference"]:
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert 0 < row["network_pass_median_s"]
        assert 0 <= row["dice_all"] <= 1
    native = result["inference"][0]  # the way back to a native grid, with the flip only
    assert native["native_median_s"] > 0 and native["native_on_cpu_s"] > 0
    assert native["native_agreement"] == 1.0  # on the CPU both are the same computation
    assert "native_median_s" not in result["inference"][1]
    assert [(r["batch_size"], r["layout"], r["precision"]) for r in result["training_step"]] == [
        (1, "channels_last_3d", "fp32")]  # the train level's precision on a CPU
    assert result["patch_making"]["patches"] == 2 and result["patch_making"]["median_s"] > 0
    loader = result["loader"]  # the last 6 of 8 batches of two 32³ patches (float32, uint8)
    assert (loader["workers"], loader["batch_size"], loader["batches"]) == (1, 2, 6)
    assert loader["mb_per_batch"] == round((2 * 32**3 * 5 + 2 * 3 * 8) / 1e6, 1)
    assert loader["wall_s_per_batch"] > 0 and loader["main_cpu_s_per_batch"] >= 0


def test_the_model_benchmark_times_training_steps_in_the_precisions_asked_for_only(tmp_path):
    bundle.save(tmp_path / "b.npz", _data(), ARGV)
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT.with_name("benchmark_model.py")),
                           str(tmp_path / "b.npz"), "--device", "cpu", "--images", "0",
                           "--repeats", "1", "--train-batch-sizes", "1", "--patch", "32",
                           "--train-precision", "fp32", "bf16", "--patches", "0",
                           "--loader-batches", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["inference"] == [] and "patch_making" not in result and "loader" not in result
    rows = result["training_step"]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    for row in rows:
        assert 0 < row["min_s"] <= row["median_s"]
        assert row["steps"] == 4 and 0 <= row["nonfinite_grad_steps"] <= 4
