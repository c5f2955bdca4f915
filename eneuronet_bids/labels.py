"""The one label table: FreeSurfer ``aparc.DKTatlas+aseg`` numbering for training, inference,
outputs and reports.

The table ships as ``data/labels.tsv`` (BIDS ``dseg.tsv`` columns: index, name, abbreviation,
color, mapping). Network class ``k`` is row ``k`` of the table; row 0 is background.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from scipy import ndimage

#: DKT31 drops the frontal and temporal poles; the protocol gives their cortex to the adjacent
#: regions, which is what :func:`training_labels` does with the few Mindboggle maps that have them.
POLE_LABELS = (1032, 1033, 2032, 2033)
LEFT_WM, RIGHT_WM = 2, 41

_LEFT_SUBCORTICAL = {2, 4, 5, 6, 7, 10, 11, 12, 13, 17, 18, 26, 28, 30, 31, 91}
_RIGHT_SUBCORTICAL = {41, 43, 44, 45, 46, 49, 50, 51, 52, 53, 54, 58, 60, 62, 63, 92}
_HEMISPHERE_PREFIXES = (("Left-", "Right-"), ("Right-", "Left-"), ("ctx-lh-", "ctx-rh-"),
                        ("ctx-rh-", "ctx-lh-"))


@dataclass(frozen=True)
class Label:
    index: int
    name: str
    abbreviation: str
    color: str
    mapping: int

    @property
    def group(self) -> str:
        """'background', 'cortical' (DKT31), 'white-matter' or 'non-cortical'."""
        if self.index == 0:
            return "background"
        if self.index >= 1000:
            return "cortical"
        if self.index in (LEFT_WM, RIGHT_WM):
            return "white-matter"
        return "non-cortical"

    @property
    def hemisphere(self) -> str | None:
        if 1000 <= self.index < 2000 or self.index in _LEFT_SUBCORTICAL:
            return "left"
        if self.index >= 2000 or self.index in _RIGHT_SUBCORTICAL:
            return "right"
        return None


class LabelTable:
    """Ordered labels; position in the table is the network's class index."""

    def __init__(self, labels: list[Label]):
        if not labels or labels[0].index != 0:
            raise ValueError("the label table must start with background (index 0)")
        self.labels = labels
        self.indices = np.array([lab.index for lab in labels], dtype=np.int32)
        self._lut = np.zeros(int(self.indices.max()) + 1, dtype=np.int64)
        self._lut[self.indices] = np.arange(len(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter(self.labels)

    def classes_in(self, group: str) -> list[int]:
        return [k for k, lab in enumerate(self.labels) if lab.group == group]

    def to_classes(self, label_map: np.ndarray) -> np.ndarray:
        """FreeSurfer numbers -> class indices; numbers outside the table raise."""
        label_map = np.asarray(label_map).astype(np.int64)
        known = np.isin(label_map, self.indices)
        if not known.all():
            unknown = np.unique(label_map[~known])[:10].tolist()
            raise ValueError(f"labels not in the label table: {unknown}")
        return self._lut[label_map]

    def to_labels(self, classes: np.ndarray) -> np.ndarray:
        return self.indices[classes]

    def tissue_of_class(self) -> np.ndarray:
        """A tissue number per class, for augmentations that treat a tissue as one: 0 for
        background, one for all cortical parcels, one for white matter, and one per
        non-cortical structure, shared by its left and right parts."""
        tissues: dict[str, int] = {"background": 0, "cortical": 1, "white-matter": 2}
        out = np.zeros(len(self.labels), dtype=np.int64)
        for k, lab in enumerate(self.labels):
            key = lab.group
            if key == "non-cortical":
                key = next((lab.name[len(a):] for a, _ in _HEMISPHERE_PREFIXES
                            if lab.name.startswith(a)), lab.name)
            out[k] = tissues.setdefault(key, len(tissues))
        return out

    def mirrored(self) -> np.ndarray:
        """Class index of each class's left-right counterpart (itself for midline classes):
        what a class of a left-right mirrored image means in the original image."""
        by_name = {lab.name: k for k, lab in enumerate(self.labels)}
        partner = np.arange(len(self.labels))
        for k, lab in enumerate(self.labels):
            if lab.hemisphere is None:
                continue
            for a, b in _HEMISPHERE_PREFIXES:
                if lab.name.startswith(a):
                    other = by_name.get(b + lab.name[len(a):])
                    break
            else:
                other = None
            if other is None:
                raise ValueError(f"label {lab.name} has no counterpart in the other hemisphere")
            partner[k] = other
        return partner


@cache
def label_table() -> LabelTable:
    text = resources.files("eneuronet_bids").joinpath("data/labels.tsv").read_text()
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return LabelTable(
        [
            Label(int(r["index"]), r["name"], r["abbreviation"], r["color"], int(r["mapping"]))
            for r in rows
        ]
    )


def _nearest_fill(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Copy into ``target`` voxels the value of the nearest ``source`` voxel."""
    out = values.copy()
    if target.any() and source.any():
        _, idx = ndimage.distance_transform_edt(~source, return_indices=True)
        out[target] = values[tuple(i[target] for i in idx)]
    return out


def training_labels(label_map: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Turn a Mindboggle ``DKT31aseg`` map into a map of this table's FreeSurfer numbers.

    - frontal/temporal poles go to the nearest other cortical label (DKT protocol);
    - labels outside the table (5th ventricle 72, 74) are treated as unlabelled;
    - unlabelled voxels inside ``brain`` become left or right cerebral white matter, after the
      hemisphere of the nearest lateralised label (Mindboggle has no white-matter label).
    """
    table = label_table()
    lab = np.asarray(label_map).astype(np.int32)
    poles = np.isin(lab, POLE_LABELS)
    cortical = (lab >= 1000) & ~poles
    lab = _nearest_fill(lab, cortical, poles)
    lab[~np.isin(lab, table.indices)] = 0

    unlabelled = brain & (lab == 0)
    side = {"left": LEFT_WM, "right": RIGHT_WM, None: 0}
    hemi_of_class = np.array([side[label.hemisphere] for label in table], dtype=np.int32)
    hemi = hemi_of_class[table.to_classes(lab)]
    hemi = _nearest_fill(hemi, hemi > 0, unlabelled)
    lab[unlabelled] = hemi[unlabelled]
    return lab
