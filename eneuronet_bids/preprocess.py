"""Preprocessing of one T1w image: reorient, N4, brain extraction, rigid alignment to the
template, resampling onto the model grid and intensity normalisation.

Training and inference both go through :func:`preprocess`, so the model sees the same kind of
input in both; the one setting that differs between models (``n4``) is stored with the model
(``ModelConfig.n4``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from . import templates
from .resample import mask_box, resample

log = logging.getLogger(__name__)

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Resolution at which N4 and the registrations are estimated; results apply at full resolution.
COARSE_MM = 2.0
MAX_VOXEL_MM = 1.5
#: N4 fitting levels and iterations per level. "quick": three short levels, on the whole head
#: of a full-head image, which brain extraction always uses and the shipped model was trained
#: on. "brain": four levels of 50, inside the brain mask after brain extraction. On IXI's 3T
#: heads the quick pass leaves the central white matter 25-30 % brighter than the lobar (more
#: iterations on the whole head leave it too); "brain" evens it out (docs/training.md).
N4_ITERATIONS = {"quick": (15, 15, 10), "brain": (50, 50, 50, 50)}
MAX_ANISOTROPY = 2.0


class InputError(ValueError):
    """The input image cannot be processed; the message is one line for the user."""


@dataclass
class Preprocessed:
    """Everything later stages need about one image."""

    native: nib.Nifti1Image  # the input as loaded (3D), whose grid the outputs use
    bias_corrected: np.ndarray  # N4-corrected input, native grid (desc-preproc_T1w)
    brain_mask: np.ndarray  # bool, native grid (desc-brain_mask)
    template_to_native: np.ndarray  # 4x4 RAS world transform: template point -> native point
    ants_transform: Path  # the same rigid transform as ANTs wrote it (fixed = template)
    image: np.ndarray  # normalised, on the model grid (templates.GRID_SHAPE)
    grid_affine: np.ndarray
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def grid_to_native_voxels(self) -> np.ndarray:
        """Maps model-grid voxel indices to native voxel indices."""
        return np.linalg.inv(self.native.affine) @ self.template_to_native @ self.grid_affine

    def labels_to_grid(self, labels: np.ndarray) -> np.ndarray:
        """A label map on the input's own grid, brought onto the model grid (nearest
        neighbour; float32 holds label numbers exactly)."""
        if labels.shape != self.native.shape:
            raise ValueError(f"label map shape {labels.shape} differs from its T1w "
                             f"{self.native.shape}")
        return resample(labels.astype(np.float32), self.grid_to_native_voxels(),
                        templates.GRID_SHAPE, mode="nearest").numpy()


def load_t1w(path: Path) -> tuple[nib.Nifti1Image, list[str]]:
    """Load and check a T1w image; returns it (3D) and warnings. Raises InputError."""
    # DataLad clones of OpenNeuro datasets hold every image as a git-annex symbolic link
    # whose content is fetched on demand; "no such file" would not say what to do.
    if path.is_symlink() and not path.exists():
        raise InputError(f"{path.name}: a symbolic link to a missing file (a DataLad/git-annex "
                         "dataset whose content was not fetched? `datalad get` it)")
    try:
        img = nib.load(str(path))
        stored = img.get_data_dtype()
        # Complex voxels would silently lose their imaginary part, colour ones not convert.
        kind = "complex" if stored.kind == "c" else "colour (RGB)" if stored.names else None
        data = None if kind else np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for truncated or corrupt files
        raise InputError(f"{path.name}: cannot read NIfTI ({type(exc).__name__}: {exc})") from exc
    if data is None:
        raise InputError(f"{path.name}: its voxels hold {kind} values ({stored}); a T1w needs "
                         "one real value per voxel (for complex data, give the magnitude)")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path.name}: expected a 3D T1w image, got shape {data.shape}")
    if min(data.shape) < 16:
        raise InputError(f"{path.name}: image of shape {data.shape} is too small to be a 3D T1w")
    # A broken converter can write an sform with a zero row; nothing downstream can place such
    # an image in space, and ANTs' own error would not say why.
    if abs(np.linalg.det(img.affine[:3, :3])) < 1e-6:
        raise InputError(f"{path.name}: its voxel-to-world affine (sform/qform) is degenerate: "
                         "the voxel axes do not span 3D space")
    if not np.isfinite(data).all():
        raise InputError(f"{path.name}: image contains NaN or infinite values")
    if not data.any():
        raise InputError(f"{path.name}: image is all zeros")
    zooms = np.array(img.header.get_zooms()[:3], dtype=float)
    warnings = []
    if zooms.max() > MAX_VOXEL_MM:
        warnings.append(f"voxels are {zooms.round(2).tolist()} mm, larger than {MAX_VOXEL_MM} mm: "
                        "expect lower accuracy")
    if zooms.max() / zooms.min() > MAX_ANISOTROPY:
        warnings.append(f"voxels are anisotropic ({zooms.round(2).tolist()} mm, ratio over "
                        f"{MAX_ANISOTROPY}): expect lower accuracy")
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    return nib.Nifti1Image(data, img.affine, header), warnings


def to_ants(data: np.ndarray, affine: np.ndarray) -> ants.ANTsImage:
    """numpy array + RAS affine -> ANTs image (ANTs works in LPS)."""
    lps = _LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return ants.from_numpy(np.ascontiguousarray(data, dtype=np.float32),
                           origin=lps[:3, 3].tolist(), spacing=spacing.tolist(),
                           direction=direction)


def _rigid_matrix(transform_file: Path) -> np.ndarray:
    """An ANTs linear transform file (fixed -> moving points, LPS) as a 4x4 RAS matrix."""
    tx = ants.read_transform(str(transform_file))
    params = np.asarray(tx.parameters, dtype=float)
    centre = np.asarray(tx.fixed_parameters, dtype=float)
    a = params[:9].reshape(3, 3)
    t = params[9:12]
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = t + centre - a @ centre
    return _LPS @ m @ _LPS


def _coarse(img: ants.ANTsImage) -> ants.ANTsImage:
    """A trilinear copy at COARSE_MM with the same origin and axes (torch resamples a 256³
    head in a fraction of the second ANTs' ``resample_image`` takes)."""
    spacing = np.array(img.spacing)
    shape = tuple(int(n) for n in np.ceil(np.array(img.shape) * spacing / COARSE_MM))
    out_to_in = np.diag([*(COARSE_MM / spacing), 1.0])
    data = resample(img.numpy(), out_to_in, shape).numpy()
    return ants.from_numpy(data, origin=img.origin, spacing=(COARSE_MM,) * 3,
                           direction=img.direction)


@cache
def _template_images() -> tuple[ants.ANTsImage, ants.ANTsImage]:
    """Coarse brain template (rigid target) and coarse head template (brain extraction)."""
    brain = _coarse(ants.image_read(str(templates.brain_template())))
    head = ants.image_read(str(templates.head_template()))
    return brain, head


def bias_correct(img: ants.ANTsImage, mask: ants.ANTsImage | None,
                 iterations: tuple[int, ...] = N4_ITERATIONS["quick"], shrink: int = 4
                 ) -> ants.ANTsImage:
    """N4 estimated on a 2 mm copy (shrunk ``shrink``-fold inside N4; a bias field is smooth:
    shrinking 2x instead of 4x corrected two IXI heads about as well in several times the
    time, docs/n4_settings.tsv); the field is then applied at full resolution.
    ``iterations``: one number per fitting level.

    The quick 15, 15 and 10 instead of 50, 50 and 30 take a third of the time; on three sample
    heads the log field moved by 0.01 (p99 inside the head; 0.05 on one with a strong bias). A
    convergence threshold would stop sooner still, but when it stops turned out to swing
    threefold between near-identical inputs.
    """
    coarse = _coarse(img)
    coarse_mask = None
    if mask is not None:
        coarse_mask = ants.resample_image_to_target(mask, coarse, interp_type="nearestNeighbor")
    field_ = ants.n4_bias_field_correction(
        coarse, mask=coarse_mask, shrink_factor=shrink, return_bias_field=True,
        convergence={"iters": list(iterations), "tol": 1e-6},
    )
    log_field = np.log(np.maximum(field_.numpy(), 1e-6))
    # The coarse copy shares the image's origin and axes (see _coarse).
    up = np.diag([*(np.array(img.spacing) / COARSE_MM), 1.0])
    log_field = resample(log_field, up, img.shape, padding="border").numpy()
    return img.new_image_like(img.numpy() / np.exp(log_field))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def mask_skull_stripped(data: np.ndarray) -> np.ndarray:
    """The brain of an already skull-stripped image: its non-zero voxels, holes filled."""
    return ndimage.binary_fill_holes(_largest_component(data > 0))


def extract_brain(img: ants.ANTsImage, workdir: Path
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain masks of a full-head image and the affine that found them:
    ``(brain, tissue, template_to_native)``.

    ``brain`` is the head template's brain mask carried over by an affine + coarse SyN
    registration (it keeps a thin CSF rim, like FreeSurfer's and DLMUSE's masks); ``tissue`` is
    that mask trimmed of dark CSF, the tight style of the Mindboggle masks the model was
    trained on, and is what the network sees. ``template_to_native`` (4x4, RAS) is the
    registration's affine stage.
    """
    _, head = _template_images()
    reg = ants.registration(
        fixed=head, moving=_coarse(img), type_of_transform="SyN",
        reg_iterations=(40, 20, 0), aff_shrink_factors=(4, 2, 1),
        aff_smoothing_sigmas=(2, 1, 0), aff_iterations=(200, 100, 50),
        outprefix=str(workdir / "brainextract_"),
    )
    tmask = ants.image_read(str(templates.head_template_mask()))
    warped = ants.apply_transforms(fixed=img, moving=tmask, transformlist=reg["invtransforms"],
                                   whichtoinvert=[True, False], interpolator="linear")
    mask = warped.numpy() > 0.5
    return mask, tissue_mask(mask, img.numpy()), _rigid_matrix(Path(reg["fwdtransforms"][1]))


def tissue_mask(mask: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``mask`` trimmed of voxels darker than grey matter (three-class Otsu inside it), opened,
    reduced to its largest component, holes filled and closed.

    The morphology runs on the mask's bounding box, a quarter of a 256³ head; the margin
    exceeds the closing's reach, so the result is the same as on the whole volume.
    """
    tissue = np.zeros_like(mask)
    box = mask_box(mask, 4)
    if box is None:
        return tissue
    sub_mask, sub = mask[box], data[box]
    inside = sub[sub_mask]
    lo, hi = np.percentile(inside, [1, 99])
    csf_tissue, _ = _otsu3(np.clip(inside, lo, hi))
    opened = ndimage.binary_opening(sub_mask & (sub > csf_tissue), iterations=1)
    tight = ndimage.binary_fill_holes(_largest_component(opened))
    tissue[box] = ndimage.binary_closing(tight, iterations=2) & sub_mask
    return tissue


def _otsu3(values: np.ndarray, bins: int = 64) -> tuple[float, float]:
    """Three-class Otsu thresholds (CSF | grey matter | white matter) of ``values``."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w = np.cumsum(hist).astype(float)
    m = np.cumsum(hist * centres)
    total_w, total_m = w[-1], m[-1]
    best, best_t = -1.0, (0, 1)
    for i in range(bins - 2):
        for j in range(i + 1, bins - 1):
            ws = (w[i], w[j] - w[i], total_w - w[j])
            ms = (m[i], m[j] - m[i], total_m - m[j])
            if min(ws) <= 0:
                continue
            between = sum(mm * mm / ww for mm, ww in zip(ms, ws))
            if between > best:
                best, best_t = between, (i, j)
    return float(edges[best_t[0] + 1]), float(edges[best_t[1] + 1])


@cache
def _template_brain_centre() -> np.ndarray:
    mask = nib.load(templates.brain_template_mask())
    return (mask.affine @ np.r_[np.argwhere(np.asarray(mask.dataobj) > 0).mean(0), 1])[:3]


def rigid_part(affine: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The rotation of ``affine`` (polar decomposition), placed so that ``centre`` maps where
    ``affine`` maps it."""
    u, _, vt = np.linalg.svd(affine[:3, :3])
    if np.linalg.det(u @ vt) < 0:
        u[:, -1] *= -1
    rigid = np.eye(4)
    rigid[:3, :3] = u @ vt
    rigid[:3, 3] = (affine @ np.r_[centre, 1])[:3] - rigid[:3, :3] @ centre
    return rigid


def _write_linear(matrix: np.ndarray, path: Path) -> Path:
    """A 4x4 RAS template -> native matrix as an ANTs transform file (the inverse of
    ``_rigid_matrix``)."""
    lps = _LPS @ matrix @ _LPS
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                    matrix=lps[:3, :3], translation=lps[:3, 3],
                                    center=(0.0, 0.0, 0.0))
    ants.write_transform(tx, str(path))
    return path


def register_rigid(brain: ants.ANTsImage, workdir: Path,
                   initial: np.ndarray | None = None) -> tuple[np.ndarray, Path]:
    """Rigid alignment of the brain to the template, on a 2 mm copy.

    Without ``initial`` the search starts from the centres of mass and runs at 8, 4 and 2 mm.
    With ``initial`` (a template -> native affine, the brain extraction's) it starts from that
    affine's rigid part and is only refined at 8 and 4 mm: the 2 mm level is most of the cost,
    and on the sample heads the result moved the brain by 1-4 mm (RMS) from the slow search,
    about as much as the slow search moves with its own iteration counts.
    """
    template_brain, _ = _template_images()
    if initial is None:
        schedule = {"aff_shrink_factors": (4, 2, 1), "aff_smoothing_sigmas": (2, 1, 0),
                    "aff_iterations": (500, 250, 100)}
    else:
        start = _write_linear(rigid_part(initial, _template_brain_centre()),
                              workdir / "rigid_initial.mat")
        schedule = {"aff_shrink_factors": (4, 2), "aff_smoothing_sigmas": (2, 1),
                    "aff_iterations": (100, 50), "initial_transform": [str(start)]}
    # ANTs folds the initial transform into the one it writes.
    reg = ants.registration(fixed=template_brain, moving=_coarse(brain),
                            type_of_transform="Rigid", outprefix=str(workdir / "rigid_"),
                            **schedule)
    path = Path(reg["fwdtransforms"][0])
    return _rigid_matrix(path), path


def normalise(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scale so the brain's 99th intensity percentile is 1; robust to a thin CSF rim."""
    ref = np.percentile(image[mask], 99) if mask.any() else 1.0
    return np.clip(image / max(ref, 1e-6), 0.0, 1.5).astype(np.float32)


def seed_ants(seed: int, threads: int) -> None:
    """Fix the metric sampling of this process's ANTs registrations for ``seed`` (>= 0) and
    give ITK ``threads`` threads.

    antsRegistration reads a seed of 0 as "none" and then samples by the clock: with the
    default ``--random-seed 0`` passed on as is, two runs of one skull-stripped image were
    rigidly aligned 2.5-4 mm (RMS) apart and their cortical Dice differed by 0.02. The seed
    passed on is therefore ``seed + 1``. Results are then identical with one thread; with
    more, ITK's threaded sums still move the alignment by a few tenths of a millimetre.
    """
    ants.config.set_ants_deterministic(True, seed + 1)
    # set_ants_deterministic also pins ITK to one thread; we want our thread budget back.
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)


def preprocess(path: Path, *, skull_stripped: bool, workdir: Path, n4: str = "quick"
               ) -> Preprocessed:
    """Run every preprocessing stage on one T1w image; ``n4`` is a key of ``N4_ITERATIONS``."""
    if n4 not in N4_ITERATIONS:
        raise ValueError(f"unknown N4 setting {n4!r}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    native, warnings = load_t1w(path)
    # Reorientation: ANTs and our resampling work in world coordinates, so the data never has
    # to be flipped; the canonical copy only makes ANTs' LPS conversion unambiguous.
    canonical = nib.as_closest_canonical(native)
    img = to_ants(np.asarray(canonical.dataobj), canonical.affine)
    timings["load"] = time.perf_counter() - t0

    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="ants_", dir=workdir))
    try:
        t0 = time.perf_counter()
        if skull_stripped:
            mask = tissue = mask_skull_stripped(img.numpy())
            corrected = bias_correct(img, img.new_image_like(mask.astype(np.float32)),
                                     N4_ITERATIONS[n4])
        else:
            corrected = bias_correct(img, None)
        timings["bias_correction"] = time.perf_counter() - t0

        initial = None
        if not skull_stripped:
            t0 = time.perf_counter()
            mask, tissue, initial = extract_brain(corrected, scratch)
            timings["brain_extraction"] = time.perf_counter() - t0
        if tissue.sum() < 1000:
            raise InputError(f"{path.name}: brain mask is empty; is this a T1w image of a head?")
        if n4 == "brain" and not skull_stripped:
            t0 = time.perf_counter()
            corrected = bias_correct(img, img.new_image_like(mask.astype(np.float32)),
                                     N4_ITERATIONS[n4])
            timings["bias_correction"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        brain_data = corrected.numpy() * tissue
        brain = corrected.new_image_like(brain_data.astype(np.float32))
        matrix, tx_file = register_rigid(brain, scratch, initial)
        kept_tx = workdir / "rigid_template_to_t1w.mat"
        shutil.copyfile(tx_file, kept_tx)
        timings["registration"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    t0 = time.perf_counter()
    grid_affine = templates.model_grid()
    out_to_in = np.linalg.inv(canonical.affine) @ matrix @ grid_affine
    on_grid = resample(brain_data, out_to_in, templates.GRID_SHAPE).numpy()
    grid_mask = resample(tissue.astype(np.float32), out_to_in, templates.GRID_SHAPE).numpy() > 0.5
    image = normalise(on_grid, grid_mask)

    # Back to the input's own voxel order for the outputs.
    to_native = _reorder(native.affine)
    prep = Preprocessed(
        native=native,
        bias_corrected=to_native(corrected.numpy()),
        brain_mask=to_native(mask),
        template_to_native=matrix,
        ants_transform=kept_tx,
        image=image,
        grid_affine=grid_affine,
        warnings=warnings,
        timings=timings,
    )
    timings["resample_to_grid"] = time.perf_counter() - t0
    return prep


def _reorder(native_affine: np.ndarray):
    """A function taking arrays from the canonical (RAS) voxel order back to the input's own."""
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                           nib.orientations.io_orientation(native_affine))

    def apply(data: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(nib.orientations.apply_orientation(data, ornt))

    return apply
