"""Atomic file writes: a reader, or a re-run after a crash, sees the old file or the whole new
one, never a partial one; concurrent writers of one path each use a private temporary name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The mode open() gives a new file under the process's umask (e.g. 664 for a lab's shared
# umask 002), read once at import: mkstemp's 0600 would hide outputs from the group, and
# setting and restoring the umask at each write would race with other threads' files.
_FILE_MODE = 0o666 & ~_umask()


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; a crash leaves only a dotfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes),
                               dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))
