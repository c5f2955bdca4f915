"""Dice overlap per class and per structure group of the label table."""

from __future__ import annotations

import numpy as np

from .labels import label_table


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Dice of each class index; NaN where the class is absent from both maps."""
    pred = pred.ravel().astype(np.int64)
    truth = truth.ravel().astype(np.int64)
    inter = np.bincount(truth[pred == truth], minlength=n_classes)[:n_classes]
    sizes = (np.bincount(pred, minlength=n_classes)[:n_classes]
             + np.bincount(truth, minlength=n_classes)[:n_classes])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, 2.0 * inter / sizes, np.nan)


def summarise_dice(dice: np.ndarray) -> dict:
    """Mean Dice per group (cortical, non-cortical, white-matter, all) and per label name."""
    table = label_table()
    groups = {}
    for group in ("cortical", "non-cortical", "white-matter"):
        groups[group] = float(np.nanmean(dice[table.classes_in(group)]))
    groups["all"] = float(np.nanmean(dice[1:]))
    per_label = {lab.name: (None if np.isnan(d) else round(float(d), 4))
                 for lab, d in zip(table, dice) if lab.index != 0}
    return {"groups": groups, "per_label": per_label}
