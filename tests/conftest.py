import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENEURONET_SHARED_DATA", REPO.parent / "shared" / "data"))
# The scripts import their siblings (evaluate_generalisation), as they do when run.
sys.path.insert(0, str(REPO / "scripts"))


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data not found at {SHARED} (set ENEURONET_SHARED_DATA)")
    return SHARED


@pytest.fixture(autouse=True, scope="session")
def templateflow_home(shared):
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(shared / "templateflow"))


@pytest.fixture(params=["empty home", "no home"])
def missing_templates(request, tmp_path, monkeypatch):
    """TEMPLATEFLOW_HOME pointing at an empty folder, or unset; the template lookup's cache
    is cleared around the test so that it looks again."""
    from eneuronet_bids import templates

    if request.param == "no home":
        monkeypatch.delenv("TEMPLATEFLOW_HOME", raising=False)
    else:
        (tmp_path / "templateflow").mkdir()
        monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow"))
    templates.template_file.cache_clear()
    yield
    templates.template_file.cache_clear()
