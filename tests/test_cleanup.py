"""eneuronet_bids.cleanup: stray pieces of the cleaned labels go to the nearest kept voxel of a
cleaned label; other labels and background neither lose nor gain a voxel."""

import nibabel as nib
import numpy as np
import pytest

from eneuronet_bids.cleanup import keep_largest_pieces


def _head() -> np.ndarray:
    labels = np.zeros((14, 9, 6), np.int16)
    labels[1:13, 1:8, 1:5] = 2          # white matter around everything
    labels[2:5, 2:5, 1:4] = 1003        # a cortical parcel, main piece
    labels[5:8, 2:5, 1:4] = 1005        # its neighbour
    labels[6, 3, 2] = 1003              # an island of the first inside the second
    labels[10, 3, 2] = 1003             # an island inside white matter, nearer 1005 than 1003
    labels[1, 1, 1] = 1005              # at the brain's edge, in white matter's corner
    labels[10:12, 5:7, 1:3] = 17        # hippocampus (non-cortical), main piece
    labels[12, 1, 4] = 17               # and an island of it
    return labels


def test_cortical_islands_join_the_nearest_kept_cortical_parcel():
    labels = _head()
    cleaned, moved = keep_largest_pieces(labels, {1003, 1005})
    assert moved == 3
    assert cleaned[6, 3, 2] == 1005 and cleaned[10, 3, 2] == 1005
    assert cleaned[1, 1, 1] == 1003     # nearest kept cortical voxel, not white matter
    # nothing else moves: white matter, the hippocampus island, background
    same = ~np.isin(labels, [1003, 1005])
    assert np.array_equal(cleaned[same], labels[same])
    assert np.array_equal(np.isin(cleaned, [1003, 1005]), np.isin(labels, [1003, 1005]))
    assert not np.shares_memory(cleaned, labels)


def test_edge_contact_does_not_join_pieces():
    labels = _head()
    labels[5, 5, 1] = 1003              # an edge with 1003's main piece, a face with 1005's
    cleaned, moved = keep_largest_pieces(labels, {1003, 1005})
    assert cleaned[5, 5, 1] == 1005 and moved == 4


def test_a_piece_nearest_its_own_parcel_is_not_counted():
    labels = _head()
    labels[3, 6, 2] = 1003              # one white-matter voxel away from 1003's main piece
    cleaned, moved = keep_largest_pieces(labels, {1003, 1005})
    assert cleaned[3, 6, 2] == 1003 and moved == 3


def test_parcels_in_one_piece_are_returned_unchanged():
    labels = np.zeros((6, 6, 6), np.int16)
    labels[1:3] = 1003
    labels[3:5] = 1005
    assert keep_largest_pieces(labels, {1003, 1005}) == (labels, 0)
    assert keep_largest_pieces(labels, {2035}) == (labels, 0)


def test_script_cleans_written_parcellations_by_group(tmp_path):
    import largest_component
    from eneuronet_bids import outputs
    from eneuronet_bids.discovery import WorkUnit
    unit = WorkUnit(tmp_path / "sub-01_T1w.nii.gz", {"subject": "01"})
    source = outputs.output_paths(tmp_path / "in", unit).dseg
    source.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(_head(), np.diag([1.0, 1.0, 1.0, 1.0])), source)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["largest_component.py", str(tmp_path / "in"), str(tmp_path / "out"),
                                "--participants", "01", "--groups", "cortical"])
        largest_component.main()
    out = np.asarray(nib.load(outputs.output_paths(tmp_path / "out", unit).dseg).dataobj)
    assert np.array_equal(out, keep_largest_pieces(_head(), {1003, 1005})[0])
    assert out[12, 1, 4] == 17          # the hippocampus is not cortical
