"""The derivatives writer: the one module that knows BIDS-Derivatives output naming.

Every file is written under a temporary name and renamed into place; the parcellation's JSON
sidecar is written last, so its presence marks an image's outputs as complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from . import __version__
from .discovery import WorkUnit
from .labels import label_table
from .templates import TEMPLATE

PIPELINE = "eneuronet"
DESC = "DKTaseg"
BIDS_VERSION = "1.10.0"
CODE_URL = "https://github.com/eneuronet/eneuronet"
_ENTITY_KEYS = (("subject", "sub"), ("session", "ses"), ("acquisition", "acq"),
                ("ceagent", "ce"), ("reconstruction", "rec"), ("run", "run"))


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

    def all(self) -> list[Path]:
        return [self.dseg, self.volumes, self.preproc, self.preproc_json, self.mask,
                self.mask_json, self.xfm, self.dseg_json]


def output_paths(output_dir: Path, unit: WorkUnit) -> OutputPaths:
    ent = unit.entities
    parts = [f"{short}-{ent[key]}" for key, short in _ENTITY_KEYS if key in ent]
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
    )


def is_complete(paths: OutputPaths) -> bool:
    """Complete means every file is there; the dseg sidecar is written last."""
    return all(p.is_file() for p in paths.all())


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; a crash leaves only a dotfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes),
                               dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_nifti(path: Path, data: np.ndarray, like: nib.Nifti1Image, dtype) -> None:
    header = like.header.copy()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), like.affine, header)
    img.header.set_slope_inter(1, 0)
    _atomic(path, lambda tmp: nib.save(img, str(tmp)))


def bids_uri(unit: WorkUnit, bids_dir: Path) -> str:
    return f"bids:raw:{unit.path.relative_to(bids_dir).as_posix()}"


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


def dseg_tsv() -> str:
    rows = ["index\tname\tabbreviation\tcolor\tmapping"]
    rows += [f"{lab.index}\t{lab.name}\t{lab.abbreviation}\t{lab.color}\t{lab.mapping}"
             for lab in label_table()]
    return "\n".join(rows) + "\n"


def volumes_tsv(labels: np.ndarray, voxel_volume: float) -> str:
    """Volume of every label of the table (0 when absent) and the total brain volume."""
    table = label_table()
    counts = np.bincount(table.to_classes(labels).ravel(), minlength=len(table))
    rows = ["index\tname\tvolume_mm3"]
    rows += [f"{lab.index}\t{lab.name}\t{counts[k] * voxel_volume:.1f}"
             for k, lab in enumerate(table) if lab.index != 0]
    rows.append(f"n/a\tTotal-Brain\t{counts[1:].sum() * voxel_volume:.1f}")
    return "\n".join(rows) + "\n"


def write_image_outputs(paths: OutputPaths, *, unit: WorkUnit, bids_dir: Path,
                        native: nib.Nifti1Image, labels: np.ndarray, preproc: np.ndarray,
                        mask: np.ndarray, xfm: Path, provenance: dict) -> None:
    """Write one image's derivatives; the dseg sidecar goes last (the completion marker)."""
    paths.dseg_json.unlink(missing_ok=True)
    source = [bids_uri(unit, bids_dir)]
    voxel_volume = float(np.prod(native.header.get_zooms()[:3]))
    write_nifti(paths.preproc, preproc, native, np.float32)
    write_json(paths.preproc_json, {"Sources": source, "SkullStripped": False,
                                    "Description": "N4 bias-field corrected T1w, native grid"})
    write_nifti(paths.mask, mask, native, np.uint8)
    write_json(paths.mask_json, {"Sources": source, "Type": "Brain", "RawSources": source})
    _atomic(paths.xfm, lambda tmp: shutil.copyfile(xfm, tmp))
    write_nifti(paths.dseg, labels, native, np.int16)
    write_text(paths.volumes, volumes_tsv(labels, voxel_volume))
    write_json(paths.dseg_json, {"Sources": source, "Manual": False, **provenance})
