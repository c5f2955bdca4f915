"""The augmentation comparison's bookkeeping (the training itself is the train level's)."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "compare_augmentation", Path(__file__).parents[1] / "scripts" / "compare_augmentation.py")
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
