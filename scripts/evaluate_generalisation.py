#!/usr/bin/env python3
"""Generalisation: the participant level on data unlike its training set, scored by Dice.

1. **Another site and scanner**: IXI full-head 2 mm scans (Hammersmith, Philips 3T) against the
   DLMUSE silver-standard labels, on coarse structures both label sets share (``COARSE``).
2. **Degraded held-out Mindboggle subjects** against their manual labels: the original image
   and copies downsampled to 2 mm and to 1x1x3 mm slices, with Rician-like noise, with a
   smooth multiplicative bias, and with a gamma contrast change. Each copy runs through the
   participant level like a user's data; the parcellation is brought back to the manual
   labels' 1 mm grid (nearest neighbour) and scored by structure group.

    python scripts/evaluate_generalisation.py ../shared/data --work ../generalisation \
        --ixi 8 --participants 13 14 15 16 --out docs/generalisation.tsv
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to, resample_to_output
from scipy import ndimage

from eneuronet_bids import outputs
from eneuronet_bids.discovery import WorkUnit
from eneuronet_bids.labels import label_table, training_labels
from eneuronet_bids.metrics import dice_per_class, summarise_dice
from eneuronet_bids.preprocess import mask_skull_stripped

REPO = Path(__file__).resolve().parents[1]

#: Coarse structure -> (DLMUSE labels, FreeSurfer labels of our table). Cortex is the union of
#: MUSE's cortical ROIs (100-207; odd = left) and the DKT31 labels of that hemisphere; cerebral
#: white matter takes in MUSE's lobar WM, internal capsules, fornices and corpus callosum.
_MUSE_CORTEX = range(100, 208)
COARSE: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "Left-Cerebral-Cortex": (tuple(i for i in _MUSE_CORTEX if i % 2), tuple(range(1000, 1036))),
    "Right-Cerebral-Cortex": (tuple(i for i in _MUSE_CORTEX if not i % 2),
                              tuple(range(2000, 2036))),
    "Cerebral-White-Matter": ((81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95),
                              (2, 41)),
    "Left-Lateral-Ventricle": ((52, 50), (4, 5)),
    "Right-Lateral-Ventricle": ((51, 49), (43, 44)),
    "Left-Thalamus": ((60,), (10,)),
    "Right-Thalamus": ((59,), (49,)),
    "Left-Caudate": ((37,), (11,)),
    "Right-Caudate": ((36,), (50,)),
    "Left-Putamen": ((58,), (12,)),
    "Right-Putamen": ((57,), (51,)),
    "Left-Pallidum": ((56,), (13,)),
    "Right-Pallidum": ((55,), (52,)),
    "Left-Hippocampus": ((48,), (17,)),
    "Right-Hippocampus": ((47,), (53,)),
    "Left-Amygdala": ((32,), (18,)),
    "Right-Amygdala": ((31,), (54,)),
    "Brain-Stem": ((35,), (16,)),
    "Cerebellum": ((38, 39, 40, 41, 71, 72, 73), (6, 7, 8, 45, 46, 47, 630, 631, 632)),
}

DEGRADATIONS = ("original", "2mm", "1x1x3mm", "noise", "bias", "contrast")


def degrade(img: nib.Nifti1Image, kind: str, rng: np.random.Generator) -> nib.Nifti1Image:
    """One degraded copy of a skull-stripped 1 mm T1w."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    brain = data > 0
    scale = float(np.percentile(data[brain], 99))
    if kind == "original":
        out = data
    elif kind in ("2mm", "1x1x3mm"):
        # Thick slices are axial (3 mm along S-I), as in a clinical scan.
        voxel = (2.0, 2.0, 2.0) if kind == "2mm" else (1.0, 1.0, 3.0)
        ras = nib.as_closest_canonical(img)
        # Averaging over the new voxel, as a scanner with that resolution would.
        sigma = [max(v / z - 1, 0) * 0.5 for v, z in zip(voxel, ras.header.get_zooms()[:3])]
        smooth = nib.Nifti1Image(ndimage.gaussian_filter(np.asarray(ras.dataobj, np.float32),
                                                         sigma), ras.affine)
        return resample_to_output(smooth, voxel, order=1)
    elif kind == "noise":  # Rician-like: magnitude of a complex signal with 4% noise
        sd = 0.04 * scale
        out = np.hypot(data + rng.normal(0, sd, data.shape), rng.normal(0, sd, data.shape))
        out = np.where(brain, out, 0)
    elif kind == "bias":  # smooth multiplicative field, x0.75 to x1.25 across the head
        grid = np.indices(data.shape, dtype=np.float32)
        field = sum(np.cos(np.pi * g / n + phase) for g, n, phase in
                    zip(grid, data.shape, rng.uniform(0, np.pi, 3)))
        out = data * (1 + 0.25 * field / 3)
    elif kind == "contrast":  # gamma 0.6 on the normalised intensities
        out = scale * np.clip(data / scale, 0, None) ** 0.6
    else:
        raise ValueError(kind)
    return nib.Nifti1Image(out.astype(np.float32), img.affine)


def run_participant(bids: Path, out: Path, labels: list[str], work: Path,
                    options: list[str]) -> None:
    # One thread per image (images run side by side): the same numbers on every rerun.
    cmd = [sys.executable, str(REPO / "run.py"), str(bids), str(out), "participant",
           "--participant-label", *labels, "--skip-bids-validation", "-w", str(work), "-q",
           "--omp-nthreads", "1", *options]
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"participant level failed: {' '.join(cmd)}")


def coarse_dice(ours: np.ndarray, muse: np.ndarray) -> dict[str, float]:
    scores = {}
    for name, (muse_ids, fs_ids) in COARSE.items():
        a, b = np.isin(ours, fs_ids), np.isin(muse, muse_ids)
        total = a.sum() + b.sum()
        scores[name] = float(2 * (a & b).sum() / total) if total else float("nan")
    return scores


