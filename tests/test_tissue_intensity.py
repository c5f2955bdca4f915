"""scripts/tissue_intensity.py and n4_settings.py: medians per structure ignore the
background; the white-matter spread measures uneven white matter."""

import numpy as np
import tissue_intensity


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
