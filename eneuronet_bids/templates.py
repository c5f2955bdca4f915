"""Templates through TemplateFlow's API, offline, and the model's grid in template space."""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np

log = logging.getLogger(__name__)

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
def template_file(template: str, **query) -> Path:
    """One file from the local TemplateFlow home. Never downloads: a missing file is an error."""
    home = _template_home()
    # TemplateFlow's import writes its skeleton into the home; a read-only home (a container
    # image, a shared data folder) is still fine to query.
    os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
    from templateflow import api

    try:
        found = api.get(template, raise_empty=True, **query)
    except Exception as exc:  # TemplateFlow raises a bare Exception when nothing matches
        raise TemplateError(f"{template} {query} not found in TEMPLATEFLOW_HOME={home}") from exc
    if isinstance(found, list):
        raise TemplateError(f"{template} {query} is ambiguous in {home}: {found}")
    path = Path(found)
    if not path.is_file() or path.stat().st_size == 0:
        raise TemplateError(f"{path} is missing or empty (no network at run time)")
    return path


def brain_template() -> Path:
    return template_file(TEMPLATE, resolution=1, desc="brain", suffix="T1w")


def brain_template_mask() -> Path:
    return template_file(TEMPLATE, resolution=1, desc="brain", suffix="mask")


def head_template() -> Path:
    return template_file(HEAD_TEMPLATE, resolution=2, desc=None, suffix="T1w")


def head_template_mask() -> Path:
    return template_file(HEAD_TEMPLATE, resolution=1, desc="brain", suffix="mask")


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
