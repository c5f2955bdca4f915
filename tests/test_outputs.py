import json
import stat
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from eneuronet_bids import outputs
from eneuronet_bids.atomic import write_atomic
from eneuronet_bids.qc import volumes_by_name
from eneuronet_bids.discovery import WorkUnit


def unit(**entities):
    return WorkUnit(Path("/bids/x_T1w.nii.gz"), entities)


def test_names_carry_source_entities_in_bids_order(tmp_path):
    p = outputs.output_paths(tmp_path, unit(subject="01", session="2", run="3",
                                            acquisition="mprage", reconstruction="norm"))
    assert p.dseg == tmp_path / "sub-01/ses-2/anat/sub-01_ses-2_acq-mprage_rec-norm_run-3_desc-DKTaseg_dseg.nii.gz"
    assert p.xfm.name == "sub-01_ses-2_acq-mprage_rec-norm_run-3_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.mat"
    assert p.mask.name.endswith("_desc-brain_mask.nii.gz")
    assert p.preproc.name.endswith("_desc-preproc_T1w.nii.gz")
    assert p.all()[-1] == p.dseg_json  # the completion marker is written last


def test_no_session_folder_without_session(tmp_path):
    p = outputs.output_paths(tmp_path, unit(subject="a"))
    assert p.dseg.parent == tmp_path / "sub-a" / "anat"


def test_volumes_table_counts_voxels():
    labels = np.zeros((4, 4, 4), dtype=np.int16)
    labels[0] = 17
    labels[1, :2] = 2035
    text = outputs.volumes_tsv(volumes_by_name(labels, voxel_volume=2.0))
    rows = {r.split("\t")[0]: r.split("\t") for r in text.strip().splitlines()[1:]}
    assert float(rows["17"][2]) == 32.0
    assert float(rows["2035"][2]) == 16.0
    assert float(rows["41"][2]) == 0.0
    assert rows["n/a"][1] == "Total-Brain" and float(rows["n/a"][2]) == 48.0


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    outputs.write_json(target, {"a": 1})

    def broken(tmp):
        tmp.write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_dataset_description_and_dseg_tsv(tmp_path):
    outputs.write_dataset_description(tmp_path, Path("/data/bids"))
    desc = json.loads((tmp_path / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "eneuronet"
    assert desc["SourceDatasets"][0]["URL"] == "file:///data/bids"
    lines = (tmp_path / "dseg.tsv").read_text().splitlines()
    assert lines[0] == "index\tname\tabbreviation\tcolor\tmapping"
    assert len(lines) == 102


def test_nifti_written_with_input_grid(tmp_path):
    like = nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), np.diag([2, 2, 2, 1]))
    outputs.write_nifti(tmp_path / "a.nii.gz", np.ones((3, 4, 5)), like, np.int16)
    out = nib.load(tmp_path / "a.nii.gz")
    assert out.shape == (3, 4, 5) and np.allclose(out.affine, like.affine)
    assert out.get_data_dtype() == np.int16


@pytest.mark.parametrize("skull_stripped", [False, True])
def test_image_outputs_complete_and_preproc_sidecar_says_if_skull_stripped(tmp_path,
                                                                          skull_stripped):
    like = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    labels = np.zeros((4, 4, 4), np.int16)
    labels[1:3, 1:3, 1:3] = 17
    xfm = tmp_path / "rigid.mat"
    xfm.write_bytes(b"transform")
    paths = outputs.output_paths(tmp_path / "out", unit(subject="01"))
    paths.dseg.parent.mkdir(parents=True)
    outputs.write_image_outputs(
        paths, unit=WorkUnit(Path("/bids/sub-01/anat/sub-01_T1w.nii.gz"), {"subject": "01"}),
        bids_dir=Path("/bids"), native=like, labels=labels, preproc=np.ones((4, 4, 4)),
        skull_stripped=skull_stripped, mask=(labels > 0).astype(np.uint8), xfm=xfm,
        volumes=volumes_by_name(labels, 1.0), qc={"verdict": "pass"}, report_html="<html/>",
        provenance={"Device": "cpu"})
    assert outputs.is_complete(paths)
    side = json.loads(paths.preproc_json.read_text())
    assert side["SkullStripped"] is skull_stripped
    assert side["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert paths.xfm.read_bytes() == b"transform"


@pytest.mark.parametrize("sidecar, alike", [
    ({"Model": {"SHA256": "aa"}, "TestTimeFlip": True, "CorticalIslandVoxelsRelabelled": 9}, True),
    ({"Model": {"SHA256": "bb"}, "TestTimeFlip": True, "CorticalIslandVoxelsRelabelled": 9},
     False),                                                      # another model
    ({"Model": {"SHA256": "aa"}, "TestTimeFlip": False, "CorticalIslandVoxelsRelabelled": 9},
     False),                                                      # another flip setting
    ({"Model": {"SHA256": "aa"}, "TestTimeFlip": True}, False),   # before the cortical clean-up
    ({"Model": {"SHA256": "aa"}, "CorticalIslandVoxelsRelabelled": 9}, False),  # not recorded
    ({"Model": "aa", "TestTimeFlip": True, "CorticalIslandVoxelsRelabelled": 9}, False),
    ("[1, 2", False),                                             # not JSON
])
def test_complete_outputs_count_only_when_made_alike(tmp_path, sidecar, alike):
    from eneuronet_bids.pipeline import made_alike

    p = outputs.output_paths(tmp_path, unit(subject="a"))
    p.dseg_json.parent.mkdir(parents=True)
    p.dseg_json.write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    assert made_alike(p, "aa", True) is alike


@pytest.mark.parametrize("entities", [{"subject": "01", "session": "a", "run": "2"},
                                      {"subject": "02", "acquisition": "mprage"}])
def test_paths_beside_a_parcellation_are_its_image_outputs(tmp_path, entities):
    t1w = tmp_path / "sub-x_T1w.nii.gz"
    paths = outputs.output_paths(tmp_path / "out", WorkUnit(t1w, entities))
    assert outputs.paths_beside(paths.dseg) == paths


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    # A fresh interpreter: the module reads the umask once, when it is imported.
    target = tmp_path / "sub" / "file.json"
    code = (f"import os; os.umask({umask}); from eneuronet_bids.atomic import write_text; "
            f"from pathlib import Path; write_text(Path({str(target)!r}), 'x')")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temporary left
