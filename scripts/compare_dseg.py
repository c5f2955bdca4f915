#!/usr/bin/env python3
"""Agreement of two parcellations of one head made on different grids (e.g. the same scan at
its own resolution and resampled by ``scripts/resample_t1w.py``): Dice per structure group after
reading the second parcellation at the first one's voxel centres (nearest voxel), and the
relative difference of the volumes in the two ``_volumes.tsv`` tables.

    python scripts/compare_dseg.py OUT/sub-chris/anat/sub-chris_desc-DKTaseg_dseg.nii.gz \
        OUT05/sub-hires/anat/sub-hires_desc-DKTaseg_dseg.nii.gz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from eneuronet_bids import outputs
from eneuronet_bids.labels import label_table
from eneuronet_bids.metrics import dice_per_class, summarise_dice
from eneuronet_bids.qc import TOTAL
from eneuronet_bids.resample import resample


def on_grid_of(reference: nib.Nifti1Image, other: nib.Nifti1Image) -> np.ndarray:
    """``other``'s labels at ``reference``'s voxel centres (nearest voxel; 0 outside)."""
    out_to_in = np.linalg.inv(other.affine) @ reference.affine
    data = np.asarray(other.dataobj)
    labels = resample(data.astype(np.float32), out_to_in, reference.shape[:3], mode="nearest")
    return labels.numpy().astype(data.dtype)


def volume_differences(reference_tsv: Path, other_tsv: Path) -> pd.DataFrame:
    """Per structure (and total brain) in both tables: (other - reference) / reference."""
    ref, oth = outputs.read_volumes(reference_tsv), outputs.read_volumes(other_tsv)
    names = [name for name in ref if name in oth]
    return pd.DataFrame({"name": names,
                         "relative": [(oth[n] - ref[n]) / ref[n] for n in names]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference", type=Path, help="a _dseg.nii.gz (its _volumes.tsv beside it)")
    p.add_argument("other", type=Path, help="a _dseg.nii.gz of the same head on another grid")
    args = p.parse_args()
    table = label_table()
    ref, other = nib.load(str(args.reference)), nib.load(str(args.other))
    dice = dice_per_class(table.to_classes(on_grid_of(ref, other)),
                          table.to_classes(np.asarray(ref.dataobj)), len(table))
    for group, value in summarise_dice(dice)["groups"].items():
        print(f"Dice {group}\t{value:.3f}")
    volumes = volume_differences(*(outputs.paths_beside(d).volumes
                                   for d in (args.reference, args.other)))
    relative = volumes.set_index("name").relative
    print(f"total brain volume, relative difference\t{relative[TOTAL]:+.3f}")
    for group in ("cortical", "non-cortical"):
        names = [lab.name for lab in table if lab.group == group and lab.name in relative]
        print(f"{group} volumes, median relative difference\t{relative[names].median():+.3f}")


if __name__ == "__main__":
    main()
