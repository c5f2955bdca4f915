"""The augmentation comparison's bookkeeping (the training itself is the train level's)."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"
_spec = importlib.util.spec_from_file_location(
    "compare_augmentation", SCRIPTS / "compare_augmentation.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)


def test_folds_hold_out_every_participant_once():
    ids = [f"{i:02d}" for i in range(1, 17)]
    assert compare.folds(ids, 4) == [ids[0:4], ids[4:8], ids[8:12], ids[12:16]]
    uneven = compare.folds(ids[:7], 3)
    assert [len(f) for f in uneven] == [3, 2, 2] and sum(uneven, []) == ids[:7]
    with pytest.raises(ValueError):
        compare.folds(ids[:3], 4)


def test_scores_come_from_the_last_step(tmp_path):
    log = tmp_path / "training_log.csv"
    header = "step,loss,lr,val_cortical,val_non-cortical,val_white-matter,val_all\n"
    log.write_text(header + "1,1.0,1e-4,0.9,0.9,0.9,0.9\n2,0.9,1e-4,0.1,0.2,0.3,0.15\n")
    assert compare.last_validation(log) == {"cortical": 0.1, "non-cortical": 0.2,
                                            "white-matter": 0.3, "all": 0.15}
    log.write_text(header + "1,1.0,1e-4,0.9,0.9,0.9,0.9\n2,0.9,1e-4,,,,\n")
    with pytest.raises(ValueError):  # an unfinished run is not scored by an earlier step
        compare.last_validation(log)


def test_init_weights_must_not_have_seen_the_held_out(tmp_path):
    weights = tmp_path / "eneuronet.pt"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="missing"):
        compare.untouched_by(weights, ["13"])
    card = {"training": {"train_participants": ["01", "02", "13"]}}
    weights.with_name("model_card.json").write_text(json.dumps(card))
    compare.untouched_by(weights, ["14", "sub-15"])
    with pytest.raises(ValueError, match="13"):
        compare.untouched_by(weights, ["sub-13", "14"])


def test_the_shipped_weights_never_saw_the_documented_held_out_group():
    shipped = Path(__file__).parents[1] / "eneuronet_bids" / "data" / "model" / "eneuronet.pt"
    compare.untouched_by(shipped, ["13", "14", "15", "16"])
    with pytest.raises(ValueError):
        compare.untouched_by(shipped, ["12"])


def test_ixi_score_is_read_back_from_a_finished_evaluation(tmp_path):
    (tmp_path / "ixi.tsv").write_text("# IXI vs DLMUSE, coarse structures\n"
                                      "participant\tmean_dice\nsub-002\t0.3\nmean\t0.3567\n")
    assert compare.ixi_dice(None, tmp_path) == 0.3567  # cached: nothing is run
    (tmp_path / "ixi.tsv").write_text("participant\tmean_dice\n")
    with pytest.raises(ValueError, match="no mean row"):
        compare.ixi_dice(None, tmp_path)


def test_scored_ixi_scans_are_never_registration_targets(shared, tmp_path):
    args = argparse.Namespace(
        data=shared, participants=["01", "02", "03"], steps=10, checkpoint_every=5,
        patch_size=32, lr=1e-4, device="cpu", nprocs=1, work=tmp_path, init_weights=None,
        pairs_per_subject=1, ixi=8)
    cmd = compare.train_command(args, "registration", ["03"], 0, tmp_path / "run")
    excluded = cmd[cmd.index("--unlabelled-exclude") + 1:]
    assert excluded == ["IXI012", "IXI093", "IXI163", "IXI253", "IXI354", "IXI483", "IXI598",
                        "IXI661"]  # the evenly spaced scans evaluate_generalisation scores
    assert "--unlabelled-exclude" not in compare.train_command(args, "elastic", ["03"], 0,
                                                                 tmp_path / "run")
    args.ixi = 0
    assert "--unlabelled-exclude" not in compare.train_command(args, "registration", ["03"],
                                                                 0, tmp_path / "run")
