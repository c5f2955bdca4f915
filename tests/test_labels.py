import numpy as np
import pytest

from eneuronet_bids.labels import LEFT_WM, RIGHT_WM, label_table, training_labels


def test_table_has_dkt31_aseg_and_white_matter():
    table = label_table()
    assert len(table) == 101
    assert table.labels[0].index == 0
    assert len(set(table.indices.tolist())) == len(table)
    assert len(table.classes_in("cortical")) == 62
    assert len(table.classes_in("white-matter")) == 2
    assert len(table.classes_in("non-cortical")) == 36
    # DKT31 excludes the poles, bankssts and corpus callosum
    for excluded in (1001, 1004, 1032, 1033, 2001, 2004, 2032, 2033):
        assert excluded not in table.indices
    assert all(lab.color.startswith("#") and len(lab.color) == 7 for lab in table)


def test_class_round_trip_and_unknown_labels():
    table = label_table()
    labels = np.array([0, 2, 41, 17, 1035, 2002])
    assert np.array_equal(table.to_labels(table.to_classes(labels)), labels)
    with pytest.raises(ValueError, match="1032"):
        table.to_classes(np.array([1032]))


def test_mirrored_swaps_hemispheres_and_keeps_the_midline():
    table = label_table()
    partner = table.mirrored()
    assert np.array_equal(partner[partner], np.arange(len(table)))
    names = [lab.name for lab in table]
    assert names[partner[names.index("ctx-lh-insula")]] == "ctx-rh-insula"
    assert names[partner[names.index("Right-Hippocampus")]] == "Left-Hippocampus"
    for k, lab in enumerate(table):
        other = table.labels[partner[k]]
        if lab.hemisphere is None:
            assert partner[k] == k
        else:
            assert {lab.hemisphere, other.hemisphere} == {"left", "right"}
            assert other.group == lab.group


def test_tissues_join_cortical_parcels_and_the_two_hemispheres():
    table = label_table()
    tissue = table.tissue_of_class()
    k = {lab.name: i for i, lab in enumerate(table)}
    assert tissue[0] == 0 and (tissue[1:] > 0).all()
    assert len(set(tissue[table.classes_in("cortical")])) == 1
    assert tissue[k["Left-Cerebral-White-Matter"]] == tissue[k["Right-Cerebral-White-Matter"]]
    assert tissue[k["Left-Hippocampus"]] == tissue[k["Right-Hippocampus"]]
    assert len({tissue[k[n]] for n in ("Left-Hippocampus", "Left-Amygdala", "Left-Putamen",
                                       "Left-Cerebral-White-Matter", "ctx-lh-insula")}) == 5


def test_training_labels_merges_poles_and_derives_white_matter():
    lab = np.zeros((12, 6, 6), dtype=np.int32)
    lab[0:2] = 1028  # left superior frontal
    lab[2, :, :] = 1032  # left frontal pole, next to 1028
    lab[10:12] = 2030  # right superior temporal
    lab[9] = 2033  # right temporal pole
    lab[5, 0, 0] = 72  # 5th ventricle: not in the table
    brain = np.ones(lab.shape, dtype=bool)
    brain[:, 5, 5] = False
    out = training_labels(lab, brain)
    assert set(np.unique(out[2])) == {1028}
    assert set(np.unique(out[9])) == {2030}
    assert out[4, 2, 2] == LEFT_WM and out[7, 2, 2] == RIGHT_WM
    assert out[5, 0, 0] == LEFT_WM
    assert out[5, 5, 5] == 0  # outside the brain stays background
    assert np.isin(out, label_table().indices).all()
