import json

import numpy as np
import pytest
import torch

from eneuronet_bids.labels import label_table
from eneuronet_bids.metrics import summarise_dice
from eneuronet_bids.model import ENeuroNet, ModelConfig
from eneuronet_bids.model_io import export_model, load_model, sha256


def test_exported_model_loads_and_its_card_says_how_it_was_made(tmp_path):
    config = ModelConfig(n_classes=len(label_table()))
    torch.manual_seed(0)
    state = ENeuroNet(config).state_dict()
    dice = np.linspace(0.1, 0.9, len(label_table()))
    dice[3] = np.nan  # a structure absent from every held-out map
    path = export_model(tmp_path, config, state, validation=summarise_dice(dice), training={
        "steps": 1200, "best_step": 900, "train_participants": ["01", "02"],
        "val_participants": ["13"], "config": {"lr": 3e-4},
        "lineage": ["317 steps at lr 0.0005", "1200 steps at lr 0.0003"]})
    model, info = load_model(path, torch.device("cpu"))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["sha256"] == info["sha256"] == sha256(path)
    md = (tmp_path / "model_card.md").read_text()
    assert "- steps: 1200 (weights from step 900)" in md
    assert "- preprocessing: N4 quick" in md
    assert "- validation participants (never trained on): 13" in md
    assert "1. 317 steps at lr 0.0005\n2. 1200 steps at lr 0.0003\n" in md
    blob = torch.load(path, weights_only=True)
    assert blob["lineage"] == card["training"]["lineage"] == ["317 steps at lr 0.0005",
                                                             "1200 steps at lr 0.0003"]
    table = label_table()
    cortical = np.nanmean(dice[table.classes_in("cortical")])
    assert f"| cortical | {cortical:.3f} |" in md
    assert f"| {list(table)[3].name} | n/a |" in md


def test_the_participant_level_preprocesses_as_the_model_was_trained(tmp_path, monkeypatch):
    """A model trained with ``--n4 brain`` carries the setting in its file, the participant
    level hands it to preprocessing, and files from before the setting mean "quick"."""
    from eneuronet_bids import pipeline
    from eneuronet_bids.discovery import WorkUnit

    seen = []

    class Seen(Exception):
        pass

    def fake_preprocess(path, *, skull_stripped, workdir, n4):
        seen.append(n4)
        raise Seen

    monkeypatch.setattr(pipeline, "preprocess", fake_preprocess)
    config = ModelConfig(n_classes=len(label_table()), n4="brain")
    path = export_model(tmp_path / "m", config, ENeuroNet(config).state_dict(),
                        training={}, validation=None)
    blob = torch.load(path, weights_only=True)
    del blob["model_config"]["n4"]
    torch.save(blob, tmp_path / "old.pt")
    unit = WorkUnit(tmp_path / "sub-01_T1w.nii.gz", {"subject": "01"})
    for model in (path, tmp_path / "old.pt"):
        worker = pipeline._Worker(pipeline.ParticipantConfig(
            bids_dir=tmp_path, output_dir=tmp_path / "out", work_dir=tmp_path / "work",
            model=model))
        with pytest.raises(Seen):
            worker.process(unit)
    assert seen == ["brain", "quick"]
