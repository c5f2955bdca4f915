"""Progress written to a file (a batch job's or a container's log) comes every 30 s, not
every step; each check runs in a fresh interpreter, since tqdm reads its defaults on import."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LOOP = """
import sys, time
from pathlib import Path
if sys.argv[2] == "cli":
    __import__("eneuronet_bids.cli").cli._setup_environment(Path(sys.argv[1]), 1)
from tqdm import tqdm
for _ in tqdm(range(100), desc="steps"):
    time.sleep(0.02)
"""


@pytest.mark.parametrize("setup, most", [("none", None), ("cli", 2)])
def test_progress_lines_to_a_file_are_spaced_out(tmp_path, setup, most):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    err = subprocess.run([sys.executable, "-c", LOOP, str(tmp_path), setup], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True).stderr
    renders = err.count("steps:")  # stderr is a pipe here, as in a log file
    if most is None:
        assert renders > 10  # tqdm's own default: every 0.1 s
    else:
        assert renders <= most  # the start and the end
