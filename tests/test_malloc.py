"""Freed memory stays in the process: each check runs in a fresh interpreter, since the
setting is process-wide and cannot be undone."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc only")

ROOT = Path(__file__).resolve().parents[1]

# Prints whether the setting took effect and the resident MiB before, while and after a
# 200 MiB array lives (numpy allocates it with malloc).
PROBE = """
import os, sys
import numpy as np
from pathlib import Path
def rss():
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
applied = {setup}
before = rss()
a = np.ones(200 * 2**20, dtype=np.uint8)
during = rss()
del a
print(applied, before, during, rss())
"""

SETUPS = {
    "none": "None",
    "direct": "__import__('eneuronet_bids.malloc').malloc.keep_freed_memory()",
    "cli": "__import__('eneuronet_bids.cli').cli._setup_environment(Path(sys.argv[1]), 1)",
}


def probe(setup: str, tmp_path: Path, **env: str) -> tuple[object, float, float, float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=SETUPS[setup]),
                          str(tmp_path)], cwd=ROOT, env={**environ, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return eval(out[0]), *map(float, out[1:])  # noqa: S307 (our own output)


def test_by_default_freed_memory_goes_back(tmp_path):
    _, before, during, after = probe("none", tmp_path)
    assert during - before > 190 and after - before < 20


@pytest.mark.parametrize("setup", ["direct", "cli"])
def test_freed_memory_stays_for_reuse(setup, tmp_path):
    applied, before, during, after = probe(setup, tmp_path)
    if setup == "direct":  # the cli's setup logs the result instead of returning it
        assert applied is True
    assert during - before > 190 and after - before > 190


def test_a_users_malloc_settings_win(tmp_path):
    applied, before, during, after = probe("direct", tmp_path,
                                           MALLOC_TRIM_THRESHOLD_="131072")
    assert applied is False
    assert during - before > 190 and after - before < 20
