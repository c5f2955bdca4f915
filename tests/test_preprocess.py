import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from eneuronet_bids import templates
from eneuronet_bids.preprocess import (Preprocessed, _largest_component, _otsu3, _rigid_matrix,
                                       _write_linear, rigid_part, tissue_mask)


def _affine(rotation_deg, scale, translation):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix() @ np.diag(scale)
    m[:3, 3] = translation
    return m


def test_rigid_part_keeps_rotation_and_the_centre():
    affine = _affine([10, -5, 20], [1.1, 0.9, 1.05], [3.0, -7.0, 12.0])
    centre = np.array([1.0, -18.0, 8.0])
    rigid = rigid_part(affine, centre)
    r = rigid[:3, :3]
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    assert np.allclose(r, affine[:3, :3] @ np.diag(1 / np.array([1.1, 0.9, 1.05])))
    assert np.allclose(rigid @ np.r_[centre, 1], affine @ np.r_[centre, 1])


def test_linear_transform_file_round_trip(tmp_path):
    m = _affine([3, 7, -12], [1, 1, 1], [-4.5, 2.0, 30.0])
    assert np.allclose(_rigid_matrix(_write_linear(m, tmp_path / "t.mat")), m, atol=1e-5)


def test_tissue_mask_on_the_bounding_box_equals_the_whole_volume():
    rng = np.random.default_rng(0)
    shape = (60, 64, 56)
    ijk = np.indices(shape).transpose(1, 2, 3, 0)
    r = np.linalg.norm((ijk - [28, 30, 26]) / [14, 17, 13], axis=-1)
    mask = r < 1
    # bright core (white matter), grey rim, dark CSF shell, noise, a dark hole inside
    data = np.where(r < 0.6, 100.0, np.where(r < 0.85, 60.0, 20.0)) + rng.normal(0, 5, shape)
    data[26:29, 29:32, 25:28] = 10.0
    data[8:12, 8:12, 8:12] = 100.0  # bright, outside the mask
    whole = _tissue_mask_whole_volume(mask, data)
    assert np.array_equal(tissue_mask(mask, data), whole)
    assert 0 < whole.sum() < mask.sum()
    assert not tissue_mask(np.zeros(shape, bool), data).any()


def _tissue_mask_whole_volume(mask, data):
    inside = data[mask]
    lo, hi = np.percentile(inside, [1, 99])
    csf_tissue, _ = _otsu3(np.clip(inside, lo, hi))
    opened = ndimage.binary_opening(mask & (data > csf_tissue), iterations=1)
    tight = ndimage.binary_fill_holes(_largest_component(opened))
    return ndimage.binary_closing(tight, iterations=2) & mask


_TWICE = """
import sys
from pathlib import Path
import numpy as np
from eneuronet_bids import templates
from eneuronet_bids.preprocess import preprocess, seed_ants
runs = []
for i in range(2):
    seed_ants(0, 1)
    runs.append(preprocess(Path(sys.argv[1]), skull_stripped=True,
                           workdir=Path(sys.argv[2]) / str(i)))
assert np.array_equal(runs[0].template_to_native, runs[1].template_to_native), "rigid alignment"
assert np.array_equal(runs[0].image, runs[1].image), "grid image"
"""


@pytest.mark.e2e
def test_labels_land_on_the_grid_voxel_of_their_world_position():
    grid_affine = templates.model_grid()
    shift = np.eye(4)
    shift[:3, 3] = [4.0, -2.0, 6.0]  # the native scan sits 4, -2, 6 mm from the template
    native_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    native_affine[:3, 3] = [-120.0, -140.0, -100.0]
    labels = np.zeros((120, 140, 110), np.int16)
    point = np.array([10.0, -20.0, 30.0])  # a template-space point
    voxel = np.round(np.linalg.inv(native_affine) @ shift @ [*point, 1])[:3].astype(int)
    labels[tuple(voxel)] = 7
    prep = Preprocessed(native=nib.Nifti1Image(labels, native_affine), bias_corrected=labels,
                        brain_mask=labels > 0, template_to_native=shift, ants_transform=None,
                        image=None, grid_affine=grid_affine)
    on_grid = prep.labels_to_grid(labels)
    assert on_grid.shape == templates.GRID_SHAPE
    hits = np.argwhere(on_grid == 7)
    expected = np.linalg.inv(grid_affine) @ [*point, 1]
    assert len(hits) and np.abs(hits - expected[:3]).max() <= 1.5
    with pytest.raises(ValueError, match="differs from its T1w"):
        prep.labels_to_grid(labels[:-1])


@pytest.mark.e2e
def test_model_grid_is_symmetric_about_the_template_midline():
    # The test-time flip mirrors the grid's first axis; that is a left-right mirror of the
    # brain only if that axis runs left to right and the grid is centred on x = 0.
    grid = templates.model_grid()
    assert np.allclose(grid[:3, :3], np.eye(3))
    centre = grid @ np.r_[(np.array(templates.GRID_SHAPE) - 1) / 2, 1]
    assert abs(centre[0]) < 0.5


def test_preprocessing_is_identical_for_the_default_seed(shared, tmp_path):
    """The default --random-seed 0 must fix ANTs' metric sampling too (ANTs reads a seed of 0
    as none): the same image twice, one ITK thread, the same rigid alignment and grid image.
    In a fresh process: ITK keeps the thread count it first started with."""
    t1w = shared / "mindboggle-oasis" / "sub-13" / "anat" / "sub-13_T1w.nii.gz"
    proc = subprocess.run([sys.executable, "-c", _TWICE, str(t1w), str(tmp_path)],
                          capture_output=True, text=True,
                          env={**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
