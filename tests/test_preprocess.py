import numpy as np
from scipy.spatial.transform import Rotation

from eneuronet_bids.preprocess import _rigid_matrix, _write_linear, rigid_part


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
