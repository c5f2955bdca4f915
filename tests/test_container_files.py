"""The container and CI definitions: linted, schema-valid and in step with the package.
(The image itself is built and run by scripts/verify-container.sh; see docs/containers.md.)"""

import re
import subprocess
import sys
from pathlib import Path

from eneuronet_bids import __version__

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_hadolint_passes():
    proc = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_circleci_config_is_valid():
    proc = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.circle-ci",
                           str(REPO / ".circleci" / "config.yml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_versions_agree():
    dockerfile = (REPO / "Dockerfile").read_text()
    singularity = (REPO / "Singularity.def").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f"ARG VERSION={__version__}" in dockerfile
    assert f"From: eneuronet/eneuronet:{__version__}" in singularity
    torch_pin = re.search(r'"(torch==[^"]+)"', pyproject).group(1)
    assert f"{torch_pin}\n" in dockerfile


def test_entrypoint_is_the_bids_app():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["eneuronet"]' in dockerfile
    assert re.search(r"^USER 1000:1000$", dockerfile, re.M)
    assert 'exec eneuronet "$@"' in (REPO / "Singularity.def").read_text()