def evenly_spaced_ixi(data: Path, n: int) -> list[str]:
    """``n`` IXI participants spread evenly over the sorted list (the test scans)."""
    subjects = sorted(d.name.removeprefix("sub-") for d in (data / "ixi").glob("sub-*"))
    return [subjects[i] for i in np.linspace(0, len(subjects) - 1, n).astype(int)]


def ixi_scores(data: Path, work: Path, chosen: list[str], options: list[str]
               ) -> tuple[dict[str, float], dict[str, float]]:
    """Coarse Dice against DLMUSE: the mean over structures per participant, and the mean
    over participants per structure."""
    out = work / "ixi-derivatives"
    run_participant(data / "ixi", out, chosen, work / "ixi-work", options)
    per = {}
    for sub in chosen:
        t1w = data / "ixi" / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
        ours = np.asarray(nib.load(outputs.output_paths(out, WorkUnit(t1w, {"subject": sub}))
                                   .dseg).dataobj)
        muse = np.asarray(nib.load(data / "ixi" / "derivatives" / "dlmuse" / f"sub-{sub}"
                                   / "anat" / f"sub-{sub}_desc-DLMUSE_dseg.nii.gz").dataobj)
        per[sub] = list(coarse_dice(ours, muse).values())
    by_structure = np.nanmean(np.array(list(per.values())), axis=0)
    return ({sub: float(np.nanmean(d)) for sub, d in per.items()},
            dict(zip(COARSE, by_structure.tolist())))


def ixi(data: Path, work: Path, chosen: list[str], options: list[str]) -> list[str]:
    by_participant, by_structure = ixi_scores(data, work, chosen, options)
    lines = ["# IXI vs DLMUSE, coarse structures", "participant\tmean_dice"]
    lines += [f"sub-{sub}\t{d:.4f}" for sub, d in by_participant.items()]
    lines += [f"mean\t{np.nanmean(list(by_structure.values())):.4f}", "",
              "structure\tmean_dice"]
    lines += [f"{name}\t{d:.4f}" for name, d in by_structure.items()]
    return lines


def degraded(data: Path, work: Path, participants: list[str], options: list[str]
             ) -> list[str]:
    source = data / "mindboggle-oasis"
    bids = work / "degraded"
    bids.mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "Degraded Mindboggle held-out subjects", "BIDSVersion": "1.9.0"}))
    for sub in participants:
        img = nib.load(source / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz")
        anat = bids / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for kind in DEGRADATIONS:
            name = anat / f"sub-{sub}_acq-{kind}_T1w"
            if not name.with_suffix(".nii.gz").exists():
                rng = np.random.default_rng([int(sub), DEGRADATIONS.index(kind)])
                nib.save(degrade(img, kind, rng), name.with_suffix(".nii.gz"))
                name.with_suffix(".json").write_text(json.dumps({"SkullStripped": True}))
    out = work / "degraded-derivatives"
    run_participant(bids, out, participants, work / "degraded-work", options)
    table = label_table()
    lines = ["# Held-out Mindboggle, degraded, vs manual labels (1 mm grid)",
             "degradation\tcortical\tnon-cortical\twhite-matter\tall"]
    for kind in DEGRADATIONS:
        per = []
        for sub in participants:
            t1w = source / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
            ref = nib.load(t1w)
            manual = nib.load(source / "derivatives" / "mindboggle-manual" / f"sub-{sub}"
                              / "anat" / f"sub-{sub}_desc-DKT31aseg_dseg.nii.gz")
            brain = mask_skull_stripped(np.asarray(ref.dataobj))
            truth = table.to_classes(training_labels(np.asarray(manual.dataobj), brain))
            t1w_deg = bids / f"sub-{sub}" / "anat" / f"sub-{sub}_acq-{kind}_T1w.nii.gz"
            dseg = nib.load(outputs.output_paths(
                out, WorkUnit(t1w_deg, {"subject": sub, "acquisition": kind})).dseg)
            pred = np.asarray(resample_from_to(dseg, ref, order=0).dataobj).astype(np.int64)
            per.append(dice_per_class(table.to_classes(pred), truth, len(table)))
        g = summarise_dice(np.nanmean(np.array(per), axis=0))["groups"]
        lines.append(f"{kind}\t" + "\t".join(f"{g[k]:.4f}" for k in
                                              ("cortical", "non-cortical", "white-matter",
                                               "all")))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the shared data folder (ixi/, mindboggle-oasis/)")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--ixi", type=int, default=8, help="IXI subjects, evenly spaced")
    p.add_argument("--ixi-participants", nargs="+", metavar="LABEL",
                   help="these IXI participants instead of --ixi evenly spaced ones")
    p.add_argument("--participants", nargs="*", default=["13", "14", "15", "16"],
                   help="held-out Mindboggle subjects to degrade (none: IXI only)")
    p.add_argument("--model", type=Path, help="weights to evaluate (default: the shipped)")
    p.add_argument("--no-test-time-flip", action="store_true",
                   help="one forward pass per image (the participant level's option)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    # Options of the participant level, for every image.
    options = ((["--model", str(args.model)] if args.model else [])
               + (["--no-test-time-flip"] if args.no_test_time_flip else []))
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(args.data / "templateflow"))
    chosen = ([p.removeprefix("sub-") for p in args.ixi_participants] if args.ixi_participants
              else evenly_spaced_ixi(args.data, args.ixi))
    lines = ixi(args.data, args.work, chosen, options)
    if args.participants:
        lines += [""] + degraded(args.data, args.work, args.participants, options)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
