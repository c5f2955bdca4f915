"""scripts/resample_t1w.py: the resampled image's affine puts every voxel where its value came
from (a ramp in world x reads back as world x)."""

import nibabel as nib
import numpy as np
import resample_t1w


def test_resampled_voxels_keep_their_world_position():
    affine = np.array([[0, 0, -1.2, 50], [1.2, 0, 0, -30], [0, 1.2, 0, 10], [0, 0, 0, 1]])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (20, 24, 18)], indexing="ij"), -1)
    world_x = (ijk @ affine[:3, :3].T + affine[:3, 3])[..., 0]
    img = nib.Nifti1Image((100 * world_x + 5000).astype(np.float32), affine)
    img.header.set_zooms((1.2, 1.2, 1.2))
    out = resample_t1w.resample(img, 0.5)
    assert out.shape == (48, 58, 43)
    assert np.allclose(np.linalg.norm(out.affine[:3, :3], axis=0), 1.2 * 20 / 48, rtol=0.02)
    new_ijk = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), -1)
    new_x = (new_ijk @ out.affine[:3, :3].T + out.affine[:3, 3])[..., 0]
    inner = (slice(3, -3),) * 3  # trilinear is exact for a ramp away from the clamped edges
    assert np.abs(np.asarray(out.dataobj)[inner] - (100 * new_x[inner] + 5000)).max() <= 1
