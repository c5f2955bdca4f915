"""scripts/compare_dseg.py: a parcellation read back from a grid twice as fine is the same
parcellation; volumes are compared by structure name."""

import nibabel as nib
import numpy as np
import pandas as pd
import compare_dseg


def test_labels_read_from_a_finer_grid_come_back_unchanged():
    coarse = np.zeros((8, 10, 6), np.int16)
    coarse[2:5, 3:8, 1:4] = 17
    coarse[5:7, 1:3, 2:5] = 1035
    affine = np.array([[-2.0, 0, 0, 40], [0, 2.0, 0, -20], [0, 0, 2.0, 5], [0, 0, 0, 1]])
    # each fine voxel (half the size) centred inside the coarse voxel it came from
    fine_affine = affine @ np.array([[0.5, 0, 0, -0.25], [0, 0.5, 0, -0.25], [0, 0, 0.5, -0.25],
                                     [0, 0, 0, 1]])
    fine = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    back = compare_dseg.on_grid_of(nib.Nifti1Image(coarse, affine), nib.Nifti1Image(fine, fine_affine))
    assert np.array_equal(back, coarse)
    shifted = fine_affine.copy()
    shifted[0, 3] += 100  # entirely elsewhere in space: nothing of it is read
    assert not compare_dseg.on_grid_of(nib.Nifti1Image(coarse, affine),
                                       nib.Nifti1Image(fine, shifted)).any()


def test_volume_differences_match_structures_by_name(tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    pd.DataFrame({"index": [17, None], "name": ["Left-Hippocampus", "Total-Brain"],
                  "volume_mm3": [4000.0, 1.2e6]}).to_csv(a, sep="\t", index=False)
    pd.DataFrame({"index": [None, 17], "name": ["Total-Brain", "Left-Hippocampus"],
                  "volume_mm3": [1.14e6, 4200.0]}).to_csv(b, sep="\t", index=False)
    diff = compare_dseg.volume_differences(a, b).set_index("name").relative
    assert np.isclose(diff["Left-Hippocampus"], 0.05) and np.isclose(diff["Total-Brain"], -0.05)
