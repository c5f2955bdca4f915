"""scripts/measure_candidate.sh refuses to start without a model file (its measurements
themselves are the participant level and the evaluation scripts, tested elsewhere)."""

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "measure_candidate.sh"


@pytest.mark.parametrize("args", [[], ["only-one-argument"], ["missing.pt", "OUT"]])
def test_a_missing_model_or_argument_exits_2_with_a_usage_line(tmp_path, args):
    done = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("usage:") and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "OUT").exists()  # nothing made before the check
