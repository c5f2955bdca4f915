"""Templates through TemplateFlow's API, offline, and the model's grid in template space."""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np

from .resample import resample

#: Rigid target of the pipeline and the space of the model grid.
TEMPLATE = "MNI152NLin2009cAsym"
#: Full-head template (and its brain mask) that guides brain extraction.
HEAD_TEMPLATE = "MNI152NLin6Asym"
#: The seed's 160x192x224 crop, ordered for RAS axes (left-right, posterior-anterior,
#: inferior-superior); every side is a multiple of the network's down-sampling factor.
GRID_SHAPE = (160, 224, 192)


class TemplateError(RuntimeError):
    pass


def _template_home() -> Path:
    home = os.environ.get("TEMPLATEFLOW_HOME")
    if not home:
        raise TemplateError(
            "TEMPLATEFLOW_HOME is not set: point it at a TemplateFlow home holding "
            f"{TEMPLATE} and {HEAD_TEMPLATE} (the container sets it)"
        )
    return Path(home)


@cache
def template_file(template: str, *, resolution: int, desc: str | None, suffix: str) -> Path:
    """One file from the local TemplateFlow home, through TemplateFlow's API.

    The file must already be in the home: we look for it first, so that TemplateFlow never
    gets the chance to download (there is no network at run time).
    """
    home = _template_home()
    name = f"tpl-{template}_res-{resolution:02d}"
    name += f"_desc-{desc}" if desc else ""
    expected = home / f"tpl-{template}" / f"{name}_{suffix}.nii.gz"
    if not expected.is_file() or expected.stat().st_size == 0:
        raise TemplateError(f"{expected.name} is missing from TEMPLATEFLOW_HOME={home} "
                            "(templates are never downloaded at run time)")
    os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
    # TemplateFlow's import writes its skeleton into the home; a read-only home (a container
    # image, a shared data folder) is still fine to query.
    from templateflow import api

    found = api.get(template, resolution=resolution, desc=desc, suffix=suffix,
                    extension=".nii.gz")
    if isinstance(found, list):
        raise TemplateError(f"{template} res-{resolution} desc-{desc} {suffix} is ambiguous "
                            f"in {home}: {found}")
    return Path(found)


#: Every template file the app reads: (template, resolution, desc, suffix).
BRAIN_T1W = (TEMPLATE, 1, "brain", "T1w")
BRAIN_MASK = (TEMPLATE, 1, "brain", "mask")
HEAD_T1W = (HEAD_TEMPLATE, 2, None, "T1w")
HEAD_BRAIN_MASK = (HEAD_TEMPLATE, 1, "brain", "mask")
REQUIRED = (BRAIN_T1W, BRAIN_MASK, HEAD_T1W, HEAD_BRAIN_MASK)


def _file(spec: tuple) -> Path:
    template, resolution, desc, suffix = spec
    return template_file(template, resolution=resolution, desc=desc, suffix=suffix)


def brain_template() -> Path:
    return _file(BRAIN_T1W)


def brain_template_mask() -> Path:
    return _file(BRAIN_MASK)


def head_template() -> Path:
    return _file(HEAD_T1W)


def head_template_mask() -> Path:
    return _file(HEAD_BRAIN_MASK)


def check_available() -> None:
    """Raise TemplateError now, before any image is processed, if a template is missing."""
    for spec in REQUIRED:
        _file(spec)


def fetch(seed: Path | None = None) -> list[Path]:
    """Put every required template into TEMPLATEFLOW_HOME with TemplateFlow's API; for
    building a container image, never at run time. Files already in ``seed`` (another
    TemplateFlow home) are copied instead of downloaded."""
    home = _template_home()
    if seed is not None:
        for folder in sorted(seed.glob("tpl-*")):
            shutil.copytree(folder, home / folder.name, dirs_exist_ok=True)
    from templateflow import api

    for template, resolution, desc, suffix in REQUIRED:
        api.get(template, resolution=resolution, desc=desc, suffix=suffix, extension=".nii.gz")
    template_file.cache_clear()
    return [_file(spec) for spec in REQUIRED]  # raises TemplateError if one is still missing


@cache
def model_grid() -> np.ndarray:
    """RAS affine of the model's 1 mm grid: GRID_SHAPE voxels centred on the template's brain."""
    mask = nib.load(brain_template_mask())
    data = np.asarray(mask.dataobj) > 0
    ijk = np.argwhere(data)
    centre_vox = (ijk.min(0) + ijk.max(0)) / 2.0
    centre = nib.affines.apply_affine(mask.affine, centre_vox)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = centre - (np.array(GRID_SHAPE) - 1) / 2.0
    return affine


@cache
def template_mask_on_grid() -> np.ndarray:
    """The template's brain mask on the model grid (bool), for the alignment check."""
    mask = nib.load(brain_template_mask())
    data = np.asarray(mask.dataobj, dtype=np.float32)
    out_to_in = np.linalg.inv(mask.affine) @ model_grid()
    return resample(data, out_to_in, GRID_SHAPE, mode="nearest").numpy() > 0.5


if __name__ == "__main__":
    # Container build: python -m eneuronet_bids.templates [SEED_HOME]
    import sys

    for path in fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(path)
