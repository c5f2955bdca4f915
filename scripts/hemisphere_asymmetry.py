#!/usr/bin/env python3
"""Left against right hemisphere Dice, from the per-structure section of accuracy tables.

Reads tables written by scripts/evaluate_mindboggle.py, e.g.

    python scripts/hemisphere_asymmetry.py docs/accuracy_mindboggle_run9_no_flip.tsv docs/accuracy_mindboggle_run9.tsv

and prints, for each, the mean Dice of the left and of the right structures over the pairs
that the label table's mirror map links (`LabelTable.mirrored`) and that both have a value,
and in how many pairs the left structure scores lower. A network that learnt both sides
alike scores lower on the left in about half the pairs.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from eneuronet_bids.labels import label_table


def structure_dice(path: Path) -> dict[str, float]:
    """The `structure -> mean_dice` section of an accuracy table (`n/a` rows left out)."""
    lines = path.read_text().splitlines()
    try:
        start = lines.index("structure\tmean_dice")
    except ValueError:
        raise SystemExit(f"error: {path} has no 'structure<TAB>mean_dice' section") from None
    rows = csv.reader(lines[start + 1:], delimiter="\t")
    return {name: float(d) for name, d in rows if d != "n/a"}


def hemisphere_pairs(dice: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Dice of the left and right structure of every mirrored pair with both values."""
    table = label_table()
    partner = table.mirrored()
    left, right = [], []
    for k, lab in enumerate(table.labels):
        other = table.labels[partner[k]]
        if lab.hemisphere == "left" and lab.name in dice and other.name in dice:
            left.append(dice[lab.name])
            right.append(dice[other.name])
    return np.array(left), np.array(right)


#: Columns of ``summary``.
SUMMARY_HEADER = "pairs\tleft_mean\tright_mean\tleft_lower"


def summary(dice: dict[str, float]) -> str:
    """Pairs, left and right mean Dice, and pairs whose left structure scores lower."""
    left, right = hemisphere_pairs(dice)
    return f"{len(left)}\t{left.mean():.3f}\t{right.mean():.3f}\t{int((left < right).sum())}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+", type=Path)
    args = p.parse_args()
    print(f"table\t{SUMMARY_HEADER}")
    for path in args.tables:
        print(f"{path}\t{summary(structure_dice(path))}")


if __name__ == "__main__":
    main()
