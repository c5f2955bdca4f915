"""Saving, exporting and loading trained models and their model cards."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import torch

from . import __version__
from .atomic import write_atomic, write_text
from .labels import label_table
from .model import ENeuroNet, ModelConfig

MODEL_FILE = "eneuronet.pt"
LICENCE = ("CC BY-NC-SA 3.0 (weights trained on Mindboggle-101 manual labels inherit their "
           "licence; cite Klein & Tourville 2012)")


class ModelError(RuntimeError):
    """The model file is missing, corrupt or made for another label table."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_model() -> Path:
    return Path(str(resources.files("eneuronet_bids").joinpath(f"data/model/{MODEL_FILE}")))


def export_model(directory: Path, config: ModelConfig, state_dict: dict, *,
                 training: dict, validation: dict | None) -> Path:
    """Write ``eneuronet.pt`` and its model card (JSON and markdown) into ``directory``.
    ``training["lineage"]`` (the runs that made these weights, oldest first) also goes into
    the model file, so that a run warm-started from it can carry the lineage on."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    # Host copies: a file saved with CUDA tensors cannot be loaded where there is no GPU
    # without a map_location (the run-23 weights, trained on a GPU, were first saved so).
    state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
    model = {"format": "eneuronet-model/1", "model_config": config.to_dict(),
             "labels": label_table().indices.tolist(), "state_dict": state_dict,
             "lineage": training.get("lineage", [])}
    write_atomic(path, lambda tmp: torch.save(model, tmp))
    card = {
        "name": "E-NeuroNet DKT31+aseg",
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sha256": sha256(path),
        "parameters": sum(v.numel() for v in state_dict.values()),
        "model_config": config.to_dict(),
        "labels": "FreeSurfer aparc.DKTatlas+aseg numbering; see dseg.tsv",
        "n_classes": config.n_classes,
        "training_data": "Mindboggle-101 OASIS-TRT-20 manual DKT31 + aseg labels",
        "licence": LICENCE,
        "training": training,
        "validation": validation,
    }
    write_text(directory / "model_card.json", json.dumps(card, indent=2) + "\n")
    write_text(directory / "model_card.md", model_card_markdown(card))
    return path


def model_card_markdown(card: dict) -> str:
    lines = [f"# Model card: {card['name']}", "",
             f"- package version: {card['package_version']}",
             f"- created: {card['created']}",
             f"- sha256: `{card['sha256']}`",
             f"- parameters: {card['parameters']:,}",
             f"- classes: {card['n_classes']} ({card['labels']})",
             f"- preprocessing: N4 {card['model_config'].get('n4', 'quick')} (README, Training)",
             f"- training data: {card['training_data']}",
             f"- licence: {card['licence']}", ""]
    tr = card["training"]
    lines += ["## Training", ""]
    if tr.get("averaged"):
        lines += [f"- the uniform average of the weights of {len(tr['averaged'])} models "
                  "(lineage below)"]
    else:
        lines += [f"- steps: {tr.get('steps')} (weights from step {tr.get('best_step')})"]
    lines += [f"- training participants: {', '.join(tr.get('train_participants', []))}",
              f"- validation participants (never trained on): "
              f"{', '.join(tr.get('val_participants', []))}"]
    if tr.get("config"):
        lines += [f"- configuration: `{json.dumps(tr['config'])}`"]
    if tr.get("lineage"):
        lines += ["", "Lineage (each run warm-started from the weights of the one before):", ""]
        lines += [f"{i}. {run}" for i, run in enumerate(tr["lineage"], 1)]
    lines.append("")
    val = card.get("validation")
    if val:
        lines += ["## Validation Dice (model grid, held-out participants)", "",
                  "| group | mean Dice |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in val["groups"].items()]
        lines += ["", "| structure | Dice |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.3f}'} |"
                  for k, v in val["per_label"].items()]
    return "\n".join(lines) + "\n"


def load_model(path: Path, device: torch.device) -> tuple[ENeuroNet, dict]:
    """Load a model file; returns the model (eval mode) and ``{'sha256', 'path', 'lineage'}``
    (the runs that made its weights, oldest first; empty for files that record none)."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        config = ModelConfig(**blob["model_config"])
        model = ENeuroNet(config)
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # torch raises many types for a damaged file
        raise ModelError(f"model file {path} is corrupt or not an E-NeuroNet model "
                         f"({type(exc).__name__})") from exc
    if blob.get("labels") != label_table().indices.tolist():
        raise ModelError(f"model file {path} was trained for another label table")
    model = model.to(device).to(memory_format=torch.channels_last_3d).eval()
    return model, {"path": str(path), "sha256": sha256(path),
                   "lineage": blob.get("lineage", [])}
