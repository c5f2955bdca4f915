"""Structure-volume norms for the QC z-scores: mean and SD of every label's volume (mm³) over
the training participants' manual label maps, on the model grid (1 mm³ voxels; the rigid
alignment keeps volumes).

    TEMPLATEFLOW_HOME=../shared/data/templateflow .venv/bin/python scripts/volume_norms.py \
        -w /tmp/eneuronet_train_work

writes eneuronet_bids/data/volume_norms.tsv (reuses the train level's preprocessing cache).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from eneuronet_bids.labels import label_table
from eneuronet_bids.model_io import shipped_model
from eneuronet_bids.train import TrainConfig, find_labelled, prepare_example

DATA = Path("../shared/data/mindboggle-oasis")


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-w", "--work-dir", type=Path, required=True)
    p.add_argument("--out", type=Path,
                   default=Path(__file__).parents[1] / "eneuronet_bids/data/volume_norms.tsv")
    args = p.parse_args()
    card = json.loads((shipped_model().parent / "model_card.json").read_text())
    train_ids = card["training"]["train_participants"]
    config = TrainConfig(bids_dir=DATA.resolve(), output_dir=args.work_dir,
                         labels_dir=(DATA / "derivatives/mindboggle-manual").resolve(),
                         work_dir=args.work_dir, participants=train_ids, val_participants=[])
    table = label_table()
    counts = np.array([np.bincount(prepare_example(*pair, config).classes.ravel(),
                                   minlength=len(table)) for pair in find_labelled(config)],
                      dtype=float)
    total = counts[:, 1:].sum(1, keepdims=True)
    volumes = np.concatenate([counts[:, 1:], total], axis=1)
    names = [lab.name for lab in table][1:] + ["Total-Brain"]
    indices = [str(lab.index) for lab in table][1:] + ["n/a"]
    rows = ["index\tname\tmean_mm3\tsd_mm3\tn"]
    rows += [f"{i}\t{n}\t{m:.1f}\t{s:.1f}\t{len(volumes)}" for i, n, m, s in
             zip(indices, names, volumes.mean(0), volumes.std(0, ddof=1))]
    args.out.write_text("\n".join(rows) + "\n")
    logging.info("wrote %s from %d participants", args.out, len(volumes))


if __name__ == "__main__":
    main()
