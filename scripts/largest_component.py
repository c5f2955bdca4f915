#!/usr/bin/env python3
"""Keep each structure's largest connected piece in participant-level parcellations.

The participant level does this for the cortical parcels (``eneuronet_bids.cleanup``); this
script does it for any structure groups, on parcellations already written, to measure what it
does elsewhere. Stray pieces go to the nearest voxel kept with a label of the cleaned groups.
The cleaned parcellations go to another derivatives folder, at the same relative paths, so
that ``scripts/evaluate_mindboggle.py`` scores them like the originals, e.g.

    python scripts/largest_component.py EVAL/derivatives CLEAN --participants 13 14 15 16 \\
        --groups cortical non-cortical white-matter
    python scripts/evaluate_mindboggle.py ../shared/data/mindboggle-oasis CLEAN \\
        --participants 13 14 15 16 --out clean.tsv

and prints the number of voxels relabelled per image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from eneuronet_bids import outputs
from eneuronet_bids.cleanup import keep_largest_pieces
from eneuronet_bids.discovery import WorkUnit
from eneuronet_bids.labels import label_table

GROUPS = ("cortical", "non-cortical", "white-matter")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("derivatives", type=Path, help="a participant-level output folder")
    p.add_argument("out", type=Path, help="where the cleaned parcellations go")
    p.add_argument("--participants", nargs="+", required=True)
    p.add_argument("--groups", nargs="+", choices=GROUPS, required=True,
                   help="structure groups to clean")
    args = p.parse_args()
    values = [lab.index for lab in label_table() if lab.group in args.groups]
    for sub in args.participants:
        unit = WorkUnit(Path(f"sub-{sub}_T1w.nii.gz"), {"subject": sub})
        source = outputs.output_paths(args.derivatives, unit).dseg
        target = outputs.output_paths(args.out, unit).dseg
        img = nib.load(source)
        cleaned, moved = keep_largest_pieces(np.asarray(img.dataobj), values)
        target.parent.mkdir(parents=True, exist_ok=True)
        outputs.write_nifti(target, cleaned, img, cleaned.dtype)
        print(f"sub-{sub}\t{moved} voxels relabelled")


if __name__ == "__main__":
    main()
