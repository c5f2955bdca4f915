"""Arrays cached in the work directory as compressed ``.npz`` files.

Several jobs may share one work directory (an HPC array of training runs, say, all preparing
the same subjects); each entry is written atomically, so a reader sees either nothing or a
whole file, and two writers of the same entry both succeed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_atomic


def cached(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored at ``path``, or ``make()``'s, stored there first."""
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    arrays = make()
    write_atomic(path, lambda tmp: np.savez_compressed(tmp, **arrays))
    return arrays
