import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from eneuronet_bids.preprocess import (_largest_component, _otsu3, _rigid_matrix, _write_linear,
                                       rigid_part, tissue_mask)


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
