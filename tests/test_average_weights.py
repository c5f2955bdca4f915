"""Averaging model files (scripts/average_weights.py) and scoring the average on a second site
(scripts/score_validated_steps.py --models)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eneuronet_bids.labels import label_table
from eneuronet_bids.model import ENeuroNet, ModelConfig
from eneuronet_bids.model_io import ModelError, export_model, load_model
from eneuronet_bids.train import Example, TrainingData

SCRIPTS = Path(__file__).parents[1] / "scripts"


def _module(name):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


average = _module("average_weights")
select = _module("score_validated_steps")


def _model_file(directory: Path, seed: int, lineage: list[str], **config) -> Path:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_classes=len(label_table()), **config)
    return export_model(directory, cfg, ENeuroNet(cfg).state_dict(), validation=None,
                        training={"lineage": lineage})


def test_the_average_is_the_mean_of_the_weights_and_keeps_the_shared_lineage(tmp_path):
    a = _model_file(tmp_path / "a", 0, ["run 1", "run 2"])
    b = _model_file(tmp_path / "b", 1, ["run 1", "run 2", "run 3"])
    config, state, inputs = average.average_state([a, b])
    wa = load_model(a, torch.device("cpu"))[0].state_dict()
    wb = load_model(b, torch.device("cpu"))[0].state_dict()
    for name, value in state.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, (wa[name] + wb[name]) / 2)
    lineage = average.shared_lineage(inputs)
    assert lineage[:2] == ["run 1", "run 2"]
    assert "2 models" in lineage[2] and lineage[2].endswith(": run 3)")


def test_models_of_another_configuration_are_refused(tmp_path):
    a = _model_file(tmp_path / "a", 0, [])
    b = _model_file(tmp_path / "b", 1, [], positional=False)
    with pytest.raises(ModelError, match="another model configuration"):
        average.average_state([a, b])


def test_the_script_exports_a_validated_loadable_average(tmp_path):
    rng = np.random.default_rng(0)
    image = np.zeros((48, 48, 48), np.float32)
    image[8:40, 8:40, 8:40] = rng.uniform(0.1, 1.6, (32, 32, 32))
    classes = np.where(image > 0, rng.integers(1, 5, image.shape), 0).astype(np.uint8)
    ex = Example("13", image, classes)
    _module("train_bundle").save(tmp_path / "b.npz", TrainingData([ex], [ex], [], ["01"], ["13"]),
                                 ["bids", "out", "train", "--labels", "labels"])
    a, b = _model_file(tmp_path / "a", 0, []), _model_file(tmp_path / "b", 1, [])
    proc = subprocess.run([sys.executable, str(SCRIPTS / "average_weights.py"),
                           str(tmp_path / "avg"), str(a), str(b), "--bundle",
                           str(tmp_path / "b.npz")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    load_model(tmp_path / "avg" / "eneuronet.pt", torch.device("cpu"))
    card = json.loads((tmp_path / "avg" / "model_card.json").read_text())
    assert [m["path"] for m in card["training"]["averaged"]] == [str(a), str(b)]
    assert 0 <= card["validation"]["groups"]["all"] <= 1
    assert "uniform average of the weights of 2 models" in (
        tmp_path / "avg" / "model_card.md").read_text()
    # what score_validated_steps --models reads
    assert select.validation_from_card(tmp_path / "avg" / "eneuronet.pt") == {
        g: card["validation"]["groups"][g] for g in select.GROUPS}


def test_a_broken_model_file_is_a_one_line_error(tmp_path):
    a = _model_file(tmp_path / "a", 0, [])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(a.read_bytes()[:1000])
    proc = subprocess.run([sys.executable, str(SCRIPTS / "average_weights.py"),
                           str(tmp_path / "avg"), str(a), str(broken), "--bundle",
                           str(a)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "corrupt" in proc.stderr and not (tmp_path / "avg").exists()


def test_scoring_models_needs_their_validation_on_the_card(tmp_path):
    a = _model_file(tmp_path / "a", 0, [])  # exported without validation
    with pytest.raises(SystemExit, match="no model card with validation"):
        select.validation_from_card(a)


def test_a_missing_bundle_is_refused_before_any_work(tmp_path):
    a, b = _model_file(tmp_path / "a", 0, []), _model_file(tmp_path / "b", 1, [])
    proc = subprocess.run([sys.executable, str(SCRIPTS / "average_weights.py"),
                           str(tmp_path / "avg"), str(a), str(b), "--bundle",
                           str(tmp_path / "none.npz")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2 and "none.npz: no such file" in proc.stderr
    assert not (tmp_path / "avg").exists()
