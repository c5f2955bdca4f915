"""The methods boilerplate: what the participant level does to every image, with the software
versions and references, for a paper's methods section (fmriprep's ``logs/CITATION.md``).

The text depends only on the run's settings (model file, test-time flip), not on which images
a run processed, so concurrent one-participant jobs write the same file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import __version__
from .templates import GRID_SHAPE, HEAD_TEMPLATE, TEMPLATE

REFERENCES = {
    "ants": "Tustison NJ, Cook PA, Holbrook AJ, et al. The ANTsX ecosystem for quantitative "
            "biological and medical imaging. Sci Rep. 2021;11:9068.",
    "n4": "Tustison NJ, Avants BB, Cook PA, et al. N4ITK: improved N3 bias correction. IEEE "
          "Trans Med Imaging. 2010;29(6):1310-1320.",
    "syn": "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image "
           "registration with cross-correlation: evaluating automated labeling of elderly and "
           "neurodegenerative brain. Med Image Anal. 2008;12(1):26-41.",
    "otsu": "Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst "
            "Man Cybern. 1979;9(1):62-66.",
    "nlin6": "Evans AC, Janke AL, Collins DL, Baillet S. Brain templates and atlases. "
             "NeuroImage. 2012;62(2):911-922.",
    "nlin2009": "Fonov VS, Evans AC, McKinstry RC, Almli CR, Collins DL. Unbiased nonlinear "
                "average age-appropriate brain templates from birth to adulthood. NeuroImage. "
                "2009;47(Suppl 1):S102.",
    "templateflow": "Ciric R, Thompson WHH, Lorenz R, et al. TemplateFlow: FAIR-sharing of "
                    "multi-scale, multi-species brain models. Nat Methods. "
                    "2022;19:1568-1571.",
    "eneuronet": "Oberoi et al. E-NeuroNet: Efficient 3D CNN for Segmentation of Neuroimages.",
    "torch": "Paszke A, Gross S, Massa F, et al. PyTorch: an imperative style, "
             "high-performance deep learning library. Adv Neural Inf Process Syst. 2019;32.",
    "pybids": "Yarkoni T, Markiewicz CJ, de la Vega A, et al. PyBIDS: Python tools for BIDS "
              "datasets. J Open Source Softw. 2019;4(40):1294.",
    "mindboggle": "Klein A, Tourville J. 101 labeled brain images and a consistent human "
                  "cortical labeling protocol. Front Neurosci. 2012;6:171.",
}


@dataclass(frozen=True)
class MethodsSettings:
    """What the text needs to know about the run."""

    model_path: Path
    model_sha256: str
    parameters: int
    n4_in_brain: bool
    test_time_flip: bool


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(version unknown)"


def _training_data(model_path: Path) -> str:
    """The model card's account of the training data, when the card sits beside the model."""
    try:
        card = json.loads((model_path.parent / "model_card.json").read_text())
        return str(card["training_data"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def methods_markdown(s: MethodsSettings) -> str:
    """The boilerplate, in Markdown, with numbered references."""
    cited: list[str] = []

    def ref(*keys: str) -> str:
        for key in keys:
            if key not in cited:
                cited.append(key)
        return "[" + ", ".join(str(cited.index(k) + 1) for k in keys) + "]"

    trained_on = _training_data(s.model_path)
    grid = "×".join(str(n) for n in GRID_SHAPE)
    text = [
        "# Methods boilerplate",
        "",
        "Written by eneuronet for the methods section of a paper that uses its parcellations; "
        "edit it freely. It describes the settings of the run that wrote it.",
        "",
        f"Brain parcellations were produced with eneuronet {__version__}, a BIDS App that "
        f"implements E-NeuroNet {ref('eneuronet')}, built on PyTorch {_version('torch')} "
        f"{ref('torch')}, ANTsPy {_version('antspyx')} {ref('ants')}, PyBIDS "
        f"{_version('pybids')} {ref('pybids')}, NiBabel {_version('nibabel')} and TemplateFlow "
        f"{_version('templateflow')} {ref('templateflow')}.",
        "",
        "Each T1-weighted (T1w) image was corrected for intensity non-uniformity with N4 "
        f"{ref('n4')}, estimated on a 2 mm copy of the image (inside the brain for "
        "skull-stripped images) and applied at full resolution. "
        "Images that were not already skull-stripped were brain-extracted: a 2 mm copy was "
        f"registered to the {HEAD_TEMPLATE} head template {ref('nlin6')} with an affine and a "
        f"coarse symmetric-normalisation (SyN) transform {ref('syn')}, the template's brain "
        "mask was carried back to the image, and voxels darker than grey matter were removed "
        f"from it with a three-class Otsu threshold {ref('otsu')}. Images marked skull-stripped "
        "(`\"SkullStripped\": true` in their sidecar, or `--skull-stripped`) skipped this step."
        + (" N4 was then estimated again inside the brain mask." if s.n4_in_brain else ""),
        "",
        f"Each image was rigidly aligned to the {TEMPLATE} template {ref('nlin2009')}, "
        f"resampled onto that template's space at 1 mm ({grid} voxels) and scaled so that the "
        "99th percentile of the brain's intensities was 1. E-NeuroNet, a ResNeXt-style 3D "
        "encoder-decoder convolutional network with summed skip connections "
        f"({s.parameters:,} parameters; model file sha256 `{s.model_sha256}`), gave every "
        "voxel within two voxels of the brain mask a probability for each of 101 classes: 62 "
        "DKT31 cortical regions "
        f"{ref('mindboggle')}, 36 subcortical, ventricular and cerebellar structures, left and "
        "right cerebral white matter and background, in FreeSurfer's aparc.DKTatlas+aseg "
        "numbering"
        + (f". The network was trained on {trained_on} {ref('mindboggle')}" if trained_on else "")
        + ". "
        + ("The image was classified a second time mirrored left-right, the mirrored "
           "estimate's left and right classes were swapped back, and the two probability "
           "estimates were averaged. " if s.test_time_flip else "")
        + "The class probabilities were resampled trilinearly onto the T1w image's own grid "
        "and each voxel was given its most likely label; pieces of a cortical region other "
        "than its largest face-connected one were given the nearest cortical region kept "
        "whole. Every parcellation received an "
        "automated quality-control verdict from the network's confidence and the structure "
        "volumes.",
        "",
        "## References",
        "",
    ]
    text += [f"{i}. {REFERENCES[key]}" for i, key in enumerate(cited, 1)]
    return "\n".join(text) + "\n"
