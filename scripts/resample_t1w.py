#!/usr/bin/env python3
"""Write a one-image BIDS dataset holding a T1w resampled (trilinear) to other isotropic voxels,
to measure the participant level on high-resolution input such as 0.7 mm (HCP) or 0.5 mm (7 T)
scans (docs/performance.md, "High-resolution input").

    python scripts/resample_t1w.py ../shared/data/sample-bids/sub-chris/anat/sub-chris_T1w.nii.gz \
        ../hires05 --voxel 0.5
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from eneuronet_bids import resample as grid


def resample(img: nib.Nifti1Image, voxel: float) -> nib.Nifti1Image:
    """``img`` on a grid of ``voxel`` mm covering the same field of view, with the affine that
    places each new voxel centre where the interpolation read it."""
    zooms = np.array(img.header.get_zooms()[:3], dtype=float)
    shape_in = np.array(img.shape[:3])
    shape_out = np.maximum(np.round(shape_in * zooms / voxel).astype(int), 1)
    factor = shape_out / shape_in
    # Voxels are cells: new voxel i is centred at old coordinate (i + 0.5) / f - 0.5.
    index_to_old = np.eye(4)
    index_to_old[:3, :3] = np.diag(1 / factor)
    index_to_old[:3, 3] = 0.5 / factor - 0.5
    data = grid.resample(np.asarray(img.dataobj, dtype=np.float32), index_to_old,
                         tuple(int(n) for n in shape_out), padding="border").numpy()
    out = nib.Nifti1Image(np.round(data).astype(np.int16), img.affine @ index_to_old)
    out.header.set_xyzt_units("mm", "sec")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("t1w", type=Path, help="a BIDS T1w image (its JSON sidecar is copied too)")
    p.add_argument("out", type=Path, help="the new BIDS dataset (created)")
    p.add_argument("--voxel", type=float, required=True, help="isotropic voxel size in mm")
    p.add_argument("--label", default="hires", help="participant label (default: hires)")
    args = p.parse_args()
    anat = args.out / f"sub-{args.label}" / "anat"
    anat.mkdir(parents=True)
    (args.out / "dataset_description.json").write_text(json.dumps(
        {"Name": f"{args.t1w.name} at {args.voxel} mm", "BIDSVersion": "1.10.0"}, indent=2) + "\n")
    stem = f"sub-{args.label}_T1w"
    nib.save(resample(nib.load(str(args.t1w)), args.voxel), str(anat / f"{stem}.nii.gz"))
    sidecar = args.t1w.with_name(args.t1w.name.split(".")[0] + ".json")
    if sidecar.exists():
        shutil.copy(sidecar, anat / f"{stem}.json")


if __name__ == "__main__":
    main()
