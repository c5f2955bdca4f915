#!/usr/bin/env python3
"""Tissue contrast as the network sees it: the median normalised intensity of each coarse
structure on the model grid, for held-out Mindboggle subjects (manual labels) and IXI scans
(DLMUSE labels), and the difference. It shows how far another site's contrast lies from the
training scans'. A second table gives IXI's white matter by region: white matter is one tissue,
so a spread between regions is bias that N4 left.

    python scripts/tissue_intensity.py ../shared/data --participants 13 14 15 16 \
        --ixi-participants IXI012 IXI093 IXI163 IXI253 IXI354 IXI483 IXI598 IXI661 \
        --n4 quick --work ../tissue-quick --out docs/tissue_intensity_n4-quick.tsv
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from evaluate_generalisation import COARSE

from eneuronet_bids import atomic
from eneuronet_bids.labels import training_labels
from eneuronet_bids.preprocess import N4_ITERATIONS, preprocess, seed_ants


#: DLMUSE white-matter regions, central to peripheral.
IXI_WHITE_MATTER = {"internal capsules": (91, 92, 93, 94), "corpus callosum": (95,),
                    "temporal": (87, 88), "frontal": (81, 82), "parietal": (85, 86),
                    "occipital": (83, 84)}


def structure_medians(image: np.ndarray, labels: np.ndarray,
                      ids: dict[str, tuple[int, ...]]) -> dict[str, float]:
    """Median intensity inside each structure (NaN where it is absent)."""
    out = {}
    for name, members in ids.items():
        inside = np.isin(labels, members) & (image > 0)
        out[name] = float(np.median(image[inside])) if inside.any() else float("nan")
    return out


def mindboggle_medians(data: Path, sub: str, work: Path, n4: str) -> dict[str, float]:
    source = data / "mindboggle-oasis"
    t1w = source / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
    manual = nib.load(source / "derivatives" / "mindboggle-manual" / f"sub-{sub}" / "anat"
                      / f"sub-{sub}_desc-DKT31aseg_dseg.nii.gz")
    prep = preprocess(t1w, skull_stripped=True, workdir=work / f"sub-{sub}", n4=n4)
    # Mindboggle has no white-matter label; training derives it, and so does this.
    full = training_labels(np.asarray(manual.dataobj), prep.brain_mask)
    return structure_medians(prep.image, prep.labels_to_grid(full),
                             {name: fs for name, (_, fs) in COARSE.items()})


def ixi_medians(data: Path, sub: str, work: Path, n4: str
                ) -> tuple[dict[str, float], dict[str, float]]:
    """Medians of the coarse structures and of the white-matter regions."""
    t1w = data / "ixi" / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
    muse = np.asarray(nib.load(data / "ixi" / "derivatives" / "dlmuse" / f"sub-{sub}" / "anat"
                               / f"sub-{sub}_desc-DLMUSE_dseg.nii.gz").dataobj)
    prep = preprocess(t1w, skull_stripped=False, workdir=work / f"sub-{sub}", n4=n4)
    on_grid = prep.labels_to_grid(muse)
    return (structure_medians(prep.image, on_grid,
                              {name: muse_ids for name, (muse_ids, _) in COARSE.items()}),
            structure_medians(prep.image, on_grid, IXI_WHITE_MATTER))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the shared data folder (ixi/, mindboggle-oasis/)")
    p.add_argument("--participants", nargs="+", required=True, metavar="LABEL",
                   help="Mindboggle participants (skull-stripped, manual labels)")
    p.add_argument("--ixi-participants", nargs="+", required=True, metavar="LABEL")
    p.add_argument("--n4", choices=sorted(N4_ITERATIONS), default="quick")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seed_ants(0, 1)  # the participant level's default seed: the same numbers on every rerun

    mindboggle = [mindboggle_medians(args.data, s, args.work / "mindboggle", args.n4)
                  for s in args.participants]
    ixi, ixi_wm = zip(*(ixi_medians(args.data, s, args.work / "ixi", args.n4)
                        for s in args.ixi_participants))
    lines = [f"# median intensity on the model grid (brain 99th percentile = 1), N4 {args.n4}; "
             f"Mindboggle {' '.join(args.participants)}; IXI {' '.join(args.ixi_participants)}",
             "structure\tmindboggle\tixi\tixi_minus_mindboggle"]
    for name in COARSE:
        m = float(np.nanmean([d[name] for d in mindboggle]))
        i = float(np.nanmean([d[name] for d in ixi]))
        lines.append(f"{name}\t{m:.3f}\t{i:.3f}\t{i - m:+.3f}")
    lines += ["", "# IXI white matter by region", "region\tixi"]
    lines += [f"{name}\t{np.nanmean([d[name] for d in ixi_wm]):.3f}" for name in IXI_WHITE_MATTER]
    atomic.write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
