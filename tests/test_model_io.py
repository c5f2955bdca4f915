import json

import numpy as np
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
    assert "- validation participants (never trained on): 13" in md
    assert "1. 317 steps at lr 0.0005\n2. 1200 steps at lr 0.0003\n" in md
    blob = torch.load(path, weights_only=True)
    assert blob["lineage"] == card["training"]["lineage"] == ["317 steps at lr 0.0005",
                                                             "1200 steps at lr 0.0003"]
    table = label_table()
    cortical = np.nanmean(dice[table.classes_in("cortical")])
    assert f"| cortical | {cortical:.3f} |" in md
    assert f"| {list(table)[3].name} | n/a |" in md
