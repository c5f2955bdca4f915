"""End to end: the participant level on a real full-head scan with the shipped weights, the
reliability guarantees, and every error path with a real broken input."""

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from eneuronet_bids import outputs
from eneuronet_bids.cli import (EXIT_FAILED, EXIT_MODEL, EXIT_OK, EXIT_TERMINATED,
                                EXIT_USAGE, main)
from eneuronet_bids.discovery import WorkUnit
from eneuronet_bids.labels import label_table
from eneuronet_bids.model_io import sha256, shipped_model
from eneuronet_bids.preprocess import InputError, load_t1w

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


def _dataset(root: Path, name: str = "ds") -> Path:
    ds = root / name
    ds.mkdir()
    (ds / "dataset_description.json").write_text(
        json.dumps({"Name": name, "BIDSVersion": "1.10.0"}))
    return ds


def _add_t1w(ds: Path, sub: str, img=None, *, link: Path | None = None,
             raw: bytes | None = None) -> Path:
    anat = ds / f"sub-{sub}" / "anat"
    anat.mkdir(parents=True)
    path = anat / f"sub-{sub}_T1w.nii.gz"
    if link is not None:
        path.symlink_to(link)
    elif raw is not None:
        path.write_bytes(raw)
    else:
        nib.save(img, path)
    return path


