#!/usr/bin/env python3
"""Accuracy of a participant-level run against Mindboggle's manual labels, in native space.

Runs nothing itself: point it at the derivatives a participant run wrote for held-out subjects,
e.g.

    ./run.py ../shared/data/mindboggle-oasis ../eval/derivatives participant \
        --participant-label 13 14 15 16 -w ../eval/work
    python scripts/evaluate_mindboggle.py ../shared/data/mindboggle-oasis ../eval/derivatives \
        --participants 13 14 15 16 --out docs/accuracy_mindboggle.tsv

The reference is the manual DKT31aseg map with the label table's training conventions
(poles merged, white matter derived), exactly what the model was trained to produce.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from eneuronet_bids import outputs
from eneuronet_bids.discovery import WorkUnit
from eneuronet_bids.labels import label_table, training_labels
from eneuronet_bids.metrics import dice_per_class, summarise_dice
from eneuronet_bids.preprocess import mask_skull_stripped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mindboggle_dir", type=Path)
    p.add_argument("derivatives", type=Path)
    p.add_argument("--participants", nargs="+", required=True)
    p.add_argument("--labels-desc", default="DKT31aseg")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    table = label_table()
    per_subject = []
    lines = ["participant\tcortical\tnon-cortical\twhite-matter\tall"]
    for sub in args.participants:
        t1w = args.mindboggle_dir / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
        manual = (args.mindboggle_dir / "derivatives" / "mindboggle-manual" / f"sub-{sub}"
                  / "anat" / f"sub-{sub}_desc-{args.labels_desc}_dseg.nii.gz")
        paths = outputs.output_paths(args.derivatives, WorkUnit(t1w, {"subject": sub}))
        brain = mask_skull_stripped(np.asarray(nib.load(t1w).dataobj))
        truth = table.to_classes(training_labels(np.asarray(nib.load(manual).dataobj), brain))
        pred = table.to_classes(np.asarray(nib.load(paths.dseg).dataobj))
        dice = dice_per_class(pred, truth, len(table))
        per_subject.append(dice)
        g = summarise_dice(dice)["groups"]
        lines.append(f"sub-{sub}\t" + "\t".join(f"{g[k]:.4f}" for k in
                                                 ("cortical", "non-cortical", "white-matter", "all")))
    summary = summarise_dice(np.nanmean(np.array(per_subject), axis=0))
    g = summary["groups"]
    lines.append("mean\t" + "\t".join(f"{g[k]:.4f}" for k in
                                      ("cortical", "non-cortical", "white-matter", "all")))
    lines += ["", "structure\tmean_dice"]
    lines += [f"{name}\t{'n/a' if d is None else f'{d:.4f}'}"
              for name, d in summary["per_label"].items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: len(args.participants) + 2]))


if __name__ == "__main__":
    main()
