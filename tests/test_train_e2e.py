"""The train level for real, small: two Mindboggle subjects, 32³ patches, a few steps;
registration-based augmentation with one IXI pair; resume equivalence."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eneuronet_bids.cli import EXIT_MODEL, EXIT_OK, EXIT_USAGE, main
from eneuronet_bids.labels import label_table
from eneuronet_bids.model_io import load_model, sha256, shipped_model

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


def _link_dataset(src: Path, dst: Path, subjects: list[str]) -> Path:
    dst.mkdir()
    (dst / "dataset_description.json").write_text((src / "dataset_description.json").read_text())
    for sub in subjects:
        (dst / f"sub-{sub}").symlink_to(src / f"sub-{sub}")
    return dst


@pytest.fixture(scope="module")
def data(shared, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    mb = shared / "mindboggle-oasis"
    return {
        "labelled": _link_dataset(mb, root / "labelled", ["01", "02"]),
        "labels": mb / "derivatives" / "mindboggle-manual",
        "unlabelled": _link_dataset(shared / "ixi", root / "ixi", ["IXI012"]),
        "work": root / "work",  # shared by the runs: preprocessing is cached by content
        "root": root,
    }


def _train(data, out: Path, *extra: str) -> int:
    return main([str(data["labelled"]), str(out), "train", "--labels", str(data["labels"]),
                 "--patch-size", "32", "-w", str(data["work"]), "--nprocs", "2", *extra])


def test_registration_augmented_run_exports_a_loadable_model(data):
    out = data["root"] / "reg"
    code = _train(data, out, "--steps", "3", "--augment", "registration", "--unlabelled",
                  str(data["unlabelled"]), "--registration-p", "0.5",
                  "--val-participants", "02", "--validate-every", "3")
    assert code == EXIT_OK
    warped = list((data["work"] / "registration_cache").glob("01_to_IXI012_*.npz"))
    assert len(warped) == 1
    with np.load(warped[0]) as z:
        classes, image = z["classes"], z["image"]
    # genericLabel keeps labels: integers of the table, and a plausible brain
    assert classes.dtype == np.uint8 and classes.max() < len(label_table())
    assert 0.9e6 < (classes > 0).sum() < 2.0e6  # mm³ on the 1 mm grid
    assert np.isfinite(image).all()
    model, info = load_model(out / "model" / "eneuronet.pt", torch.device("cpu"))
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["training"]["config"]["augment"] == "registration"
    assert card["validation"]["groups"]["white-matter"] >= 0
    rows = list(csv.DictReader((out / "training_log.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[-1]["val_all"] != ""
    assert not list(out.rglob(".*"))  # every atomic write renamed its temporary into place


def test_resume_continues_exactly(data):
    common = ("--steps", "4", "--augment", "elastic", "--val-participants", "99",
              "--checkpoint-every", "100", "--random-seed", "5",
              "--init-weights", str(shipped_model()))
    straight, halves = data["root"] / "straight", data["root"] / "halves"
    assert _train(data, straight, *common) == EXIT_OK
    assert _train(data, halves, *common, "--stop-after", "2") == EXIT_OK
    assert not (halves / "model").exists()
    assert _train(data, halves, *common, "--resume") == EXIT_OK
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(halves / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for name, value in a["model"].items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(value, b["model"][name]), name
    log_a = (straight / "training_log.csv").read_text()
    assert log_a == (halves / "training_log.csv").read_text()
    # the resumed run still knows which weights it started from
    lineages = [json.loads((out / "model" / "model_card.json").read_text())["training"]["lineage"]
                for out in (straight, halves)]
    assert lineages[0] == lineages[1]
    assert f"warm start from sha256 {sha256(shipped_model())[:12]}" in lineages[0][-1]


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="this CPU has no native bf16")
def test_cpu_bf16_trains_in_bf16_to_finite_weights(data):
    common = ("--steps", "3", "--augment", "elastic", "--val-participants", "99",
              "--random-seed", "6", "--init-weights", str(shipped_model()))
    fp32, bf16 = data["root"] / "fp32", data["root"] / "bf16"
    assert _train(data, fp32, *common) == EXIT_OK
    assert _train(data, bf16, *common, "--cpu-bf16") == EXIT_OK
    a = torch.load(fp32 / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(bf16 / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.isfinite(value).all() for value in b.values())
    assert any(not torch.equal(a[name], b[name]) for name in a)  # the precision did change
    card = json.loads((bf16 / "model" / "model_card.json").read_text())
    assert card["training"]["config"]["cpu_bf16"] is True


def test_keep_validated_exports_the_weights_of_every_validation(data):
    out = data["root"] / "keep_validated"
    assert _train(data, out, "--steps", "2", "--validate-every", "1", "--augment", "none",
                  "--val-participants", "02", "--keep-validated") == EXIT_OK
    assert sorted(d.name for d in (out / "validated").iterdir()) == ["step-000001", "step-000002"]
    for step in (1, 2):
        folder = out / "validated" / f"step-{step:06d}"
        load_model(folder / "eneuronet.pt", torch.device("cpu"))
        card = json.loads((folder / "model_card.json").read_text())
        assert card["training"]["best_step"] == step
        assert card["training"]["lineage"][-1].startswith(f"{step} steps, weights from step {step}")


def test_resume_from_a_checkpoint_without_lineage(data):
    """Checkpoints from before session 11 have no lineage; resuming one still exports."""
    out = data["root"] / "old_checkpoint"
    common = ("--steps", "2", "--augment", "none", "--val-participants", "99")
    assert _train(data, out, *common, "--stop-after", "1") == EXIT_OK
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    del state["inherited"], state["origin"]
    torch.save(state, out / "checkpoint.pt")
    assert _train(data, out, *common, "--resume") == EXIT_OK
    lineage = json.loads((out / "model" / "model_card.json").read_text())["training"]["lineage"]
    assert len(lineage) == 1 and "did not record its start" in lineage[0]


def test_lineage_carries_on_through_warm_starts(data):
    common = ("--steps", "1", "--augment", "none", "--val-participants", "99")
    first, second = data["root"] / "lineage1", data["root"] / "lineage2"
    assert _train(data, first, *common, "--random-seed", "7") == EXIT_OK
    model = first / "model" / "eneuronet.pt"
    assert _train(data, second, *common, "--random-seed", "8", "--init-weights",
                  str(model)) == EXIT_OK
    lineage = json.loads((second / "model" / "model_card.json").read_text())["training"]["lineage"]
    assert len(lineage) == 2
    assert "random initialisation" in lineage[0] and "seed 7" in lineage[0]
    assert f"warm start from sha256 {sha256(model)[:12]}" in lineage[1] and "seed 8" in lineage[1]
    assert "1. 1 steps, weights from step 1; random" in (second / "model" / "model_card.md").read_text()


def test_a_fresh_start_ignores_what_an_interrupted_run_left(data):
    """A run killed before its first checkpoint leaves log rows and maybe best.pt behind;
    --resume then has nothing to resume from, and the new run must neither append to that
    log nor export those weights."""
    common = ("--steps", "2", "--augment", "none", "--val-participants", "99",
              "--random-seed", "3")
    clean, rerun = data["root"] / "clean", data["root"] / "rerun"
    assert _train(data, clean, *common) == EXIT_OK
    rerun.mkdir()
    (rerun / "training_log.csv").write_text(
        (clean / "training_log.csv").read_text().splitlines()[0] + "\n1,9.0,1e-06,,,,\n")
    torch.save({"model": {}, "step": 1, "scores": None}, rerun / "best.pt")
    assert _train(data, rerun, *common, "--resume") == EXIT_OK
    assert (rerun / "training_log.csv").read_text() == (clean / "training_log.csv").read_text()
    load_model(rerun / "model" / "eneuronet.pt", torch.device("cpu"))


def _truncated(blob: dict, path: Path) -> None:
    torch.save(blob, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_label_table(blob: dict, path: Path) -> None:
    torch.save({**blob, "labels": blob["labels"][:-1]}, path)


def _other_network(blob: dict, path: Path) -> None:  # a checkpoint of a 50-class network
    state = {k: v[:50] if k.startswith("classifier") else v for k, v in blob["state_dict"].items()}
    torch.save({"model": state, "step": 10}, path)


@pytest.mark.parametrize("damage, message", [
    (_truncated, "is corrupt or not an E-NeuroNet model or checkpoint"),
    (_other_label_table, "was trained for another label table"),
    (_other_network, "does not fit this network (classifier.weight"),
])
def test_unusable_init_weights_exit_3_before_any_work(data, tmp_path, caplog, damage, message):
    weights = tmp_path / "init.pt"
    damage(torch.load(shipped_model(), weights_only=True), weights)
    out = tmp_path / "out"
    assert _train(data, out, "--steps", "2", "--init-weights", str(weights),
                  "-w", str(tmp_path / "work")) == EXIT_MODEL
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    assert not [f for f in (tmp_path / "work").rglob("*") if f.is_file()]  # nothing preprocessed
    assert not any(out.iterdir())


def test_registration_without_unlabelled_is_a_usage_error(data):
    assert _train(data, data["root"] / "bad", "--augment", "registration") == EXIT_USAGE


def test_excluding_an_unknown_unlabelled_participant_is_a_usage_error(data, caplog, tmp_path):
    code = _train(data, tmp_path / "out", "--augment", "registration",
                  "--unlabelled", str(data["unlabelled"]), "--unlabelled-exclude", "IXI999",
                  "--steps", "1", "--val-participants", "02", "-w", str(tmp_path / "work"))
    assert code == EXIT_USAGE
    assert any("IXI999" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert not [f for f in (tmp_path / "work").rglob("*") if f.is_file()]  # nothing preprocessed


def test_missing_templates_exit_2_before_any_work(data, tmp_path, caplog, missing_templates):
    code = _train(data, tmp_path / "out", "--steps", "1", "-w", str(tmp_path / "work"))
    assert code == EXIT_USAGE
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "TEMPLATEFLOW_HOME" in errors[0] and "\n" not in errors[0]
    assert not [f for f in (tmp_path / "work").rglob("*") if f.is_file()]  # nothing preprocessed


def test_two_process_ddp_on_cpu_with_gloo(data):
    """torchrun, two ranks, gloo: both step in lockstep, rank 0 alone logs and exports."""
    out = data["root"] / "ddp"
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO / "run.py"), str(data["labelled"]), str(out), "train",
           "--labels", str(data["labels"]), "--patch-size", "32", "-w", str(data["work"]),
           "--nprocs", "1", "--steps", "2", "--augment", "none", "--val-participants", "99"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((out / "training_log.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"]  # one log, not one per rank
    load_model(out / "model" / "eneuronet.pt", torch.device("cpu"))


def test_the_n4_setting_goes_into_the_model(data):
    out = data["root"] / "n4_brain"
    assert _train(data, out, "--steps", "1", "--augment", "none", "--val-participants", "99",
                  "--n4", "brain") == EXIT_OK
    model, _ = load_model(out / "model" / "eneuronet.pt", torch.device("cpu"))
    assert model.config.n4 == "brain"
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["model_config"]["n4"] == "brain" and "n4 brain" in card["training"]["lineage"][-1]