def _snapshot(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def run(shared, tmp_path_factory):
    """A real full-head scan and a corrupt one in one dataset, run with an unwritable HOME;
    the first attempt is SIGKILLed midway."""
    root = tmp_path_factory.mktemp("e2e")
    ds = _dataset(root)
    src = shared / "sample-bids" / "sub-otsu" / "anat" / "sub-otsu_T1w.nii.gz"
    _add_t1w(ds, "otsu", link=src)
    good = src.read_bytes()
    _add_t1w(ds, "broken", raw=good[: len(good) // 3])
    out = root / "out"
    work = root / "work"
    before = _snapshot(ds)
    env = {**os.environ, "HOME": "/nonexistent", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "run.py"), str(ds), str(out), "participant",
           "--skip-bids-validation", "-w", str(work), "--nprocs", "2", "--save-probabilities"]

    killed = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(12)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    unit = WorkUnit(ds / "sub-otsu/anat/sub-otsu_T1w.nii.gz", {"subject": "otsu"})
    paths = outputs.output_paths(out, unit)
    complete_after_kill = outputs.is_complete(paths, probabilities=True)

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return {"ds": ds, "out": out, "src": src, "paths": paths, "proc": proc, "cmd": cmd,
            "env": env, "before": before, "complete_after_kill": complete_after_kill}


def test_killed_run_leaves_nothing_complete(run):
    assert not run["complete_after_kill"]


@pytest.mark.parametrize("nprocs", ["1", "2"])  # in this process; in worker processes
def test_sigterm_stops_at_once_and_cleans_up(shared, tmp_path, nprocs):
    """docker stop or a batch system's time limit: exit 143 with one line, no temporary
    work directory or temporary output file left behind, nothing taken for complete."""
    ds = _dataset(tmp_path)
    src = shared / "sample-bids" / "sub-otsu" / "anat" / "sub-otsu_T1w.nii.gz"
    for sub in ("a", "b"):
        _add_t1w(ds, sub, link=src)
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), str(ds), str(out),
                             "participant", "--skip-bids-validation", "--nprocs", nprocs,
                             "--omp-nthreads", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp.glob("eneuronet_work_*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the temporary work directory: the handler is in place
    time.sleep(6)  # into the images' preprocessing
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == EXIT_TERMINATED, stderr
    assert time.monotonic() - sent < 30  # not the rest of the images
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert list(tmp.iterdir()) == []
    assert not [f for f in out.rglob(".*")], "temporary files left in output_dir"
    for sub in ("a", "b"):
        unit = WorkUnit(ds / f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz", {"subject": sub})
        assert not outputs.is_complete(outputs.output_paths(out, unit))


def test_one_failure_does_not_stop_the_others(run):
    proc = run["proc"]
    assert proc.returncode == EXIT_FAILED, proc.stderr
    assert "sub-broken_T1w.nii.gz: failed: " in proc.stderr
    assert "cannot read NIfTI" in proc.stderr
    assert "summary: 1 done, 0 skipped (already complete), 1 failed" in proc.stderr
    assert outputs.is_complete(run["paths"], probabilities=True)


def test_outputs_on_the_native_grid(run):
    src = nib.load(run["src"])
    for path in (run["paths"].dseg, run["paths"].mask, run["paths"].preproc):
        img = nib.load(path)
        assert img.shape == src.shape
        assert np.allclose(img.affine, src.affine, atol=1e-4)
    dseg = np.asarray(nib.load(run["paths"].dseg).dataobj)
    mask = np.asarray(nib.load(run["paths"].mask).dataobj) > 0
    assert np.isin(np.unique(dseg), label_table().indices).all()
    # Accuracy is measured by scripts/evaluate_mindboggle.py, not here; here: the labels sit
    # in the brain, on both sides (left/right not swapped by any resampling).
    labelled = dseg > 0
    assert labelled.sum() * np.prod(src.header.get_zooms()[:3]) / 1000 > 100  # ml
    assert (labelled & mask).sum() / labelled.sum() > 0.95
    canonical = nib.as_closest_canonical(nib.load(run["paths"].dseg))
    ras = np.asarray(canonical.dataobj)
    half = ras.shape[0] // 2
    # the first RAS axis runs from left to right
    assert (ras[:half] == 2).sum() > 10 * (ras[half:] == 2).sum()
    assert (ras[half:] == 41).sum() > 10 * (ras[:half] == 41).sum()


def test_volumes_and_sidecars(run):
    paths = run["paths"]
    dseg = np.asarray(nib.load(paths.dseg).dataobj)
    vox = float(np.prod(nib.load(paths.dseg).header.get_zooms()[:3]))
    rows = [r.split("\t") for r in paths.volumes.read_text().strip().splitlines()]
    assert rows[0] == ["index", "name", "volume_mm3"]
    vols = {r[0]: float(r[2]) for r in rows[1:]}
    assert vols["17"] == pytest.approx((dseg == 17).sum() * vox, abs=0.1)
    assert vols["n/a"] == pytest.approx((dseg > 0).sum() * vox, abs=0.1)
    side = json.loads(paths.dseg_json.read_text())
    assert side["Sources"] == ["bids:raw:sub-otsu/anat/sub-otsu_T1w.nii.gz"]
    assert side["Model"]["SHA256"] == sha256(shipped_model())
    assert side["Device"] == "cpu" and side["TestTimeFlip"] is True
    for stage in ("bias_correction", "brain_extraction", "registration", "model_forward",
                  "resample_to_native", "cleanup", "total"):
        assert side["StageTimings"][stage] > 0
    assert side["CorticalIslandVoxelsRelabelled"] > 0  # a real head always has some
    assert side["SkullStrippedInput"] is False
    desc = json.loads((run["out"] / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    methods = outputs.methods_path(run["out"]).read_text()
    assert sha256(shipped_model()) in methods and "mirrored left-right" in methods


def test_probabilities_on_the_native_grid(run):
    paths = run["paths"]
    img = nib.load(paths.probseg)
    dseg = np.asarray(nib.load(paths.dseg).dataobj)
    assert img.shape == (*dseg.shape, len(label_table()))
    assert np.allclose(img.affine, nib.load(run["src"]).affine, atol=1e-4)
    centre = tuple(slice(n // 2 - 8, n // 2 + 8) for n in dseg.shape)
    block = np.asarray(img.dataobj[centre])  # scaled back to [0, 1]
    assert np.allclose(block.sum(-1), 1.0, atol=0.15)
    agree = (label_table().indices[block.argmax(-1)] == dseg[centre]).mean()
    assert agree > 0.95  # ties after 8-bit quantisation may flip a few voxels
    label_map = json.loads(paths.probseg_json.read_text())["LabelMap"]
    assert label_map["1"] == {"index": 2, "name": "Left-Cerebral-White-Matter"}


def test_report_and_qc(run):
    paths = run["paths"]
    html = paths.report.read_text()
    assert paths.report.parent == run["out"]
    assert html.count("data:image/png;base64,") == 3
    for text in ("QC verdict", "Alignment check", "Left-Hippocampus", "StageTimings"):
        assert text in html
    side = json.loads(paths.dseg_json.read_text())
    assert side["QC"]["verdict"] in ("pass", "warn", "fail")
    assert 0 < side["QC"]["mean_confidence"] <= 1
    assert f'>{side["QC"]["verdict"].upper()}<' in html


def test_group_level_on_participant_outputs(run):
    proc = subprocess.run(run["cmd"][:4] + ["group"], env=run["env"], capture_output=True,
                          text=True)
    assert proc.returncode == EXIT_OK, proc.stderr
    out = run["out"]
    volumes = [r.split("\t") for r in (out / "group_volumes.tsv").read_text().splitlines()]
    assert len(volumes) == 2 and volumes[1][0] == "otsu"
    own = {r.split("\t")[1]: float(r.split("\t")[2])
           for r in run["paths"].volumes.read_text().splitlines()[1:]}
    assert float(volumes[1][volumes[0].index("Left-Hippocampus")]) == pytest.approx(
        own["Left-Hippocampus"])
    qc_rows = [r.split("\t") for r in (out / "group_qc.tsv").read_text().splitlines()]
    assert qc_rows[1][qc_rows[0].index("report")] == run["paths"].report.name
    assert run["paths"].report.name in (out / "group.html").read_text()
    # The lists the container checks compare against (scripts/verify-container.sh, CircleCI).
    made = {str(f.relative_to(out)) for f in out.rglob("*") if f.is_file()}
    expected = set((REPO / "docs" / "container_expected_outputs.txt").read_text().split())
    probabilities = {str(p.relative_to(out))
                     for p in (run["paths"].probseg, run["paths"].probseg_json)}
    assert made == expected | probabilities
    circleci = (REPO / ".circleci" / "expected_outputs_ds001.txt").read_text().split()
    assert set(circleci) == {name.replace("sub-otsu", sub) for name in expected
                             for sub in ("sub-01", "sub-02")}


def test_reports_in_headless_chromium(run, tmp_path):
    """Both reports open from file:// in Debian's Chromium: no console errors, every image
    decoded, a screenshot that is not blank."""
    from playwright.sync_api import sync_playwright

    group = run["out"] / "group.html"
    if not group.exists():  # when this test runs alone
        subprocess.run(run["cmd"][:4] + ["group"], env=run["env"], check=True)
    chromium = Path(os.environ.get("ENEURONET_CHROMIUM", "/usr/bin/chromium"))
    assert chromium.is_file(), f"{chromium} missing: apt-get install chromium (see .ci/run)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for html in (run["paths"].report, group):
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert widths and all(w > 0 for w in widths), (html.name, widths)
            shot = tmp_path / f"{html.stem}.png"
            page.screenshot(path=str(shot), full_page=True)
            pixels = np.asarray(Image.open(shot).convert("L"))
            assert pixels.std() > 10, f"{html.name} renders blank"
        browser.close()
    assert errors == []


def test_pybids_indexes_every_output(run):
    from bids import BIDSLayout

    layout = BIDSLayout(str(run["ds"]), derivatives=[str(run["out"])], validate=False)
    d = layout.derivatives.get_pipeline("eneuronet")
    q = {"subject": "otsu", "return_type": "filename"}
    assert d.get(desc="DKTaseg", suffix="dseg", extension=".nii.gz", **q) == [str(run["paths"].dseg)]
    assert d.get(desc="brain", suffix="mask", extension=".nii.gz", **q) == [str(run["paths"].mask)]
    assert d.get(desc="preproc", suffix="T1w", extension=".nii.gz", **q) == [str(run["paths"].preproc)]
    assert d.get(suffix="xfm", extension=".mat", **q) == [str(run["paths"].xfm)]
    assert d.get(desc="DKTaseg", suffix="volumes", extension=".tsv", **q) == [str(run["paths"].volumes)]


def test_nothing_written_into_bids_dir(run):
    assert _snapshot(run["ds"]) == run["before"]


def test_rerun_skips_complete_outputs(run):
    stamp = run["paths"].dseg.stat().st_mtime
    proc = subprocess.run(run["cmd"] + ["--participant-label", "otsu"], env=run["env"],
                          capture_output=True, text=True)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "1 skipped" in proc.stderr
    assert run["paths"].dseg.stat().st_mtime == stamp


def test_rerun_with_another_setting_recomputes(run, tmp_path):
    """Outputs made with the test-time flip are not taken for those of a run without it
    (likewise for another --model: ``made_alike``)."""
    out = tmp_path / "out"
    shutil.copytree(run["out"], out)
    cmd = [str(out) if c == str(run["out"]) else c for c in run["cmd"]]
    proc = subprocess.run(cmd + ["--participant-label", "otsu", "--no-test-time-flip"],
                          env=run["env"], capture_output=True, text=True)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "sub-otsu_T1w.nii.gz: its outputs were made with another model" in proc.stderr
    assert "summary: 1 done, 0 skipped" in proc.stderr
    paths = outputs.output_paths(out, WorkUnit(run["paths"].dseg, {"subject": "otsu"}))
    assert json.loads(paths.dseg_json.read_text())["TestTimeFlip"] is False


# ---- error paths, each with a real broken input --------------------------------------------

def _img(shape, value=1.0, zooms=(1, 1, 1)):
    data = np.full(shape, value, dtype=np.float32)
    return nib.Nifti1Image(data, np.diag([*zooms, 1][:4]) if len(shape) >= 3 else np.eye(4))


@pytest.mark.parametrize("img, message", [
    (_img((24, 24, 24, 3)), "expected a 3D"),
    (_img((64, 64)), "expected a 3D"),
    (_img((32, 32, 32), 0.0), "all zeros"),
    (_img((32, 32, 32), np.nan), "NaN"),
    (nib.Nifti1Image(np.full((32, 32, 32), 1 + 1j, np.complex64), np.eye(4)), "complex values"),
    (nib.Nifti1Image(np.zeros((32, 32, 32), [("R", "u1"), ("G", "u1"), ("B", "u1")]),
                     np.eye(4)), "colour (RGB) values"),
])
def test_bad_images_fail_with_one_line(tmp_path, img, message, caplog):
    ds = _dataset(tmp_path)
    _add_t1w(ds, "bad", img)
    code = main([str(ds), str(tmp_path / "out"), "participant", "--skip-bids-validation"])
    assert code == EXIT_FAILED
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(message in e and "\n" not in e for e in errors)
    assert all(e.count("sub-bad_T1w.nii.gz") == 1 for e in errors if message in e)


@pytest.mark.parametrize("mem_mb, workers", [("9216", 2), ("8192", 1)])
def test_images_in_worker_processes(tmp_path, caplog, mem_mb, workers):
    """--nprocs over --omp-nthreads runs images in a process pool, as many as --mem-mb allows
    at 4.5 GB each; failures come back as results, and the shared files are written from the
    parent."""
    ds = _dataset(tmp_path)
    _add_t1w(ds, "a", _img((32, 32, 32), 0.0))
    _add_t1w(ds, "b", _img((32, 32, 32), np.nan))
    out = tmp_path / "out"
    code = main([str(ds), str(out), "participant", "--skip-bids-validation", "--nprocs", "2",
                 "--omp-nthreads", "1", "--mem-mb", mem_mb])
    assert code == EXIT_FAILED
    limited = "1 image(s) at a time, not more: 8.0 GB of memory (--mem-mb) allows one per 4.5 GB"
    assert (limited in caplog.text) == (workers == 1)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "failed: sub-a_T1w.nii.gz: image is all zeros" in errors
    assert any(e.startswith("failed: sub-b_T1w.nii.gz: image contains NaN") for e in errors)
    assert sha256(shipped_model()) in outputs.methods_path(out).read_text()


def test_truncated_gzip_is_reported(tmp_path):
    raw = gzip.compress(b"\0" * 4096)[:40]
    path = tmp_path / "t_T1w.nii.gz"
    path.write_bytes(raw)
    with pytest.raises(InputError, match="cannot read NIfTI"):
        load_t1w(path)


def test_unfetched_annex_link_is_reported(tmp_path):
    """A DataLad clone's image before `datalad get`: a link into .git/annex that leads nowhere."""
    path = tmp_path / "sub-01_T1w.nii.gz"
    path.symlink_to(tmp_path / ".git" / "annex" / "objects" / "Xy" / "SHA256E-s1--ab.nii.gz")
    with pytest.raises(InputError, match="symbolic link to a missing file .*datalad get"):
        load_t1w(path)


def test_degenerate_affine_is_reported(tmp_path):
    """An sform with a zero row, written byte by byte (nibabel itself refuses to make one)."""
    plain = tmp_path / "plain.nii"
    img = _img((32, 32, 32))
    img.header["sform_code"], img.header["qform_code"] = 1, 0
    nib.save(img, plain)
    raw = bytearray(plain.read_bytes())
    raw[312:328] = struct.pack("<4f", 0, 0, 0, 0)  # srow_z of the NIfTI-1 header
    path = tmp_path / "d_T1w.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(InputError, match="affine .* is degenerate"):
        load_t1w(path)


def test_large_or_anisotropic_voxels_warn_but_load(tmp_path):
    path = tmp_path / "a.nii.gz"
    nib.save(_img((40, 40, 20), zooms=(1, 1, 3)), path)
    _, warnings = load_t1w(path)
    assert any("larger than 1.5 mm" in w for w in warnings)
    assert any("anisotropic" in w for w in warnings)


@pytest.mark.parametrize("setup, extra, message", [
    ("missing", [], "does not exist"),
    ("not_bids", [], "not a BIDS dataset"),
    ("no_t1w", [], "no T1w"),
    ("ok", ["--participant-label", "nobody"], "participant(s) not found"),
    ("ok", ["--session-label", "nosuch"], "session(s) not found"),
    ("ok", ["--bids-filter-file", "FILTER"], "'acq' is not a recognized entity"),
    ("invalid", [], "is not valid BIDS"),
])
def test_dataset_errors_exit_2(tmp_path, caplog, setup, extra, message):
    ds = tmp_path / "ds"
    if setup in ("not_bids", "no_t1w", "ok", "invalid"):
        ds.mkdir()
    if setup in ("no_t1w", "ok"):
        (ds / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
        (ds / "sub-01" / "func").mkdir(parents=True)
    if setup == "ok":
        _add_t1w(ds, "01", _img((32, 32, 32)))
    if setup == "invalid":
        (ds / "dataset_description.json").write_text('{"Name": "x"}')
        _add_t1w(ds, "01", _img((32, 32, 32)))
    if "FILTER" in extra:
        (tmp_path / "filter.json").write_text('{"t1w": {"acq": "mprage"}}')
        extra = [str(tmp_path / "filter.json") if a == "FILTER" else a for a in extra]
    skip = [] if setup == "invalid" else ["--skip-bids-validation"]
    code = main([str(ds), str(tmp_path / "out"), "participant", *skip, *extra])
    assert code == EXIT_USAGE
    assert any(message in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_corrupt_model_exits_3(tmp_path, caplog):
    ds = _dataset(tmp_path)
    _add_t1w(ds, "01", _img((32, 32, 32)))
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a model")
    code = main([str(ds), str(tmp_path / "out"), "participant", "--skip-bids-validation",
                 "--model", str(model)])
    assert code == EXIT_MODEL
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    missing = main([str(ds), str(tmp_path / "out"), "participant", "--skip-bids-validation",
                    "--model", str(tmp_path / "absent.pt")])
    assert missing == EXIT_USAGE


def test_boilerplate_only_processes_nothing(tmp_path, caplog):
    caplog.set_level("INFO")
    ds = _dataset(tmp_path)
    _add_t1w(ds, "01", _img((32, 32, 32)))
    out = tmp_path / "out"
    code = main([str(ds), str(out), "participant", "--skip-bids-validation",
                 "--boilerplate-only", "--no-test-time-flip"])
    assert code == EXIT_OK
    methods = outputs.methods_path(out).read_text()
    assert sha256(shipped_model()) in methods and "mirrored" not in methods
    assert not list(out.glob("sub-*"))
    assert "boilerplate written" in caplog.text and "to process" not in caplog.text
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a model")
    assert main([str(ds), str(tmp_path / "out2"), "participant", "--skip-bids-validation",
                 "--boilerplate-only", "--model", str(model)]) == EXIT_MODEL


def test_unwritable_output_exits_2(tmp_path, shared):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main([str(shared / "sample-bids"), str(blocker / "out"), "participant",
                 "--skip-bids-validation"])
    assert code == EXIT_USAGE


@pytest.mark.parametrize("description, owner", [
    ('{"Name": "fMRIPrep", "DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep"}]}',
     "derivatives of fMRIPrep"),
    ('{"Name": "old", "PipelineDescription": {"Name": "freesurfer"}}', "derivatives of freesurfer"),
    ('{"Name": "another study", "BIDSVersion": "1.10.0"}', "a raw BIDS dataset"),
    ('{"Name": "cut sho', "not a readable JSON description"),
])
def test_output_dir_of_another_dataset_is_refused_untouched(tmp_path, caplog, description, owner):
    ds = _dataset(tmp_path)
    _add_t1w(ds, "01", _img((32, 32, 32)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_description.json").write_text(description)
    code = main([str(ds), str(out), "participant", "--skip-bids-validation"])
    assert code == EXIT_USAGE
    assert owner in caplog.text and "folder of its own" in caplog.text
    assert [f.name for f in out.iterdir()] == ["dataset_description.json"]
    assert (out / "dataset_description.json").read_text() == description


def test_output_dir_of_an_earlier_run_is_reused(tmp_path):
    ds = _dataset(tmp_path)
    _add_t1w(ds, "01", _img((32, 32, 32)))
    out = tmp_path / "out"
    for _ in range(2):  # the second run finds the first one's description
        assert main([str(ds), str(out), "participant", "--skip-bids-validation",
                     "--boilerplate-only"]) == EXIT_OK
    assert outputs.foreign_dataset(out) is None
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == \
        "derivative"


def test_group_level_without_participant_outputs_exits_2(tmp_path, shared, caplog):
    code = main([str(shared / "sample-bids"), str(tmp_path / "out"), "group"])
    assert code == EXIT_USAGE
    assert any("run the participant level first" in r.getMessage() for r in caplog.records)


def test_missing_templates_exit_2_without_download(tmp_path, caplog, missing_templates):
    ds = _dataset(tmp_path)
    _add_t1w(ds, "01", _img((32, 32, 32)))
    code = main([str(ds), str(tmp_path / "out"), "participant", "--skip-bids-validation"])
    assert code == EXIT_USAGE
    assert any("TEMPLATEFLOW_HOME" in r.getMessage() for r in caplog.records
               if r.levelname == "ERROR")
