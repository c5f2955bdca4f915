#!/usr/bin/env python3
"""How evenly N4 settings correct IXI's white matter: for each setting, the spread (largest
minus smallest) of the median white-matter intensity over DLMUSE's six white-matter regions,
after N4 (the pipeline's ``bias_correct``) and normalisation to the brain's 99th percentile,
and the seconds N4 took. White matter is one tissue, so the spread is bias left behind.

    python scripts/n4_settings.py ../shared/data --ixi-participants IXI012 IXI093 \
        --out docs/n4_settings.tsv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from tissue_intensity import IXI_WHITE_MATTER

from eneuronet_bids import atomic
from eneuronet_bids.preprocess import bias_correct, seed_ants

#: name -> (iterations per level, shrink factor, inside the brain mask)
SETTINGS = {
    "quick, whole head (shipped)": ((15, 15, 10), 4, False),
    "4 x 50, whole head": ((50, 50, 50, 50), 4, False),
    "quick, brain mask": ((15, 15, 10), 4, True),
    "3 x 50, brain mask": ((50, 50, 50), 4, True),
    "4 x 50, brain mask (--n4 brain)": ((50, 50, 50, 50), 4, True),
    "4 x 50, brain mask, shrink 2": ((50, 50, 50, 50), 2, True),
}


def white_matter_spread(image: np.ndarray, labels: np.ndarray) -> float:
    image = image / np.percentile(image[labels > 0], 99)
    medians = [np.median(image[np.isin(labels, ids)]) for ids in IXI_WHITE_MATTER.values()]
    return float(max(medians) - min(medians))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the shared data folder (ixi/)")
    p.add_argument("--ixi-participants", nargs="+", required=True, metavar="LABEL")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    seed_ants(0, 1)
    rows = {name: [] for name in ["no N4", *SETTINGS]}
    for sub in args.ixi_participants:
        anat = args.data / "ixi" / f"sub-{sub}" / "anat"
        img = ants.image_read(str(anat / f"sub-{sub}_T1w.nii.gz"))
        labels = np.asarray(nib.load(args.data / "ixi" / "derivatives" / "dlmuse" / f"sub-{sub}"
                                     / "anat" / f"sub-{sub}_desc-DLMUSE_dseg.nii.gz").dataobj)
        # DLMUSE's brain (every label) stands in for our brain mask here.
        mask = img.new_image_like((labels > 0).astype(np.float32))
        rows["no N4"].append((white_matter_spread(img.numpy(), labels), 0.0))
        for name, (iters, shrink, in_mask) in SETTINGS.items():
            t0 = time.perf_counter()
            corrected = bias_correct(img, mask if in_mask else None, iters, shrink)
            seconds = time.perf_counter() - t0
            rows[name].append((white_matter_spread(corrected.numpy(), labels), seconds))
    lines = [f"# IXI {' '.join(args.ixi_participants)}; one thread",
             "setting\twhite_matter_spread\tn4_seconds"]
    for name in ["no N4", *SETTINGS]:
        spread, seconds = np.mean(rows[name], axis=0)
        lines.append(f"{name}\t{spread:.3f}\t{seconds:.1f}")
    atomic.write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
