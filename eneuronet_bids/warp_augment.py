"""Registration-based augmentation (the seed's): labelled brains warped onto the shapes of
unlabelled ones.

Each labelled training image is registered with ANTs SyN (affine first, coarse stages only) to
unlabelled images drawn at random; the warped image (linear interpolation) and labels
(``genericLabel``) become extra training examples with the unlabelled subject's anatomy.
Both images are already on the model grid (brain-extracted, rigidly aligned, 1 mm), so the
registration runs on arrays of one shape. Results are cached in the work directory under a key
made from the content of both images and the registration settings, so re-runs reuse them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .array_cache import cached
from .interrupt import process_pool
from .preprocess import seed_ants

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationSettings:
    """Coarse SyN: the finest level is skipped (the warp only needs the shape, not the last
    millimetre); one pair on the 160x192x224 grid then takes about two minutes on one core."""

    transform: str = "SyN"
    syn_iterations: tuple[int, ...] = (40, 20, 0)
    affine_iterations: tuple[int, ...] = (200, 100, 0, 0)

    def key(self) -> str:
        return f"{self.transform}-{'x'.join(map(str, self.syn_iterations))}-" \
               f"{'x'.join(map(str, self.affine_iterations))}"


@dataclass(frozen=True)
class WarpJob:
    moving_id: str
    fixed_id: str
    moving_image: np.ndarray
    moving_classes: np.ndarray
    fixed_image: np.ndarray
    cache: Path
    settings: RegistrationSettings


def content_key(*arrays: np.ndarray, settings: RegistrationSettings) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(settings.key().encode())
    return h.hexdigest()[:16]


def plan_pairs(labelled: list[str], unlabelled: list[str], pairs_per_subject: int,
               rng: np.random.Generator) -> list[tuple[str, str]]:
    """(labelled, unlabelled) pairs: each labelled subject gets ``pairs_per_subject``
    different unlabelled subjects drawn at random."""
    if not unlabelled:
        return []
    k = min(pairs_per_subject, len(unlabelled))
    return [(m, unlabelled[i]) for m in labelled
            for i in rng.choice(len(unlabelled), size=k, replace=False)]


def warp_pair(job: WarpJob) -> tuple[np.ndarray, np.ndarray]:
    """Register the moving image to the fixed one and warp image and labels; cached."""

    def make() -> dict[str, np.ndarray]:
        import ants

        fixed = ants.from_numpy(job.fixed_image.astype(np.float32))
        moving = ants.from_numpy(job.moving_image.astype(np.float32))
        reg = ants.registration(fixed, moving, type_of_transform=job.settings.transform,
                                reg_iterations=job.settings.syn_iterations,
                                aff_iterations=job.settings.affine_iterations,
                                aff_shrink_factors=(8, 4, 2, 1),
                                aff_smoothing_sigmas=(3, 2, 1, 0))
        image = ants.apply_transforms(fixed, moving, reg["fwdtransforms"], interpolator="linear")
        labels = ants.apply_transforms(
            fixed, ants.from_numpy(job.moving_classes.astype(np.float32)),
            reg["fwdtransforms"], interpolator="genericLabel")
        return {"image": np.maximum(image.numpy(), 0).astype(np.float16),
                "classes": np.rint(labels.numpy()).astype(np.uint8)}

    z = cached(job.cache, make)
    return z["image"].astype(np.float32), z["classes"]


def match_intensities(image: np.ndarray, reference: np.ndarray, points: int = 1025
                      ) -> np.ndarray:
    """``image`` with its brain voxels (> 0) mapped, rank for rank, onto the intensity
    distribution of ``reference``'s brain voxels; the background stays zero.

    A labelled brain warped onto an unlabelled one has the unlabelled brain's shape, so its
    tissues fill about the same shares of the brain, and matching the two distributions gives
    it the unlabelled scan's contrast between grey and white matter (IXI's grey matter is
    brighter against its white matter than Mindboggle's, docs/tissue_intensity_n4-quick.tsv).
    The map is monotone, so it cannot make one grey structure brighter relative to another
    (``augment.RandomTissueContrast`` does that).
    """
    brain, ref = image > 0, reference[reference > 0]
    if not brain.any() or not ref.size:
        return image
    q = np.linspace(0, 1, points)
    out = np.zeros_like(image)
    out[brain] = np.interp(image[brain], np.quantile(image[brain], q), np.quantile(ref, q))
    return out


def warp_all(jobs: list[WarpJob], nprocs: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the registrations in up to ``nprocs`` worker processes, each asked for one ITK
    thread and seeded with ``seed``; cached ones are read back without registering."""
    todo = sum(not j.cache.exists() for j in jobs)
    log.info("registration augmentation: %d pairs, %d to register (%d cached)",
             len(jobs), todo, len(jobs) - todo)
    if not todo:
        return [warp_pair(j) for j in jobs]
    with process_pool(min(nprocs, todo), seed_ants, (seed, 1)) as pool_map:
        return list(pool_map(warp_pair, jobs))
