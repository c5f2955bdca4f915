"""Resampling between voxel grids related by 4x4 affines, with torch's ``grid_sample``.

One routine serves every direction: native T1w -> model grid (image, labels) and model grid ->
native T1w (class probabilities), so both sides of the pipeline agree on the geometry. Each runs
on the device of the tensor it is given; results that leave as numpy arrays come to the host.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Our arrays index (i, j, k); grid_sample's last grid dimension is ordered (k, j, i).
_REVERSE = np.eye(4)[[2, 1, 0, 3]]


def _normaliser(shape: tuple[int, ...]) -> np.ndarray:
    """Voxel index -> grid_sample's [-1, 1] coordinates (align_corners=True)."""
    n = np.eye(4)
    for axis, size in enumerate(shape):
        n[axis, axis] = 2.0 / max(size - 1, 1)
        n[axis, 3] = -1.0
    return n


def mask_box(mask: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s true voxels plus ``margin``, clipped to the array; None
    for an empty mask."""
    ijk = np.argwhere(mask)
    if not len(ijk):
        return None
    lo = np.maximum(ijk.min(0) - margin, 0)
    hi = np.minimum(ijk.max(0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def sample_grid(out_shape: tuple[int, int, int], out_to_in: np.ndarray,
                in_shape: tuple[int, int, int], device: torch.device | None = None
                ) -> torch.Tensor:
    """Sampling grid for ``grid_sample``: ``out_to_in`` maps output voxel indices to input ones."""
    theta = _normaliser(in_shape) @ out_to_in @ np.linalg.inv(_normaliser(out_shape))
    theta = _REVERSE @ theta @ _REVERSE  # back to grid_sample's (k, j, i) order on both sides
    theta_t = torch.as_tensor(theta[:3], dtype=torch.float32, device=device)[None]
    size = (1, 1, *out_shape)
    return F.affine_grid(theta_t, list(size), align_corners=True)


def resample(volume: np.ndarray | torch.Tensor, out_to_in: np.ndarray,
             out_shape: tuple[int, int, int], *, mode: str = "bilinear",
             padding: str = "zeros") -> torch.Tensor:
    """Resample ``volume`` (X, Y, Z) or (C, X, Y, Z) onto ``out_shape``; zero outside, or the
    nearest edge value with ``padding="border"``.

    ``mode`` is grid_sample's: "bilinear" is trilinear for volumes, "nearest" for label maps.
    """
    vol = torch.as_tensor(volume)
    squeeze = vol.ndim == 3
    if squeeze:
        vol = vol[None]
    grid = sample_grid(out_shape, out_to_in, tuple(vol.shape[1:]), vol.device)
    out = F.grid_sample(vol[None].float(), grid, mode=mode, padding_mode=padding,
                        align_corners=True)[0]
    return out[0] if squeeze else out


def _slab_blocks(probabilities: torch.Tensor, out_to_in: np.ndarray,
                 out_shape: tuple[int, int, int], slab: int):
    """Yield ``(start, stop, block, block_out_to_in)`` for every slab of the output along its
    first axis that maps into the input: ``block`` is the float32 (C, ...) part of the input
    the slab reads, and ``block_out_to_in`` maps slab voxel indices to block voxel indices.

    Reading block by block means neither (C, *out_shape) nor a float32 copy of the whole input
    ever exists. Outside the input every probability is zero.
    """
    in_shape = np.array(probabilities.shape[1:])
    for start in range(0, out_shape[0], slab):
        stop = min(start + slab, out_shape[0])
        corners = np.array([[i, j, k, 1] for i in (start, stop - 1)
                            for j in (0, out_shape[1] - 1) for k in (0, out_shape[2] - 1)])
        mapped = (out_to_in @ corners.T)[:3].T
        lo = np.maximum(np.floor(mapped.min(0)).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(mapped.max(0)).astype(int) + 2, in_shape)
        if np.any(hi <= lo):
            continue
        # grid_sample maps every point of a one-voxel axis onto that voxel: keep two.
        hi = np.minimum(np.maximum(hi, lo + 2), in_shape)
        lo = np.maximum(np.minimum(lo, hi - 2), 0)
        block = probabilities[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].float()
        shift_out, shift_in = np.eye(4), np.eye(4)
        shift_out[0, 3] = start
        shift_in[:3, 3] = -lo
        yield start, stop, block, shift_in @ out_to_in @ shift_out


def _sample_points(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear values (C, N) of ``volume`` (C, X, Y, Z) at voxel coordinates ``points``
    (N, 3); zero outside, exactly as :func:`resample`."""
    n = torch.as_tensor(_normaliser(tuple(volume.shape[1:]))[:3], dtype=torch.float32,
                        device=volume.device)
    normalised = points @ n[:, :3].T + n[:, 3]
    grid = normalised.flip(-1).view(1, 1, 1, -1, 3)  # grid_sample wants (k, j, i)
    return F.grid_sample(volume[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)[0, :, 0, 0]


def _argmax_slab(block: torch.Tensor, out_to_in: np.ndarray,
                 out_shape: tuple[int, int, int]) -> torch.Tensor:
    """Argmax of the trilinearly resampled ``block`` without resampling every class at every
    voxel.

    Where the 8 input voxels around an output voxel share their most likely class L, L wins
    as soon as its interpolated probability exceeds the interpolated second-highest
    probability (no other class can beat that bound). Both take one channel each; only the
    voxels this does not decide (class boundaries, low confidence, the input's edge) get all
    channels. The result equals the full argmax.
    """
    top, top_class = block.topk(2, dim=0)
    cls = top_class[0]
    # A cell (i..i+1, j..j+1, k..k+1) is uniform when its 8 corners share the top class.
    uniform = cls[:-1, :-1, :-1].clone()
    same = torch.ones_like(uniform, dtype=torch.bool)
    for di, dj, dk in ((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)):
        if di or dj or dk:
            same &= cls[di:di + uniform.shape[0], dj:dj + uniform.shape[1],
                        dk:dk + uniform.shape[2]] == uniform
    uniform[~same] = -1

    device = block.device
    index = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float64, device=device)
                                         for n in out_shape), indexing="ij"), -1).reshape(-1, 3)
    to_in = torch.as_tensor(out_to_in, device=device)
    points = (index @ to_in[:3, :3].T + to_in[:3, 3]).float()
    cell = points.floor().long()
    inside = ((cell >= 0) & (cell < torch.tensor(uniform.shape, device=device))).all(1)
    labels = torch.full((len(points),), -1, dtype=torch.long, device=device)
    c = cell[inside]
    labels[inside] = uniform[c[:, 0], c[:, 1], c[:, 2]]
    candidates = labels >= 0
    bounds = _sample_points(top, points[candidates])
    undecided = candidates.clone()
    undecided[candidates] = bounds[0] <= bounds[1]
    undecided |= ~candidates
    if undecided.any():
        labels[undecided] = _sample_points(block, points[undecided]).argmax(0)
    return labels.view(out_shape)


