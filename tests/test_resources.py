"""Images run at once: bounded by CPUs, images and memory; memory read from /proc and cgroups."""

from pathlib import Path

import pytest

from eneuronet_bids.parser import UsageError, parse_args, validate_paths
from eneuronet_bids.resources import IMAGE_PEAK_MB, available_memory_mb, worker_count

GB = 2**30


@pytest.mark.parametrize("images, nprocs, omp, mem_mb, expected", [
    (10, 8, 1, None, 8),                   # CPUs
    (3, 8, 1, None, 3),                    # images
    (10, 8, 2, None, 4),                   # threads per image
    (10, 64, 1, 14 * 1024, 3),             # memory: 14 GB, 4.5 GB an image
    (10, 8, 1, IMAGE_PEAK_MB - 1, 1),      # never fewer than one
    (10, 1, 4, None, 1),
])
def test_worker_count(images, nprocs, omp, mem_mb, expected):
    assert worker_count(images, nprocs, omp, mem_mb) == expected


def _proc(tmp_path: Path, available_kb: int, self_cgroup: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available_kb} kB\n")
    (proc / "self" / "cgroup").write_text(self_cgroup)
    return proc


def _group(path: Path, files: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)


def test_meminfo_alone(tmp_path):
    proc = _proc(tmp_path, 10 * 2**20, "0::/\n")
    assert available_memory_mb(proc, tmp_path / "no-cgroups") == 10 * 1024


def test_cgroup_v2_limit_of_a_parent_binds_and_page_cache_is_not_use(tmp_path):
    # A batch job's limit on the job's cgroup; the process sits in a step below it.
    proc = _proc(tmp_path, 100 * 2**20, "0::/job_7/step_0\n")
    root = tmp_path / "cgroup"
    _group(root, {"cgroup.controllers": "cpu memory"})
    _group(root / "job_7", {"memory.max": str(16 * GB), "memory.current": str(9 * GB),
                            "memory.stat": f"anon 1\ninactive_file {3 * GB}\n"})
    _group(root / "job_7" / "step_0", {"memory.max": "max", "memory.current": str(GB)})
    assert available_memory_mb(proc, root) == 10 * 1024  # 16 - (9 - 3)


def test_cgroup_v1_container_limit(tmp_path):
    # Inside a cgroup namespace the process's path names no folder: the mount is its own.
    proc = _proc(tmp_path, 100 * 2**20, "4:memory:/docker/abc\n2:cpu:/\n")
    root = tmp_path / "cgroup"
    _group(root / "memory", {"memory.limit_in_bytes": str(8 * GB),
                             "memory.usage_in_bytes": str(2 * GB),
                             "memory.stat": f"total_inactive_file {GB}\n"})
    assert available_memory_mb(proc, root) == 7 * 1024


def test_cgroup_without_limit_leaves_meminfo(tmp_path):
    proc = _proc(tmp_path, 5 * 2**20, "4:memory:/\n")
    root = tmp_path / "cgroup"
    _group(root / "memory", {"memory.limit_in_bytes": "9223372036854771712",
                             "memory.usage_in_bytes": str(50 * GB)})
    assert available_memory_mb(proc, root) == 5 * 1024


def test_this_machine_reports_memory():
    assert available_memory_mb() > 0


def test_mem_option_fmriprep_spellings(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    for flag in ("--mem-mb", "--mem_mb", "--mem"):
        assert parse_args([str(bids), str(tmp_path / "o"), "participant", flag, "8000"]).mem_mb \
            == 8000
    with pytest.raises(UsageError, match="--mem-mb"):
        validate_paths(parse_args([str(bids), str(tmp_path / "o"), "participant",
                                   "--mem-mb", "0"]))
