#!/usr/bin/env python3
"""Left and right hemisphere Dice of the plain pass, the mirrored pass alone and the test-time flip.

Answers whether a network is lopsided (it learnt one side better) or one side is harder: the
mirrored pass labels the left hemisphere with what the network does on a right one. Works on
the model grid with the train level's preprocessing cache (filled on first use), e.g.

    python scripts/mirror_pass_dice.py ../shared/data/mindboggle-oasis \\
        --labels ../shared/data/mindboggle-oasis/derivatives/mindboggle-manual \\
        --participants 13 14 15 16 -w WORK [--model eneuronet.pt]

and prints the mean Dice over the mirrored pairs of structures (`LabelTable.mirrored`).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch

from eneuronet_bids.infer import predict_probabilities
from eneuronet_bids.labels import label_table
from eneuronet_bids.metrics import dice_per_class
from eneuronet_bids.model_io import load_model, shipped_model
from eneuronet_bids.train import TrainConfig, find_labelled, prepare_example

_spec = importlib.util.spec_from_file_location(
    "hemisphere_asymmetry", Path(__file__).with_name("hemisphere_asymmetry.py"))
asymmetry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(asymmetry)


def mirrored_pass(model, image: np.ndarray, device: torch.device,
                  partner: np.ndarray) -> torch.Tensor:
    """The mirrored pass alone, in the original orientation and class meaning: what the test-
    time flip averages with the plain pass (the model grid is symmetric about x = 0)."""
    probs = predict_probabilities(model, np.ascontiguousarray(image[::-1]), device)
    return probs[torch.from_numpy(partner)].flip(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bids_dir", type=Path)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--labels-desc", default="DKT31aseg")
    p.add_argument("--participants", nargs="+", required=True)
    p.add_argument("-w", "--work-dir", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="default: the shipped weights")
    args = p.parse_args()
    table = label_table()
    partner = table.mirrored()
    device = torch.device("cpu")
    model, _ = load_model(args.model or shipped_model(), device)
    config = TrainConfig(bids_dir=args.bids_dir, output_dir=args.work_dir, labels_dir=args.labels,
                         labels_desc=args.labels_desc, work_dir=args.work_dir,
                         participants=args.participants)
    estimates = {
        "plain pass": lambda image: predict_probabilities(model, image, device),
        "mirrored pass alone": lambda image: mirrored_pass(model, image, device, partner),
        "test-time flip": lambda image: predict_probabilities(model, image, device,
                                                              mirror=partner),
    }
    dice: dict[str, list[np.ndarray]] = {name: [] for name in estimates}
    for pair in find_labelled(config):
        ex = prepare_example(*pair, config)
        for name, estimate in estimates.items():  # one at a time: each is 1.4 GB
            pred = estimate(ex.image).argmax(0).numpy()
            dice[name].append(dice_per_class(pred, ex.classes, len(table)))
    print(f"estimate\t{asymmetry.SUMMARY_HEADER}")
    for name, per_subject in dice.items():
        mean = np.nanmean(np.array(per_subject), axis=0)
        by_name = {lab.name: float(d) for lab, d in zip(table.labels, mean) if not np.isnan(d)}
        print(f"{name}\t{asymmetry.summary(by_name)}")


if __name__ == "__main__":
    main()
