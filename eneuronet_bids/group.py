"""The group level: tables and a report over every image the participant level completed.

Reads only what the participant level wrote (dseg sidecars and volume tables), so re-running
it after more participants are processed updates the group outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import outputs, report
from .labels import label_table
from .parser import UsageError
from .qc import TOTAL

log = logging.getLogger(__name__)

#: An image is a group outlier when a measure's robust z-score (median and MAD over the
#: group) exceeds this; needs at least GROUP_MIN images.
GROUP_Z = 3.5
GROUP_MIN = 5
_QC_COLUMNS = ("verdict", "mean_confidence", "mean_entropy", "total_brain_z",
               "n_structure_outliers", "group_outlier", "reasons", "report")


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD); zeros when the spread is zero."""
    median = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - median))
    return (values - median) / mad if mad > 0 else np.zeros_like(values)


def _tsv(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return "n/a" if v is None else str(round(v, 4)) if isinstance(v, float) else str(v)
    return "\n".join("\t".join(map(cell, r)) for r in [header, *rows]) + "\n"


def run_group(output_dir: Path, participants: list[str] | None) -> outputs.GroupPaths:
    """Write group_volumes.tsv, group_qc.tsv and group.html; raises UsageError when there is
    no complete participant output to summarise."""
    images = outputs.find_complete(output_dir, participants)
    if not images:
        raise UsageError(f"no complete participant-level outputs in {output_dir}"
                         + (f" for participants {participants}" if participants else "")
                         + "; run the participant level first")
    log.info("group level over %d image(s)", len(images))
    entity_keys = [k for k, _ in outputs.ENTITY_KEYS if any(k in e for e, _ in images)]
    names = [lab.name for lab in label_table() if lab.index != 0] + [TOTAL]
    records = []
    for ent, paths in images:
        volumes = outputs.read_volumes(paths.volumes)
        qc = json.loads(paths.dseg_json.read_text())["QC"]
        records.append((ent, paths, volumes, qc))

    totals = np.array([v[TOTAL] for _, _, v, _ in records])
    confidence = np.array([q["mean_confidence"] for *_, q in records])
    group_outlier = np.zeros(len(records), dtype=bool)
    if len(records) >= GROUP_MIN:
        group_outlier = (np.abs(robust_z(totals)) > GROUP_Z) | (
            np.abs(robust_z(confidence)) > GROUP_Z)

    vol_rows, qc_rows, report_rows = [], [], []
    for (ent, paths, volumes, qc), outlier in zip(records, group_outlier):
        ids = [ent.get(k) for k in entity_keys]
        vol_rows.append(ids + [volumes.get(n) for n in names])
        link = paths.report.relative_to(output_dir).as_posix()
        reasons = qc["reasons"] + (["group outlier (total brain volume or confidence)"]
                                   if outlier else [])
        qc_rows.append(ids + [qc["verdict"], qc["mean_confidence"], qc["mean_entropy"],
                              qc["total_brain_z"], len(qc["structure_outliers"]),
                              bool(outlier), "; ".join(reasons) or "n/a", link])
        report_rows.append({"name": paths.report.name.removesuffix("_report.html"),
                            "report": link, "verdict": qc["verdict"], "reasons": reasons,
                            "mean_confidence": qc["mean_confidence"],
                            "total_brain_volume": volumes[TOTAL],
                            "total_brain_z": qc["total_brain_z"],
                            "flagged": qc["verdict"] != "pass" or bool(outlier)})

    table = label_table()
    by_group = {g: [lab.name for lab in table if lab.group == g]
                for g in ("cortical", "non-cortical", "white-matter")}
    measures = {"total": totals.tolist(), "confidence": confidence.tolist()}
    measures |= {g: [sum(v[n] for n in members) for _, _, v, _ in records]
                 for g, members in by_group.items()}
    plot = report.distribution_plot(
        measures, [r["flagged"] for r in report_rows],
        {"total": "total brain (mm³)", "confidence": "mean confidence",
         "cortical": "DKT31 cortex (mm³)", "non-cortical": "non-cortical (mm³)",
         "white-matter": "cerebral WM (mm³)"})
    counts = {v: sum(r["verdict"] == v for r in report_rows) for v in ("pass", "warn", "fail")}
    summary = (f"{len(records)} image(s): {counts['pass']} pass, {counts['warn']} warn, "
               f"{counts['fail']} fail; {int(group_outlier.sum())} group outlier(s) "
               f"(robust |z| > {GROUP_Z} on total brain volume or confidence, "
               f"needs ≥ {GROUP_MIN} images). Flagged images are highlighted.")
    paths = outputs.group_paths(output_dir)
    outputs.write_group_outputs(
        paths,
        volumes=_tsv(entity_keys + names, vol_rows),
        qc=_tsv(entity_keys + list(_QC_COLUMNS), qc_rows),
        report=report.render_group_report(report_rows, plot, summary),
    )
    return paths
