import json

import pytest

from eneuronet_bids.discovery import DiscoveryError, discover, ignore_patterns, load_filter_file


def test_ds001_one_t1w_per_subject(shared):
    units = discover(shared / "bids-examples" / "ds001")
    assert len(units) == 16
    assert units[0].entities == {"subject": "01"}


def test_ds114_sessions_and_session_filter(shared):
    ds = shared / "bids-examples" / "ds114"
    units = discover(ds, participants=["sub-01", "02"])
    assert {(u.entities["subject"], u.entities["session"]) for u in units} == {
        ("01", "retest"), ("01", "test"), ("02", "retest"), ("02", "test")}
    only = discover(ds, participants=["01"], sessions=["ses-test"])
    assert [u.entities["session"] for u in only] == ["test"]


def test_synthetic_sessions(shared):
    units = discover(shared / "bids-examples" / "synthetic")
    assert len(units) == 10
    assert all("session" in u.entities for u in units)


def test_7t_trt_t1w_only_in_first_session(shared):
    ds = shared / "bids-examples" / "7t_trt"
    units = discover(ds)
    assert len(units) == 22 and {u.entities["session"] for u in units} == {"1"}
    with pytest.raises(DiscoveryError, match="no T1w"):
        discover(ds, participants=["01"], sessions=["2"])


