"""QC signals, verdicts, report rendering, probability resampling and the group tables, on
small arrays."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eneuronet_bids import outputs, qc, report
from eneuronet_bids.group import robust_z, run_group
from eneuronet_bids.labels import label_table
from eneuronet_bids.parser import UsageError
from eneuronet_bids.infer import native_probabilities_buffer
from eneuronet_bids.resample import resample_argmax

N = len(label_table())


def _probs(shape=(20, 6, 5), confident=True) -> torch.Tensor:
    p = torch.full((N, *shape), 0.0 if confident else 1.0 / N)
    if confident:
        p[1] = 1.0
    return p.half()


def test_summary_confident_and_uniform():
    brain = np.zeros((20, 6, 5), bool)
    brain[2:18] = True
    sure = qc.summarise_probabilities(_probs(), brain, slab=7)
    assert sure.mean_confidence == pytest.approx(1.0)
    assert sure.mean_entropy == pytest.approx(0.0, abs=1e-4)
    unsure = qc.summarise_probabilities(_probs(confident=False), brain, slab=7)
    assert unsure.mean_confidence == pytest.approx(1.0 / N, rel=1e-2)
    assert unsure.mean_entropy == pytest.approx(1.0, rel=1e-2)


def _norm_volumes(shift_sd: float = 0.0) -> dict[str, float]:
    return {name: m + shift_sd * s for name, (m, s) in qc.volume_norms().items()}


@pytest.mark.parametrize("conf, shift, warnings, verdict", [
    (0.9, 0.0, [], "pass"),
    (0.6, 0.0, [], "warn"),
    (0.3, 0.0, [], "fail"),
    (0.9, 3.5, [], "warn"),   # every structure and the total 3.5 SD off
    (0.9, 4.5, [], "warn"),   # most structures beyond |z| 4
    (0.9, 6.0, [], "fail"),   # total brain volume beyond |z| 5
    (0.9, 0.0, ["voxels are large"], "warn"),
])
def test_verdicts(conf, shift, warnings, verdict):
    summary = qc.GridSummary(conf, 0.1)
    z = qc.volume_z_scores(_norm_volumes(shift))
    result = qc.assess(summary, z, warnings)
    assert result.verdict == verdict
    assert (result.reasons == []) == (verdict == "pass")


def test_volumes_by_name_counts_voxels_and_total():
    labels = np.zeros((4, 4, 4), np.int16)
    labels[0] = 17
    labels[1, :2] = 2035
    v = qc.volumes_by_name(labels, 2.0)
    assert v["Left-Hippocampus"] == 32.0 and v["ctx-rh-insula"] == 16.0
    assert v[qc.TOTAL] == 48.0 and len(v) == N


def test_mosaic_is_a_png_and_report_embeds_it():
    image = np.random.default_rng(0).random((30, 40, 36)).astype(np.float32)
    brain = np.zeros(image.shape, bool)
    brain[5:25, 5:35, 5:30] = True
    labels = np.where(brain, 3, 0).astype(np.uint8)
    png = report.mosaic(image, brain, labels=labels, outlines=((brain, "red"),), n_slices=3)
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    result = qc.assess(qc.GridSummary(0.6, 0.2), {}, ["anisotropic voxels"])
    html = report.render_image_report(report.ImageReport(
        title="sub-01", source="/bids/sub-01_T1w.nii.gz", qc=result.to_dict(),
        volumes={"Left-Hippocampus": 4000.0, qc.TOTAL: 1.2e6},
        z_scores={"Left-Hippocampus": 5.0}, provenance={"Device": "cpu", "T": {"a": 1}},
        figures={"Parcellation": png}))
    assert "data:image/png;base64," + png in html
    assert "WARN" in html and "anisotropic voxels" in html
    assert '<tr class="flag">' in html  # the |z| > 4 structure is highlighted
    assert "http" not in html  # nothing to fetch


def test_probabilities_resampled_and_quantised(tmp_path):
    probs = _probs((8, 8, 8))
    out = native_probabilities_buffer((4, 4, 4), N, tmp_path / "a.npy")
    labels = resample_argmax(probs, np.diag([2.0, 2.0, 2.0, 1.0]), (4, 4, 4),
                             probabilities_out=out)
    assert (labels == 1).all()
    assert (out[..., 1] == 255).all() and out[..., 2:].max() == 0
    outside = native_probabilities_buffer((4, 4, 4), N, tmp_path / "b.npy")
    shift = np.eye(4)
    shift[:3, 3] = 100  # maps outside the input: certain background
    resample_argmax(probs, shift, (4, 4, 4), probabilities_out=outside)
    assert (outside[..., 0] == 255).all() and outside[..., 1:].max() == 0


def test_robust_z():
    z = robust_z(np.array([1.0, 1.1, 0.9, 1.0, 1.05, 9.0]))
    assert abs(z[-1]) > 3.5 and (np.abs(z[:-1]) < 3.5).all()
    assert (robust_z(np.ones(4)) == 0).all()


def test_entities_from_name():
    name = "sub-01_ses-a_acq-mp_run-2_desc-DKTaseg_dseg.json"
    assert outputs.entities_from_name(name) == {
        "subject": "01", "session": "a", "acquisition": "mp", "run": "2"}


def _fake_participant(out: Path, sub: str, total: float, verdict: str = "pass") -> None:
    from eneuronet_bids.discovery import WorkUnit

    paths = outputs.output_paths(out, WorkUnit(Path(f"/b/sub-{sub}_T1w.nii.gz"),
                                               {"subject": sub}))
    volumes = _norm_volumes()
    volumes[qc.TOTAL] = total
    for p in paths.all():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    paths.volumes.write_text(outputs.volumes_tsv(volumes))
    result = qc.QCResult(verdict, [] if verdict == "pass" else ["low"], 0.9, 0.1, 0.0, [])
    paths.dseg_json.write_text(json.dumps({"QC": result.to_dict()}))


def test_group_tables_and_outliers(tmp_path):
    for k in range(6):
        _fake_participant(tmp_path, f"{k:02d}", 1.2e6 + 1e3 * k)
    _fake_participant(tmp_path, "big", 2.5e6, verdict="warn")
    # incomplete: no completion marker, so not in the group
    (tmp_path / "sub-partial" / "anat").mkdir(parents=True)
    paths = run_group(tmp_path, None)
    vol = [r.split("\t") for r in paths.volumes.read_text().splitlines()]
    assert vol[0][0] == "subject" and vol[0][-1] == qc.TOTAL and len(vol) == 8
    assert [r[0] for r in vol[1:]] == ["00", "01", "02", "03", "04", "05", "big"]
    rows = {r.split("\t")[0]: r.split("\t") for r in paths.qc.read_text().splitlines()}
    header = rows["subject"]
    big = dict(zip(header, rows["big"]))
    assert big["group_outlier"] == "True" and big["verdict"] == "warn"
    assert big["report"] == "sub-big_desc-DKTaseg_report.html"
    assert dict(zip(header, rows["00"]))["group_outlier"] == "False"
    html = paths.report.read_text()
    assert 'href="sub-big_desc-DKTaseg_report.html"' in html
    assert "7 image(s): 6 pass, 1 warn, 0 fail; 1 group outlier(s)" in html

    only = run_group(tmp_path, ["sub-00", "01"])
    assert len(only.volumes.read_text().splitlines()) == 3


def test_group_without_outputs_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="run the participant level first"):
        run_group(tmp_path, None)
