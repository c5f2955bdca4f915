"""Arrays cached in the work directory as compressed ``.npz`` files.

Several jobs may share one work directory (an HPC array of training runs, say, all preparing
the same subjects), so each writer uses its own temporary name and renames it into place:
a reader sees either nothing or a whole file, and two writers of the same entry both succeed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def cached(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored at ``path``, or ``make()``'s, stored there first."""
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from a shared group
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return arrays