def resample_argmax(probabilities: torch.Tensor, out_to_in: np.ndarray,
                    out_shape: tuple[int, int, int], *, slab: int = 16,
                    probabilities_out: np.ndarray | None = None) -> np.ndarray:
    """Trilinearly resample class probabilities (C, X, Y, Z) and take the argmax, on the
    device the probabilities are on; voxels that map outside the input get class 0.

    With ``probabilities_out`` (X', Y', Z', C) uint8, pre-filled with certain background, the
    same pass also stores the resampled probabilities there, quantised (probability x 255);
    probability mass the input lacks (near and beyond its edges) goes to background.
    """
    labels = np.zeros(out_shape, dtype=np.int64)
    for start, stop, block, block_to_in in _slab_blocks(probabilities, out_to_in, out_shape,
                                                        slab):
        slab_shape = (stop - start, *out_shape[1:])
        if probabilities_out is None:
            labels[start:stop] = _argmax_slab(block, block_to_in, slab_shape).cpu().numpy()
            continue
        part = resample(block, block_to_in, slab_shape)
        labels[start:stop] = part.argmax(0).cpu().numpy()
        part[0] += 1 - part.sum(0)
        q = (part.clamp(0, 1) * 255).round().to(torch.uint8)
        probabilities_out[start:stop] = q.permute(1, 2, 3, 0).cpu().numpy()
    return labels
