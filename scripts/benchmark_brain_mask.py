#!/usr/bin/env python3
"""Brain-extraction accuracy: Dice of the pipeline's brain mask against DLMUSE masks (label > 0)
of IXI full-head scans. Nothing here was tuned on these subjects.

    python scripts/benchmark_brain_mask.py ../shared/data/ixi --n 12 --out docs/brain_mask_ixi.tsv
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import nibabel as nib

from eneuronet_bids.metrics import dice_per_class
from eneuronet_bids.preprocess import bias_correct, extract_brain, load_t1w, seed_ants, to_ants


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ixi_dir", type=Path)
    p.add_argument("--n", type=int, default=12, help="subjects, evenly spaced over the list")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(args.ixi_dir.parent / "templateflow"))
    seed_ants(0, int(os.environ.get("OMP_NUM_THREADS", "2")))
    subjects = sorted(d.name for d in args.ixi_dir.glob("sub-*"))
    chosen = [subjects[i] for i in np.linspace(0, len(subjects) - 1, args.n).astype(int)]
    rows = ["participant\tdice\tseconds"]
    scores = []
    for sub in chosen:
        t1w = args.ixi_dir / sub / "anat" / f"{sub}_T1w.nii.gz"
        ref = args.ixi_dir / "derivatives" / "dlmuse" / sub / "anat" / f"{sub}_desc-DLMUSE_dseg.nii.gz"
        native, _ = load_t1w(t1w)
        canonical = nib.as_closest_canonical(native)
        truth = np.asarray(nib.as_closest_canonical(nib.load(ref)).dataobj) > 0
        t0 = time.perf_counter()
        img = bias_correct(to_ants(np.asarray(canonical.dataobj), canonical.affine), None)
        with tempfile.TemporaryDirectory() as tmp:
            mask, _, _ = extract_brain(img, Path(tmp))
        seconds = time.perf_counter() - t0
        d = float(dice_per_class(mask.astype(int), truth.astype(int), 2)[1])
        scores.append(d)
        rows.append(f"{sub}\t{d:.4f}\t{seconds:.1f}")
        logging.warning("%s Dice %.4f (%.1f s)", sub, d, seconds)
    rows.append(f"mean\t{np.mean(scores):.4f}\t")
    rows.append(f"min\t{np.min(scores):.4f}\t")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
