"""How many images to process at once: CPUs (``--nprocs`` / ``--omp-nthreads``) and memory.

A worker process holds one image at a time: 3.0-3.9 GB at its peak for its first image
(docs/performance.md), and more once it has handled a few (the heap keeps its holes: 3.9-4.4
GB after the three sample images in turn), so sixty-four workers on a 64-core node with
128 GB would exceed the node and be killed. The memory bound is ``--mem-mb`` or, by
default, what the process may still use: the kernel's available memory, lowered to the
headroom under the memory limit of the process's cgroup and every cgroup above it (a
container's ``--memory``, a batch job's allocation), which /proc/meminfo does not show.
"""

from __future__ import annotations

from pathlib import Path

#: Memory a worker may take at its peak, in MB: the largest measured (4.4 GB) rounded up.
IMAGE_PEAK_MB = 4608
_NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


def worker_count(images: int, nprocs: int, omp_nthreads: int, mem_mb: int | None) -> int:
    """Worker processes: one per ``omp_nthreads`` of ``nprocs`` CPUs, per image, and per
    ``IMAGE_PEAK_MB`` of ``mem_mb`` (no memory bound when None); at least one."""
    bounds = [images, nprocs // max(1, omp_nthreads)]
    if mem_mb is not None:
        bounds.append(mem_mb // IMAGE_PEAK_MB)
    return max(1, min(bounds))


def available_memory_mb(proc: Path = Path("/proc"),
                        cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Memory this process may still use, in MB; None where neither /proc/meminfo nor a
    cgroup limit can be read (not Linux)."""
    known = [b for b in [_meminfo_available(proc / "meminfo"),
                         *_cgroup_headroom(proc / "self" / "cgroup", cgroup_root)]
             if b is not None]
    return min(known) // 2**20 if known else None


def _meminfo_available(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom(self_cgroup: Path, root: Path) -> list[int]:
    """Bytes left under each memory limit from this process's cgroup up to the hierarchy's
    root, cgroup v2 and v1. Reclaimable page cache (inactive files) does not count as used,
    as ``docker stats`` reckons it."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return []
    headroom = []
    for line in lines:
        hierarchy, controllers, relative = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
            files = ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base = root / "memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        group = base / relative.lstrip("/")
        if not group.is_dir():  # inside a cgroup namespace the mount is the process's own
            group = base
        while True:
            limit, usage = _read_int(group / files[0]), _read_int(group / files[1])
            if limit is not None and usage is not None and limit < _NO_LIMIT:
                usage -= _stat(group / "memory.stat", files[2])
                headroom.append(max(0, limit - usage))
            if group == base or base not in group.parents:
                break
            group = group.parent
    return headroom


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # unreadable, or "max": no limit


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
