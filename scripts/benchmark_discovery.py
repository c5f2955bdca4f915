#!/usr/bin/env python3
"""Time to find the T1w images of a large BIDS dataset (PyBIDS indexing), for one participant
and for all, on a synthetic dataset of empty files laid out like a multi-modal study.

    python scripts/benchmark_discovery.py --subjects 1000 --work /tmp/bigbids --out TSV

Each subject gets two sessions with a T1w and a T2w, two BOLD runs with sidecars, an events
file and a DWI series (11 files a session), so 1,000 subjects make 22,002 files.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import bids  # noqa: F401  (imported before the clock starts, as the app has by then)

from eneuronet_bids.discovery import discover

log = logging.getLogger("benchmark_discovery")


def make_dataset(root: Path, subjects: int) -> None:
    """Write the synthetic dataset (empty NIfTI files, ``{}`` sidecars) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "synthetic", "BIDSVersion": "1.10.0"}))
    labels = [f"{i:04d}" for i in range(subjects)]
    (root / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{s}\n" for s in labels))
    for sub in labels:
        for ses in ("01", "02"):
            stem = f"sub-{sub}_ses-{ses}"
            files = {"anat": [f"{stem}_T1w.nii.gz", f"{stem}_T2w.nii.gz"],
                     "func": [f"{stem}_task-rest_run-{r}_bold.{e}" for r in (1, 2)
                              for e in ("nii.gz", "json")] + [f"{stem}_task-rest_events.tsv"],
                     "dwi": [f"{stem}_dwi.{e}" for e in ("nii.gz", "bval", "bvec", "json")]}
            for datatype, names in files.items():
                folder = root / f"sub-{sub}" / f"ses-{ses}" / datatype
                folder.mkdir(parents=True, exist_ok=True)
                for name in names:
                    (folder / name).write_bytes(b"{}" if name.endswith(".json") else b"")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=1000)
    p.add_argument("--work", type=Path, required=True, help="where the dataset is written")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    make_dataset(args.work, args.subjects)
    files = sum(1 for f in args.work.rglob("*") if f.is_file())
    rows = ["selection\tfiles\tt1w_found\tseconds"]
    for name, participants in (("one participant", ["0000"]), ("all participants", None)):
        start = time.perf_counter()
        units = discover(args.work, participants=participants)
        seconds = time.perf_counter() - start
        log.info("%s: %d T1w in %.1f s", name, len(units), seconds)
        rows.append(f"{name}\t{files}\t{len(units)}\t{seconds:.2f}")
    args.out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
