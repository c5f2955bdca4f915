"""scripts/tissue_intensity.py: labels reach the model grid where they belong; medians per
structure ignore the background."""

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import tissue_intensity

from eneuronet_bids import templates


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
    prep = SimpleNamespace(template_to_native=shift, grid_affine=grid_affine)
    on_grid = tissue_intensity.labels_on_grid(prep, nib.Nifti1Image(labels, native_affine))
    assert on_grid.shape == templates.GRID_SHAPE
    hits = np.argwhere(on_grid == 7)
    expected = np.linalg.inv(grid_affine) @ [*point, 1]
    assert len(hits) and np.abs(hits - expected[:3]).max() <= 1.5


def test_structure_medians_skip_background_and_report_absent_structures():
    image = np.array([0.0, 0.2, 0.4, 0.9, 0.0], np.float32)
    labels = np.array([1, 1, 1, 2, 2])
    out = tissue_intensity.structure_medians(image, labels, {"a": (1,), "b": (2,), "c": (3,)})
    assert out["a"] == np.float32(0.3) and out["b"] == np.float32(0.9)
    assert np.isnan(out["c"])


def test_white_matter_spread_is_zero_for_even_white_matter():
    import n4_settings

    labels = np.zeros((6, 6, 6), np.int16)
    for k, ids in enumerate(tissue_intensity.IXI_WHITE_MATTER.values()):
        labels[k] = ids[0]
    even = np.where(labels > 0, 0.8, 0).astype(np.float32)
    assert n4_settings.white_matter_spread(even, labels) == 0
    graded = even * (1 + 0.05 * np.arange(6))[:, None, None]  # brighter region by region
    assert np.isclose(n4_settings.white_matter_spread(graded, labels), 0.25 / 1.25, atol=1e-6)
