#!/usr/bin/env python3
"""The seed's claim at equal budget: no augmentation vs elastic vs registration + elastic.

Trains one model per (arm, fold, seed) with the ``train`` level, exactly as a user would, from
scratch and with the same steps, patch size, learning rate and schedule; only ``--augment``
differs. The labelled subjects are split into folds of consecutive participants; each fold is
held out once. Every model is scored by the training loop's validation Dice *at the last step*
(not the best step, which would select on the held-out subjects) by structure group, and the
arms are summarised as mean and standard deviation over folds and seeds.

Re-running continues: finished runs are read back, interrupted ones resume from their last
checkpoint (for machines that cap each job's time); runs are named by arm, fold and seed
only, so give each design (steps, held-out group, starting weights) its own ``--work``.
On a GPU machine:

    python scripts/compare_augmentation.py ../shared/data --work ../augcmp \\
        --steps 3000 --folds 4 --seeds 0 1 --out docs/augmentation_comparison.tsv

Where from-scratch runs are unaffordable, ``--init-weights`` starts every run from the same
trained weights (a fine-tuning comparison) and ``--held-out`` names the one group of
participants those weights never trained on, which is checked against their model card.
``--ixi N`` also scores each model on N IXI scans from another site against DLMUSE silver
labels (``evaluate_generalisation.py``: the participant level, coarse structures); those scans
are then kept out of the registration targets.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import statistics
import subprocess
import sys
from pathlib import Path

from evaluate_generalisation import evenly_spaced_ixi

REPO = Path(__file__).resolve().parents[1]
ARMS = ("none", "elastic", "registration")
GROUPS = ("cortical", "non-cortical", "white-matter", "all")

log = logging.getLogger("compare_augmentation")


def folds(participants: list[str], k: int) -> list[list[str]]:
    """``k`` folds of consecutive participants, as even as the count allows."""
    if not 2 <= k <= len(participants):
        raise ValueError(f"--folds must be between 2 and {len(participants)}")
    size, extra = divmod(len(participants), k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (i < extra)
        out.append(participants[start:end])
        start = end
    return out


def untouched_by(init_weights: Path, held_out: list[str]) -> None:
    """Refuse held-out participants that the initial weights were trained on (their model
    card, next to the weights, lists them)."""
    card = init_weights.with_name("model_card.json")
    if not card.is_file():
        raise ValueError(f"{card} missing: cannot check what {init_weights} was trained on")
    trained = set(json.loads(card.read_text())["training"]["train_participants"])
    if leaked := sorted(trained & {h.removeprefix("sub-") for h in held_out}):
        raise ValueError(f"--held-out {' '.join(leaked)}: {init_weights} was trained on them")


def last_validation(log_csv: Path) -> dict[str, float]:
    """The validation Dice of the last step of a finished run's training log."""
    rows = list(csv.DictReader(log_csv.open()))
    last = rows[-1]
    if not last.get("val_all"):
        raise ValueError(f"{log_csv}: the last step has no validation")
    return {g: float(last[f"val_{g}"]) for g in GROUPS}


def ixi_dice(args, run: Path) -> float:
    """Mean coarse-structure Dice of the run's model on ``args.ixi`` IXI scans; cached."""
    table = run / "ixi.tsv"
    if not table.exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate_generalisation.py"),
                        str(args.data), "--work", str(run / "ixi_eval"), "--ixi", str(args.ixi),
                        "--participants", "--model", str(run / "model" / "eneuronet.pt"),
                        "--out", str(table)], check=True)
    for line in table.read_text().splitlines():
        if line.startswith("mean\t"):
            return float(line.split("\t")[1])
    raise ValueError(f"{table}: no mean row")


def train_command(args, arm: str, held_out: list[str], seed: int, out: Path) -> list[str]:
    """The ``train`` command line of one run."""
    mindboggle = args.data / "mindboggle-oasis"
    cmd = [sys.executable, str(REPO / "run.py"), str(mindboggle), str(out), "train",
           "--labels", str(mindboggle / "derivatives" / "mindboggle-manual"),
           "--participant-label", *args.participants,
           "--val-participants", *held_out, "--augment", arm,
           "--steps", str(args.steps), "--validate-every", str(args.steps),
           "--checkpoint-every", str(args.checkpoint_every),
           "--patch-size", str(args.patch_size), "--lr", str(args.lr),
           "--random-seed", str(seed), "--device", args.device,
           "--nprocs", str(args.nprocs), "-w", str(args.work), "--resume"]
    if args.init_weights is not None:
        cmd += ["--init-weights", str(args.init_weights)]
    if arm == "registration":
        cmd += ["--unlabelled", str(args.data / "ixi"),
                "--pairs-per-subject", str(args.pairs_per_subject)]
        if args.ixi:  # a scan the models are scored on must not lend its shape to training
            cmd += ["--unlabelled-exclude", *evenly_spaced_ixi(args.data, args.ixi)]
    return cmd


def train_arm(args, arm: str, held_out: list[str], seed: int, out: Path) -> dict[str, float]:
    if not (out / "model" / "model_card.json").exists():
        cmd = train_command(args, arm, held_out, seed, out)
        log.info("%s", " ".join(cmd))
        subprocess.run(cmd, check=True)
    return last_validation(out / "training_log.csv")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the shared data folder (mindboggle-oasis, ixi)")
    p.add_argument("--work", type=Path, required=True,
                   help="runs and caches go here (shared by every run)")
    p.add_argument("--out", type=Path, required=True, help="TSV, one row per run")
    p.add_argument("--participants", nargs="+",
                   default=[f"{i:02d}" for i in range(1, 17)])
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--held-out", nargs="+", metavar="PARTICIPANT",
                   help="hold out only these participants (one fold) instead of --folds")
    p.add_argument("--init-weights", type=Path,
                   help="start every run from these weights (needs --held-out)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--patch-size", type=int, default=96)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--pairs-per-subject", type=int, default=2)
    p.add_argument("--ixi", type=int, default=0,
                   help="also score each model on this many IXI scans (another site)")
    p.add_argument("--device", default="auto")
    p.add_argument("--nprocs", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.work = args.work.resolve()
    if args.init_weights is not None:
        if not args.held_out:
            p.error("--init-weights needs --held-out")
        args.init_weights = args.init_weights.resolve()
        try:
            untouched_by(args.init_weights, args.held_out)
        except ValueError as e:
            p.error(str(e))

    rows = []
    groups = [args.held_out] if args.held_out else folds(args.participants, args.folds)
    for fold, held_out in enumerate(groups):
        for seed in args.seeds:
            for arm in args.arms:
                out = args.work / "runs" / f"{arm}_fold{fold}_seed{seed}"
                scores = train_arm(args, arm, held_out, seed, out)
                if args.ixi:
                    scores["ixi_coarse"] = ixi_dice(args, out)
                rows.append({"arm": arm, "fold": fold, "held_out": " ".join(held_out),
                             "seed": seed, "steps": args.steps,
                             "start": args.init_weights.name if args.init_weights else "scratch",
                             **scores})
                log.info("%s fold %d seed %d: %s", arm, fold, seed, scores)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, args.out)
    measures = [*GROUPS, *(["ixi_coarse"] if args.ixi else [])]
    print(f"| arm | runs | {' | '.join(measures)} |")
    print("|---|---|" + "---|" * len(measures))
    for arm in args.arms:
        mine = [r for r in rows if r["arm"] == arm]
        cells = []
        for g in measures:
            values = [r[g] for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {arm} | {len(mine)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
