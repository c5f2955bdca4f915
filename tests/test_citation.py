"""The methods boilerplate: settings reach the text, every reference is cited and numbered."""

import json
import re
from pathlib import Path

import pytest

from eneuronet_bids.citation import REFERENCES, MethodsSettings, methods_markdown


def _settings(tmp_path: Path, **kw) -> MethodsSettings:
    defaults = dict(model_path=tmp_path / "eneuronet.pt", model_sha256="ab" * 32,
                    parameters=2180405, n4_in_brain=False, test_time_flip=True)
    return MethodsSettings(**{**defaults, **kw})


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("n4_in_brain", [True, False])
def test_settings_reach_the_text(tmp_path, flip, n4_in_brain):
    text = methods_markdown(_settings(tmp_path, test_time_flip=flip, n4_in_brain=n4_in_brain))
    assert "ab" * 32 in text and "2,180,405 parameters" in text
    assert ("mirrored left-right" in text) == flip
    assert ("again inside the brain mask" in text) == n4_in_brain
    assert "trained on" not in text  # no model card beside the model file


def test_training_data_from_the_model_card(tmp_path):
    (tmp_path / "model_card.json").write_text(json.dumps({"training_data": "my labels"}))
    assert "The network was trained on my labels [" in methods_markdown(_settings(tmp_path))
    (tmp_path / "model_card.json").write_text("{broken")
    assert "trained on" not in methods_markdown(_settings(tmp_path))


def test_every_reference_cited_once_in_order(tmp_path):
    body, refs = methods_markdown(_settings(tmp_path)).split("## References")
    listed = re.findall(r"^(\d+)\. (.+)$", refs, flags=re.M)
    assert [int(n) for n, _ in listed] == list(range(1, len(listed) + 1))
    assert {r for _, r in listed} <= set(REFERENCES.values())
    cited = [int(n) for group in re.findall(r"\[([\d, ]+)\]", body) for n in group.split(",")]
    assert sorted(set(cited)) == list(range(1, len(listed) + 1))
    first = list(dict.fromkeys(cited))
    assert first == sorted(first)  # numbered by first citation
