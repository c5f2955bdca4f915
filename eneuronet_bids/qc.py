"""Automated quality control of one parcellation, from signals we can measure.

- **Confidence**: the mean, over brain voxels of the model grid, of the largest class
  probability; and the mean normalised entropy of the class probabilities (0 certain, 1 uniform).
- **Volumes**: every structure's volume as a z-score against the training participants' manual
  label maps (``data/volume_norms.tsv``, made by ``scripts/volume_norms.py``).

The verdict and its thresholds (documented in ``docs/qc.md``):

- ``fail``: mean confidence < ``FAIL_CONFIDENCE``, or total brain volume |z| > ``FAIL_TOTAL_Z``;
- ``warn``: mean confidence < ``WARN_CONFIDENCE``, total brain volume |z| > ``WARN_TOTAL_Z``,
  more than ``WARN_OUTLIER_FRACTION`` of the structures with |z| > ``STRUCTURE_Z``, or any
  preprocessing warning (large or anisotropic voxels);
- ``pass`` otherwise.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import torch

from .labels import label_table

FAIL_CONFIDENCE = 0.5
WARN_CONFIDENCE = 0.75
FAIL_TOTAL_Z = 5.0
WARN_TOTAL_Z = 3.0
STRUCTURE_Z = 4.0
WARN_OUTLIER_FRACTION = 0.1
TOTAL = "Total-Brain"


@dataclass(frozen=True)
class GridSummary:
    """The confidence signals of one image's probabilities on the model grid."""

    mean_confidence: float
    mean_entropy: float


def summarise_probabilities(probs: torch.Tensor, brain: np.ndarray, *,
                            slab: int = 16) -> GridSummary:
    """Mean confidence and entropy of (C, X, Y, Z) probabilities over ``brain`` voxels, slab
    by slab, on every other voxel along each axis: an eighth of the brain (a million voxels
    for an adult head at 1 mm³) is as precise as a mean needs, and eight times cheaper."""
    n_classes = probs.shape[0]
    conf_sum = ent_sum = 0.0
    n = 0
    sample = np.zeros(brain.shape, dtype=bool)
    sample[::2, ::2, ::2] = np.asarray(brain, dtype=bool)[::2, ::2, ::2]
    for start in range(0, probs.shape[1], slab):
        inside = sample[start:start + slab]
        if not inside.any():
            continue
        p = probs[:, start:start + slab][:, torch.from_numpy(inside).to(probs.device)]
        p = p.float()  # (C, voxels)
        conf_sum += float(p.max(0).values.sum())
        ent_sum += float((-(p * p.clamp_min(1e-8).log()).sum(0)).sum()) / math.log(n_classes)
        n += p.shape[1]
    return GridSummary(conf_sum / max(n, 1), ent_sum / max(n, 1))


@cache
def volume_norms() -> dict[str, tuple[float, float]]:
    """name -> (mean, SD) volume in mm³ over the training participants."""
    text = resources.files("eneuronet_bids").joinpath("data/volume_norms.tsv").read_text()
    return {r["name"]: (float(r["mean_mm3"]), float(r["sd_mm3"]))
            for r in csv.DictReader(text.splitlines(), delimiter="\t")}


def volume_z_scores(volumes: dict[str, float]) -> dict[str, float]:
    """z-score of each named volume that has a norm with a positive SD."""
    norms = volume_norms()
    return {name: (v - norms[name][0]) / norms[name][1]
            for name, v in volumes.items() if name in norms and norms[name][1] > 0}


def volumes_by_name(labels: np.ndarray, voxel_volume: float) -> dict[str, float]:
    """Volume (mm³) of every structure of the label table, and the total brain volume."""
    table = label_table()
    counts = np.bincount(table.to_classes(labels).ravel(), minlength=len(table))
    volumes = {lab.name: float(counts[k] * voxel_volume)
               for k, lab in enumerate(table) if lab.index != 0}
    volumes[TOTAL] = float(counts[1:].sum() * voxel_volume)
    return volumes


@dataclass
class QCResult:
    verdict: str  # "pass", "warn" or "fail"
    reasons: list[str]
    mean_confidence: float
    mean_entropy: float
    total_brain_z: float
    structure_outliers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def assess(summary: GridSummary, z_scores: dict[str, float],
           warnings: list[str]) -> QCResult:
    total_z = z_scores.get(TOTAL, float("nan"))
    structures = {k: v for k, v in z_scores.items() if k != TOTAL}
    outliers = sorted((k for k, v in structures.items() if abs(v) > STRUCTURE_Z),
                      key=lambda k: -abs(structures[k]))
    fail, warn = [], []
    conf = summary.mean_confidence
    if conf < FAIL_CONFIDENCE:
        fail.append(f"mean confidence {conf:.2f} < {FAIL_CONFIDENCE}")
    elif conf < WARN_CONFIDENCE:
        warn.append(f"mean confidence {conf:.2f} < {WARN_CONFIDENCE}")
    if abs(total_z) > FAIL_TOTAL_Z:
        fail.append(f"total brain volume z = {total_z:.1f} (|z| > {FAIL_TOTAL_Z})")
    elif abs(total_z) > WARN_TOTAL_Z:
        warn.append(f"total brain volume z = {total_z:.1f} (|z| > {WARN_TOTAL_Z})")
    if structures and len(outliers) > WARN_OUTLIER_FRACTION * len(structures):
        warn.append(f"{len(outliers)} of {len(structures)} structures have volume "
                    f"|z| > {STRUCTURE_Z}")
    warn += warnings
    verdict = "fail" if fail else "warn" if warn else "pass"
    return QCResult(verdict, fail + warn, round(conf, 4), round(summary.mean_entropy, 4),
                    round(total_z, 2), outliers)
