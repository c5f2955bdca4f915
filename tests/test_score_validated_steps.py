"""Choosing a run's exported step on a second site: the bookkeeping around the scoring."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"
_spec = importlib.util.spec_from_file_location("score_validated_steps",
                                               SCRIPTS / "score_validated_steps.py")
select = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(select)


def test_validation_is_read_at_validated_steps_only(tmp_path):
    log = tmp_path / "training_log.csv"
    log.write_text("step,loss,lr,val_cortical,val_non-cortical,val_white-matter,val_all\n"
                   "1,1.0,1e-4,,,,\n2,0.9,1e-4,0.5,0.6,0.8,0.55\n3,0.8,1e-4,,,,\n"
                   "4,0.7,1e-4,0.6,0.6,0.9,0.61\n")
    assert select.validation_by_step(log) == {
        2: {"cortical": 0.5, "non-cortical": 0.6, "white-matter": 0.8, "all": 0.55},
        4: {"cortical": 0.6, "non-cortical": 0.6, "white-matter": 0.9, "all": 0.61}}


def test_the_candidate_weighs_both_sites():
    rows = [{"step": 250, "all": 0.60, "ixi": 0.35},   # best on the training site
            {"step": 500, "all": 0.58, "ixi": 0.40},   # best on both together
            {"step": 750, "all": 0.50, "ixi": 0.42}]   # best on IXI alone
    assert select.candidate(rows)["step"] == 500


def test_a_run_without_validated_exports_is_refused(tmp_path, monkeypatch):
    (tmp_path / "training_log.csv").write_text("step,loss,lr,val_all\n")
    monkeypatch.setattr(sys, "argv", ["score_validated_steps.py", str(tmp_path), str(tmp_path),
                                      "--work", str(tmp_path / "w"), "--ixi-participants",
                                      "IXI012", "--out", str(tmp_path / "out.tsv")])
    with pytest.raises(SystemExit, match="--keep-validated"):
        select.main()
    assert not (tmp_path / "out.tsv").exists()
