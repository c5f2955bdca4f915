#!/usr/bin/env python3
"""Whole participant level on one T1w, as a user runs it: wall time and peak RSS of the process
(``/usr/bin/time -v``) and the stage timings from the parcellation sidecar, over several runs.

    python scripts/benchmark_participant.py ../shared/data/sample-bids --participant brainchop \
        --threads 2 --runs 3 --out docs/performance_cpu.tsv
    python scripts/benchmark_participant.py ../shared/data/sample-bids --participant brainchop \
        --threads 2 --runs 3 --no-test-time-flip --out docs/performance_cpu_no_flip.tsv
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bids_dir", type=Path)
    p.add_argument("--participant", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-test-time-flip", action="store_true",
                   help="pass --no-test-time-flip to the participant level (one forward pass)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env.setdefault("TEMPLATEFLOW_HOME", str(args.bids_dir.parent / "templateflow"))
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            cmd = ["/usr/bin/time", "-v", sys.executable, str(REPO / "run.py"),
                   str(args.bids_dir), str(out), "participant", "--participant-label",
                   args.participant, "--nprocs", str(args.threads), "--device", args.device,
                   "--skip-bids-validation", "-w", str(Path(tmp) / "work"), "-q"]
            if args.no_test_time_flip:
                cmd.append("--no-test-time-flip")
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"run {i} failed:\n{proc.stderr[-2000:]}")
            wall = _time_field(proc.stderr, r"Elapsed \(wall clock\) time.*: (\S+)")
            rss_kb = float(_time_field(proc.stderr, r"Maximum resident set size \(kbytes\): (\d+)"))
            sidecar = next(out.rglob("*_dseg.json"))
            stages = json.loads(sidecar.read_text())["StageTimings"]
            rows.append({"wall_s": _seconds(wall), "peak_rss_gb": rss_kb / 1024**2, **stages})
            print(f"run {i}: wall {rows[-1]['wall_s']:.1f} s, peak RSS "
                  f"{rows[-1]['peak_rss_gb']:.2f} GB, forward {stages['model_forward']:.2f} s",
                  flush=True)
    keys = list(rows[0])
    lines = ["figure\tmedian\tmin\tmax"]
    for k in keys:
        vals = [r[k] for r in rows]
        lines.append(f"{k}\t{statistics.median(vals):.2f}\t{min(vals):.2f}\t{max(vals):.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _time_field(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    if not match:
        sys.exit(f"could not read /usr/bin/time output ({pattern})")
    return match.group(1)


def _seconds(clock: str) -> float:
    parts = [float(x) for x in clock.split(":")]
    return sum(v * 60**i for i, v in enumerate(reversed(parts)))


if __name__ == "__main__":
    main()