def test_filter_file_chooses_by_acq_and_run(tmp_path):
    ds = tmp_path / "ds"
    anat = ds / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (ds / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    for name in ("sub-01_acq-mprage_run-1_T1w", "sub-01_acq-mprage_run-2_T1w",
                 "sub-01_acq-fast_T1w", "sub-01_T1w"):
        (anat / f"{name}.nii.gz").write_bytes(b"")
    f = tmp_path / "filter.json"
    f.write_text(json.dumps({"t1w": {"acquisition": "mprage", "run": 2}}))
    chosen = discover(ds, t1w_filter=load_filter_file(f))
    assert [u.path.name for u in chosen] == ["sub-01_acq-mprage_run-2_T1w.nii.gz"]
    assert chosen[0].entities == {"subject": "01", "acquisition": "mprage", "run": 2}
    f.write_text(json.dumps({"t1w": {"acquisition": None}}))
    assert [u.path.name for u in discover(ds, t1w_filter=load_filter_file(f))] == [
        "sub-01_T1w.nii.gz"]
    assert len(discover(ds)) == 4
    for bad, message in (({"t1w": ["x"]}, "must be an object"),
                         ({"t1w": {"run": {"a": 1}}}, 'value of "run" must be')):
        f.write_text(json.dumps(bad))
        with pytest.raises(DiscoveryError, match=message):
            load_filter_file(f)
    f.write_text(json.dumps({"t1w": {"acq": "mprage"}}))
    with pytest.raises(DiscoveryError, match="'acq' is not a recognized entity .*acquisition"):
        discover(ds, t1w_filter=load_filter_file(f))


def test_sample_bids_entities_and_metadata(shared):
    units = discover(shared / "sample-bids")
    assert [u.entities for u in units] == [
        {"subject": "brainchop", "session": "01"}, {"subject": "chris"}, {"subject": "otsu"}]
    assert all("Description" in u.metadata for u in units)


def test_mindboggle_sidecar_says_skull_stripped(shared):
    units = discover(shared / "mindboggle-oasis", participants=["01"])
    assert units[0].metadata["SkullStripped"] is True


@pytest.mark.parametrize("kwargs, message", [
    ({"participants": ["nobody"]}, "participant"),
    ({"participants": ["01"], "sessions": ["nosuch"]}, "session"),
    ({"t1w_filter": {"acquisition": "nosuch"}}, "no T1w"),
])
def test_unknown_selection_is_a_clear_error(shared, kwargs, message):
    with pytest.raises(DiscoveryError, match=message):
        discover(shared / "bids-examples" / "ds114", **kwargs)


def test_bad_filter_file(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text("{not json")
    with pytest.raises(DiscoveryError, match="bids-filter-file"):
        load_filter_file(f)


def test_every_t1w_entity_keeps_images_apart_in_the_outputs(tmp_path):
    """Multi-echo (MEMPRAGE), MP2RAGE inversions and magnitude/phase parts are separate T1w
    images; their outputs must not share names (one would be taken for the other's)."""
    from bids import BIDSLayout

    from eneuronet_bids import outputs

    ds = tmp_path / "ds"
    anat = ds / "sub-01" / "ses-1" / "anat"
    anat.mkdir(parents=True)
    (ds / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    names = ["sub-01_ses-1_echo-1_T1w", "sub-01_ses-1_echo-2_T1w", "sub-01_ses-1_inv-2_T1w",
             "sub-01_ses-1_acq-mp2rage_run-01_part-mag_T1w",
             "sub-01_ses-1_acq-mp2rage_run-01_part-phase_T1w", "sub-01_ses-1_task-rest_T1w"]
    for name in names:
        (anat / f"{name}.nii.gz").write_bytes(b"")
    units = discover(ds)
    out = tmp_path / "out"
    dsegs = [outputs.output_paths(out, u).dseg for u in units]
    # the output names carry the source's own entities, in the source's (BIDS) order
    assert sorted(p.name.removesuffix("_desc-DKTaseg_dseg.nii.gz") for p in dsegs) == \
        sorted(n.removesuffix("_T1w") for n in names)
    for path in dsegs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (out / "dataset_description.json").write_text(json.dumps(
        {"Name": "d", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "eneuronet"}]}))
    layout = BIDSLayout(str(ds), derivatives=[str(out)], validate=False)
    for unit, path in zip(units, dsegs):
        found = layout.derivatives.get_pipeline("eneuronet").get(
            suffix="dseg", desc="DKTaseg", extension=".nii.gz", return_type="filename",
            **unit.entities)
        assert found == [str(path)]


def test_index_skips_other_participants_and_datatypes():
    patterns = ignore_patterns(["01"])
    ignored = lambda path: any(p.search(path) for p in patterns)  # noqa: E731
    for path in ("/sub-010", "/sub-02", "/sub-02/anat/sub-02_T1w.nii.gz", "/sub-01/func",
                 "/sub-01/ses-1/dwi", "/code", "/sourcedata/x.dcm"):
        assert ignored(path), path
    for path in ("/sub-01", "/sub-01/ses-1/anat", "/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
                 "/sub-01/ses-1/sub-01_ses-1_T1w.json", "/sub-01/sub-01_scans.tsv", "/T1w.json",
                 "/participants.tsv", "/codebook.json"):
        assert not ignored(path), path
    assert not any(p.search("/sub-02") for p in ignore_patterns(None))


def test_selected_participant_keeps_inherited_metadata(tmp_path):
    ds = tmp_path / "ds"
    (ds / "dataset_description.json").parent.mkdir()
    (ds / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    (ds / "T1w.json").write_text('{"RepetitionTime": 2.3}')
    for sub in ("01", "010", "02"):
        ses = ds / f"sub-{sub}" / "ses-1"
        for datatype, name in (("anat", "T1w.nii.gz"), ("func", "task-rest_bold.nii.gz")):
            (ses / datatype).mkdir(parents=True)
            (ses / datatype / f"sub-{sub}_ses-1_{name}").write_bytes(b"")
    (ds / "sub-01" / "ses-1" / "sub-01_ses-1_T1w.json").write_text('{"SkullStripped": true}')
    units = discover(ds, participants=["sub-01"])
    assert [u.entities for u in units] == [{"subject": "01", "session": "1"}]
    assert units[0].metadata["RepetitionTime"] == 2.3 and units[0].metadata["SkullStripped"]
    assert len(discover(ds)) == 3
    with pytest.raises(DiscoveryError, match="sub-03"):
        discover(ds, participants=["01", "03"])


def test_discovery_benchmark_on_a_small_synthetic_study(tmp_path, monkeypatch):
    import benchmark_discovery

    out = tmp_path / "discovery.tsv"
    monkeypatch.setattr("sys.argv", ["benchmark_discovery.py", "--subjects", "3",
                                     "--work", str(tmp_path / "ds"), "--out", str(out)])
    benchmark_discovery.main()
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("one participant", "68", "2"),
                                                   ("all participants", "68", "6")]
