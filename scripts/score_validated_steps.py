#!/usr/bin/env python3
"""Choose a run's exported step on a second site: score every ``train --keep-validated`` export.

``train`` keeps the step with the best validation Dice on held-out Mindboggle subjects, i.e. on
the training site. Runs 8-11 showed that the step moves Dice on another site (IXI) as much as the
recipes differ, so this script scores each ``OUT/validated/step-N/`` export on IXI scans against
DLMUSE (coarse structures, ``evaluate_generalisation.py``) and joins that with the step's
validation Dice from ``OUT/training_log.csv``. The candidate is the step with the highest
``val_all + ixi``; use IXI scans that are neither registration targets nor test scans.

    python scripts/score_validated_steps.py TRAIN_OUT ../shared/data --work ../selection \\
        --ixi-participants IXI052 IXI105 IXI173 IXI256 IXI327 IXI451 IXI556 IXI614 \\
        --out docs/selection_run12.tsv

With ``--models M1.pt M2.pt ...`` instead of TRAIN_OUT, the candidates are those model files
(each named by its folder), and each one's validation Dice is the one its model card records
(``scripts/average_weights.py`` writes such cards for averaged weights).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
from evaluate_generalisation import ixi_scores

from eneuronet_bids import atomic

GROUPS = ("cortical", "non-cortical", "white-matter", "all")


def validation_by_step(log_csv: Path) -> dict[int, dict[str, float]]:
    """The validation Dice by structure group that the training log records, by step."""
    with log_csv.open() as f:
        return {int(r["step"]): {g: float(r[f"val_{g}"]) for g in GROUPS}
                for r in csv.DictReader(f) if r["val_all"]}


def candidate(rows: list[dict[str, float]]) -> dict[str, float]:
    """The step with the highest validation Dice (all structures) plus IXI Dice."""
    return max(rows, key=lambda r: r["all"] + r["ixi"])


def validation_from_card(weights: Path) -> dict[str, float]:
    """The validation Dice by structure group in the model card beside ``weights``."""
    card = weights.with_name("model_card.json")
    groups = (json.loads(card.read_text()).get("validation") or {}).get("groups") \
        if card.is_file() else None
    if not groups:
        raise SystemExit(f"{weights}: no model card with validation Dice beside it")
    return {g: float(groups[g]) for g in GROUPS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train_out", type=Path, nargs="?",
                   help="a train output folder with validated/ (or give --models)")
    p.add_argument("data", type=Path, help="the shared data folder (ixi/, templateflow/)")
    p.add_argument("--models", type=Path, nargs="+", metavar="MODEL",
                   help="score these model files instead, each with its model card")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--ixi-participants", nargs="+", required=True, metavar="LABEL")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if (args.train_out is None) == (args.models is None):
        p.error("give either a train output folder or --models")
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(args.data / "templateflow"))
    if args.models:
        # folder name, weights, validation Dice
        candidates = [(m.parent.name, m, validation_from_card(m)) for m in args.models]
        source, label = "models", "model"
    else:
        steps = sorted(args.train_out.glob("validated/step-*/eneuronet.pt"))
        if not steps:
            raise SystemExit(f"no validated exports under {args.train_out}/validated "
                             "(train with --keep-validated)")
        validation = validation_by_step(args.train_out / "training_log.csv")
        candidates = []
        for weights in steps:
            step = int(weights.parent.name.removeprefix("step-"))
            candidates.append((step, weights, validation[step]))
        source, label = f"{args.train_out.name}: validated steps", "step"
    chosen = [s.removeprefix("sub-") for s in args.ixi_participants]
    rows = []
    for name, weights, val in candidates:
        _, by_structure = ixi_scores(args.data, args.work / weights.parent.name, chosen,
                                     ["--model", str(weights)])
        ixi = float(np.nanmean(list(by_structure.values())))
        rows.append({label: name, **val, "ixi": ixi})
    lines = [f"# {source}; val_* = train's validation Dice, "
             "ixi = coarse Dice vs DLMUSE on " + " ".join(chosen),
             "\t".join([label, *(f"val_{g}" for g in GROUPS), "ixi"])]
    lines += ["\t".join([str(r[label]), *(f"{r[k]:.4f}" for k in (*GROUPS, "ixi"))])
              for r in rows]
    lines.append(f"# candidate: {label} {candidate(rows)[label]} (highest val_all + ixi)")
    atomic.write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
