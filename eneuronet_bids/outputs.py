"""The derivatives writer: the one module that knows BIDS-Derivatives output naming.

Every file is written under a temporary name and renamed into place; the parcellation's JSON
sidecar is written last, so its presence marks an image's outputs as complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from . import __version__
from .atomic import write_atomic, write_text
from .discovery import NAME_ENTITIES, WorkUnit
from .labels import label_table
from .templates import TEMPLATE

PIPELINE = "eneuronet"
DESC = "DKTaseg"
BIDS_VERSION = "1.10.0"
CODE_URL = "https://github.com/eneuronet/eneuronet"
_SHORT = {"subject": "sub", "session": "ses", "acquisition": "acq", "ceagent": "ce",
          "reconstruction": "rec"}
#: BIDS entities that carry from a T1w into its output names: (long name, short name).
ENTITY_KEYS = tuple((key, _SHORT.get(key, key)) for key in NAME_ENTITIES)


@dataclass(frozen=True)
class OutputPaths:
    dseg: Path
    dseg_json: Path
    volumes: Path
    preproc: Path
    preproc_json: Path
    mask: Path
    mask_json: Path
    xfm: Path
    probseg: Path
    probseg_json: Path
    report: Path

    def all(self, probabilities: bool = False) -> list[Path]:
        """Every output, the completion marker (dseg sidecar) last."""
        extra = [self.probseg, self.probseg_json] if probabilities else []
        return [self.dseg, self.volumes, self.preproc, self.preproc_json, self.mask,
                self.mask_json, self.xfm, *extra, self.report, self.dseg_json]


@dataclass(frozen=True)
class GroupPaths:
    volumes: Path
    qc: Path
    report: Path


def group_paths(output_dir: Path) -> GroupPaths:
    return GroupPaths(output_dir / "group_volumes.tsv", output_dir / "group_qc.tsv",
                      output_dir / "group.html")


def output_paths(output_dir: Path, unit: WorkUnit) -> OutputPaths:
    return _paths_for(output_dir, unit.entities)


def _paths_for(output_dir: Path, ent: dict) -> OutputPaths:
    parts = [f"{short}-{ent[key]}" for key, short in ENTITY_KEYS if key in ent]
    folder = output_dir / f"sub-{ent['subject']}"
    if "session" in ent:
        folder = folder / f"ses-{ent['session']}"
    folder = folder / "anat"
    base = folder / "_".join(parts)

    def f(suffix: str) -> Path:
        return Path(f"{base}_{suffix}")

    return OutputPaths(
        dseg=f(f"desc-{DESC}_dseg.nii.gz"), dseg_json=f(f"desc-{DESC}_dseg.json"),
        volumes=f(f"desc-{DESC}_volumes.tsv"),
        preproc=f("desc-preproc_T1w.nii.gz"), preproc_json=f("desc-preproc_T1w.json"),
        mask=f("desc-brain_mask.nii.gz"), mask_json=f("desc-brain_mask.json"),
        xfm=f(f"from-T1w_to-{TEMPLATE}_mode-image_xfm.mat"),
        probseg=f(f"desc-{DESC}_probseg.nii.gz"), probseg_json=f(f"desc-{DESC}_probseg.json"),
        # Reports sit at the derivatives root, as fmriprep's do.
        report=output_dir / f"{'_'.join(parts)}_desc-{DESC}_report.html",
    )


def is_complete(paths: OutputPaths, probabilities: bool = False) -> bool:
    """Complete means every file is there; the dseg sidecar is written last."""
    return all(p.is_file() for p in paths.all(probabilities))


def entities_from_name(name: str) -> dict[str, str]:
    """BIDS entities (long names) of one of our output file names."""
    long = dict((short, key) for key, short in ENTITY_KEYS)
    pairs = (part.split("-", 1) for part in name.split("_") if "-" in part)
    return {long[k]: v for k, v in pairs if k in long}


def paths_beside(dseg: Path) -> OutputPaths:
    """The output paths of the image whose parcellation (one of our ``_dseg.nii.gz``) is
    ``dseg``."""
    ent = entities_from_name(dseg.name)
    return _paths_for(dseg.parents[3 if "session" in ent else 2], ent)


def find_complete(output_dir: Path, participants: list[str] | None = None
                  ) -> list[tuple[dict[str, str], OutputPaths]]:
    """(entities, paths) of every image whose outputs are complete, sorted by name."""
    wanted = {p.removeprefix("sub-") for p in participants} if participants else None
    found = []
    for marker in sorted(output_dir.glob(f"sub-*/**/anat/*_desc-{DESC}_dseg.json")):
        ent = entities_from_name(marker.name)
        if "subject" not in ent or (wanted is not None and ent["subject"] not in wanted):
            continue
        paths = _paths_for(output_dir, ent)
        if paths.dseg_json == marker and is_complete(paths):
            found.append((ent, paths))
    return found


def write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_nifti(path: Path, data: np.ndarray, like: nib.Nifti1Image, dtype) -> None:
    header = like.header.copy()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), like.affine, header)
    img.header.set_slope_inter(1, 0)
    write_atomic(path, lambda tmp: nib.save(img, str(tmp)))


def bids_uri(unit: WorkUnit, bids_dir: Path) -> str:
    return f"bids:raw:{unit.path.relative_to(bids_dir).as_posix()}"


def foreign_dataset(output_dir: Path) -> str | None:
    """What ``output_dir`` holds when its dataset_description.json was not written by this
    pipeline (another pipeline's derivatives, a raw dataset, an unreadable file); None when
    there is none or it is ours. The participant level refuses such a folder: writing there
    would replace another dataset's description."""
    path = output_dir / "dataset_description.json"
    if not path.is_file():
        return None
    try:
        desc = json.loads(path.read_text())
        # PipelineDescription: BIDS-Derivatives before GeneratedBy (BIDS < 1.4).
        makers = desc.get("GeneratedBy") or [desc.get("PipelineDescription") or {}]
        names = [str(m.get("Name")) for m in makers if m.get("Name")]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
        return "a dataset_description.json that is not a readable JSON description"
    if PIPELINE in names:
        return None
    if names:
        return f"derivatives of {names[0]}"
    return f"a {desc.get('DatasetType', 'raw')} BIDS dataset"


def write_dataset_description(output_dir: Path, bids_dir: Path) -> None:
    generated = {"Name": PIPELINE, "Version": __version__, "CodeURL": CODE_URL}
    image = os.environ.get("ENEURONET_CONTAINER_IMAGE")
    if image:
        generated["Container"] = {"Type": os.environ.get("ENEURONET_CONTAINER_TYPE", "docker"),
                                  "Tag": image}
    desc = {
        "Name": "eneuronet: E-NeuroNet DKT31 + aseg parcellation",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": bids_dir.resolve().as_uri()}],
        "DatasetLinks": {"raw": bids_dir.resolve().as_uri()},
        "License": "CC BY-NC-SA 3.0 (model weights trained on Mindboggle-101)",
    }
    write_json(output_dir / "dataset_description.json", desc)
    write_text(output_dir / "dseg.tsv", dseg_tsv())


def methods_path(output_dir: Path) -> Path:
    """The methods boilerplate, where fmriprep writes its own."""
    return output_dir / "logs" / "CITATION.md"


def write_methods(output_dir: Path, text: str) -> None:
    path = methods_path(output_dir)
    path.parent.mkdir(exist_ok=True)
    write_text(path, text)


def dseg_tsv() -> str:
    rows = ["index\tname\tabbreviation\tcolor\tmapping"]
    rows += [f"{lab.index}\t{lab.name}\t{lab.abbreviation}\t{lab.color}\t{lab.mapping}"
             for lab in label_table()]
    return "\n".join(rows) + "\n"


def volumes_tsv(volumes: dict[str, float]) -> str:
    """The volumes of ``qc.volumes_by_name``: every label of the table, then the total."""
    index = {lab.name: str(lab.index) for lab in label_table()}
    rows = ["index\tname\tvolume_mm3"]
    rows += [f"{index.get(name, 'n/a')}\t{name}\t{v:.1f}" for name, v in volumes.items()]
    return "\n".join(rows) + "\n"


def read_volumes(path: Path) -> dict[str, float]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line]
    return {name: float(v) for _, name, v in rows}


