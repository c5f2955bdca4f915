"""Augmentations, each a small documented transform of a normalised image patch.

Intensity transforms are called as ``transform(image, rng)``, apply themselves with
probability ``p`` and return a float32 array; labels never change. ``RandomTissueContrast``
also reads the labels (``transform(image, classes, rng)``). The spatial ``RandomElastic`` and
``RandomFlipLeftRight`` move image and labels together. A transform with ``p`` 0 draws no
random numbers, so adding one switched off leaves earlier recipes' random streams as they were.
Registration-based augmentation (warping a labelled brain onto an unlabelled one) is in
``warp_augment``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class RandomTransform:
    p: float = 0.5

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(x, rng) if self.p > 0 and rng.random() < self.p else x

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@dataclass
class RandomGamma(RandomTransform):
    """``x ** gamma`` on the non-negative normalised image, log-uniform gamma."""

    log_range: float = 0.4

    def apply(self, x, rng):
        return np.power(np.maximum(x, 0), np.exp(rng.uniform(-self.log_range, self.log_range)))


@dataclass
class RandomContrast(RandomTransform):
    """Global intensity scaling, as between scanners' normalisation."""

    low: float = 0.85
    high: float = 1.15

    def apply(self, x, rng):
        return x * rng.uniform(self.low, self.high)


@dataclass
class RandomBiasField(RandomTransform):
    """A smooth multiplicative field: exp of a random linear + quadratic polynomial."""

    strength: float = 0.3

    def apply(self, x, rng):
        axes = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in x.shape],
                           indexing="ij", sparse=True)
        log_field = sum(rng.uniform(-1, 1) * a + rng.uniform(-1, 1) * a**2 for a in axes)
        return x * np.exp(self.strength * log_field / len(axes)).astype(np.float32)


@dataclass
class RandomNoise(RandomTransform):
    """Gaussian noise inside the brain (background stays zero, as after brain extraction)."""

    p: float = 0.3
    max_sigma: float = 0.04

    def apply(self, x, rng):
        noise = rng.normal(0, rng.uniform(0, self.max_sigma), x.shape).astype(np.float32)
        return np.where(x > 0, x + noise, x)


@dataclass
class RandomLowResolution(RandomTransform):
    """A coarser acquisition: blur to a voxel size drawn per axis from [1, ``max_mm``] mm
    (the patch is on the 1 mm model grid), sample at that size, interpolate back, as the
    participant level sees a 2 mm or thick-slice scan. Background stays zero."""

    p: float = 0.0
    max_mm: float = 3.0

    def apply(self, x, rng):
        voxel = rng.uniform(1.0, self.max_mm, 3)
        # A voxel of v mm averages over a FWHM of about v mm; the image already has 1 mm.
        blurred = ndimage.gaussian_filter(x, np.sqrt(voxel**2 - 1) / 2.355)
        coarse = ndimage.zoom(blurred, 1 / voxel, order=1, grid_mode=True, mode="nearest")
        back = ndimage.zoom(coarse, np.array(x.shape) / coarse.shape, order=1, grid_mode=True,
                            mode="nearest")
        return np.where(x > 0, back, 0).astype(np.float32)


@dataclass
class RandomTissueContrast:
    """Shift each tissue's intensity by its own random amount, so that the contrast between
    tissues varies as it does between sequences and scanners: against white matter, IXI's
    grey structures are 0.06 to 0.21 brighter than Mindboggle's, by structure
    (docs/tissue_intensity_n4-brain.tsv). A light form of SynthSeg's random intensities per
    label, applied to real images.

    ``tissue_of_class`` is ``LabelTable.tissue_of_class()``: classes of one tissue share a
    shift, so no edge appears between cortical parcels or between a structure's two
    hemispheres. The shift map is smoothed over ``smooth`` voxels, so that its edges do not
    give the labels away. Called as ``transform(image, classes, rng)``; background stays zero.
    """

    tissue_of_class: np.ndarray
    p: float = 0.0
    max_shift: float = 0.25
    smooth: float = 1.0

    def __call__(self, image: np.ndarray, classes: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        if not (self.p > 0 and rng.random() < self.p):
            return image
        shifts = rng.uniform(-self.max_shift, self.max_shift, self.tissue_of_class.max() + 1)
        shifts[self.tissue_of_class[0]] = 0.0
        field = ndimage.gaussian_filter(shifts.astype(np.float32)[self.tissue_of_class[classes]],
                                        self.smooth)
        # A floor above zero: zero means "outside the brain" to the network.
        return np.where(image > 0, np.maximum(image + field, 0.01), 0).astype(np.float32)


@dataclass
class Compose:
    transforms: list

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x.astype(np.float32, copy=False)


@dataclass
class RandomElastic:
    """Random elastic deformation of an image patch and its labels together (the seed's:
    displacements drawn on a coarse grid of ``points`` control points per axis with SD
    ``sigma`` voxels, interpolated with cubic splines to every voxel).

    Called as ``transform(image, classes, rng)``; the image is resampled linearly, the labels
    by nearest neighbour, so they stay labels of the table. Content moved in from outside the
    patch is background.
    """

    p: float = 0.5
    points: int = 2
    sigma: float = 15.0

    def __call__(self, image: np.ndarray, classes: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() >= self.p:
            return image, classes
        coarse = rng.normal(0.0, self.sigma, (3,) + (self.points,) * 3)
        # The cubic-spline zoom of the control points, done one axis at a time (it is a tensor
        # product): a 3D zoom of each displacement component took 88 % of a patch's making.
        w = [self._weights(n) for n in image.shape]
        coords = np.einsum("ia,jb,kc,dabc->dijk", *w, coarse, optimize=True)
        coords += np.indices(image.shape, dtype=np.float64)
        warped = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0)
        labels = ndimage.map_coordinates(classes, coords, order=0, mode="constant", cval=0)
        return warped.astype(np.float32), labels.astype(classes.dtype)

    def _weights(self, n: int) -> np.ndarray:
        """(n, points): row i weighs the control points at voxel i, as ``ndimage.zoom`` of
        the control points to n voxels (order 3, nearest at the edges) does."""
        return np.stack([ndimage.zoom(unit, n / self.points, order=3, mode="nearest",
                                      grid_mode=True) for unit in np.eye(self.points)], axis=1)


@dataclass
class RandomFlipLeftRight:
    """Mirror a patch of the model grid left-right, swapping left and right labels.

    ``partner`` is ``LabelTable.mirrored()``. The grid's first axis runs left to right and is
    centred on the template's midline, so the mirrored patch is a plausible patch of a brain
    at the mirrored place, whose ``start`` (for the positional channels) is returned. Called
    as ``transform(image, classes, start, rng)``. A network trained without it was measurably
    better on right-hemisphere structures than on left ones (docs/training.md).
    """

    partner: np.ndarray
    grid_width: int
    p: float = 0.5

    def __call__(self, image: np.ndarray, classes: np.ndarray, start: tuple[int, int, int],
                 rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        if rng.random() >= self.p:
            return image, classes, start
        mirrored = self.partner[classes[::-1]].astype(classes.dtype)
        return (np.ascontiguousarray(image[::-1]), mirrored,
                (self.grid_width - start[0] - image.shape[0], start[1], start[2]))
