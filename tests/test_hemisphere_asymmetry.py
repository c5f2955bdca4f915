"""The left-right asymmetry summary reads accuracy tables and pairs structures by mirror map."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "hemisphere_asymmetry", Path(__file__).parents[1] / "scripts" / "hemisphere_asymmetry.py")
asym = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(asym)


def test_pairs_left_with_right_and_skips_missing_values(tmp_path):
    table = tmp_path / "accuracy.tsv"
    table.write_text(
        "participant\tcortical\tnon-cortical\twhite-matter\tall\nmean\t0.5\t0.5\t0.5\t0.5\n\n"
        "structure\tmean_dice\n"
        "Left-Thalamus\t0.80\nRight-Thalamus\t0.90\n"
        "ctx-lh-insula\t0.70\nctx-rh-insula\t0.60\n"
        "Left-Caudate\tn/a\nRight-Caudate\t0.50\n"
        "Brain-Stem\t0.95\n")
    left, right = asym.hemisphere_pairs(asym.structure_dice(table))
    assert sorted(zip(left.tolist(), right.tolist())) == [(0.7, 0.6), (0.8, 0.9)]


def test_a_table_without_structures_is_refused(tmp_path):
    table = tmp_path / "accuracy.tsv"
    table.write_text("participant\tcortical\nmean\t0.5\n")
    with pytest.raises(SystemExit, match="no 'structure"):
        asym.structure_dice(table)