def write_probseg(path: Path, json_path: Path, probabilities: np.ndarray,
                  like: nib.Nifti1Image, source: list[str]) -> None:
    """A 4D probability map (X, Y, Z, class) stored as uint8 with slope 1/255; the sidecar's
    ``LabelMap`` names the label of each volume."""
    header = like.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(probabilities, like.affine, header)
    img.header.set_slope_inter(1 / 255, 0)
    write_atomic(path, lambda tmp: nib.save(img, str(tmp)))
    write_json(json_path, {
        "Sources": source,
        "Description": "class probabilities resampled to the native T1w grid; volume k is "
                       "the label in LabelMap[k]",
        "LabelMap": {str(k): {"index": lab.index, "name": lab.name}
                     for k, lab in enumerate(label_table())},
    })


def write_group_outputs(paths: GroupPaths, volumes: str, qc: str, report: str) -> None:
    write_text(paths.volumes, volumes)
    write_text(paths.qc, qc)
    write_text(paths.report, report)


def write_image_outputs(paths: OutputPaths, *, unit: WorkUnit, bids_dir: Path,
                        native: nib.Nifti1Image, labels: np.ndarray, preproc: np.ndarray,
                        skull_stripped: bool, mask: np.ndarray, xfm: Path,
                        volumes: dict[str, float], qc: dict, report_html: str, provenance: dict,
                        probabilities: np.ndarray | None = None) -> None:
    """Write one image's derivatives; the dseg sidecar goes last (the completion marker)."""
    paths.dseg_json.unlink(missing_ok=True)
    source = [bids_uri(unit, bids_dir)]
    write_nifti(paths.preproc, preproc, native, np.float32)
    # The preprocessed image is the input bias-corrected: a brain if the input was one.
    write_json(paths.preproc_json, {"Sources": source, "SkullStripped": skull_stripped,
                                    "Description": "N4 bias-field corrected T1w, native grid"})
    write_nifti(paths.mask, mask, native, np.uint8)
    write_json(paths.mask_json, {"Sources": source, "Type": "Brain", "RawSources": source})
    write_atomic(paths.xfm, lambda tmp: shutil.copyfile(xfm, tmp))
    write_nifti(paths.dseg, labels, native, np.int16)
    write_text(paths.volumes, volumes_tsv(volumes))
    if probabilities is not None:
        write_probseg(paths.probseg, paths.probseg_json, probabilities, native, source)
    write_text(paths.report, report_html)
    write_json(paths.dseg_json, {"Sources": source, "Manual": False, "QC": qc, **provenance})
