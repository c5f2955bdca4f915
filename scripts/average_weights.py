"""Average the weights of several E-NeuroNet model files (a uniform "model soup"), validate the
average as the train level validates, and export it with a model card.

    python scripts/average_weights.py OUT --bundle BUNDLE.npz W1.pt W2.pt ...

OUT receives ``eneuronet.pt`` (usable by ``participant --model``) and its model card (JSON and
markdown), whose validation Dice is ``train.validate`` on the bundle's validation images (a
``scripts/train_bundle.py export`` file) and whose lineage is the runs the inputs share, then
one line naming the inputs. Averaging is meant for weights of one run's trajectory, or of runs
warm-started from one another, which lie close together; the inputs must be made for the same
network and label table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_bundle  # noqa: E402

train_bundle.allow_missing_itk()

import torch  # noqa: E402

from eneuronet_bids.model import ENeuroNet, ModelConfig  # noqa: E402
from eneuronet_bids.model_io import ModelError, export_model, load_model  # noqa: E402
from eneuronet_bids.train import validate  # noqa: E402

log = logging.getLogger("average_weights")


class Averaged(NamedTuple):
    """One input of the average: its file, the file's sha256 and the runs behind it."""

    path: Path
    sha256: str
    lineage: list[str]


def average_state(paths: list[Path]) -> tuple[ModelConfig, dict[str, torch.Tensor],
                                              list[Averaged]]:
    """The inputs' network, their weights' uniform mean, and the inputs. Raises ModelError
    for a file that does not load or a network unlike the first."""
    config, total, inputs = None, {}, []
    for path in paths:
        model, info = load_model(path, torch.device("cpu"))  # checks the file and label table
        if config is not None and model.config != config:
            raise ModelError(f"{path} has another model configuration than {paths[0]}")
        config = model.config
        for name, value in model.state_dict().items():
            total[name] = total.get(name, 0) + value.double()
        inputs.append(Averaged(path, info["sha256"], info["lineage"]))
    return config, {k: (v / len(paths)).float() for k, v in total.items()}, inputs


def shared_lineage(inputs: list[Averaged]) -> list[str]:
    """The runs all inputs descend from, then one line that names the inputs and what each
    added."""
    lineages = [i.lineage for i in inputs]
    common = 0
    while all(len(lin) > common and lin[common] == lineages[0][common] for lin in lineages):
        common += 1
    named = [f"{i.path.parent.name}/{i.path.name} (sha256 {i.sha256[:12]}"
             + (f": {i.lineage[-1]}" if len(i.lineage) > common else "") + ")"
             for i in inputs]
    return [*lineages[0][:common],
            f"uniform average of the weights of {len(inputs)} models: " + "; ".join(named)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--bundle", type=Path, required=True,
                    help="validation images: a train_bundle.py export")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    if len(args.models) < 2:
        ap.error("give at least two model files")
    if not args.bundle.is_file():
        ap.error(f"--bundle {args.bundle}: no such file")
    try:
        config, state, inputs = average_state(args.models)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data, _ = train_bundle.load(args.bundle)
    model = ENeuroNet(config)
    model.load_state_dict(state)
    model = model.to(memory_format=torch.channels_last_3d)
    scores = validate(model, data.val_examples, torch.device("cpu"))
    log.info("validation Dice %s", scores["groups"])
    path = export_model(args.out, config, state, validation=scores, training={
        "averaged": [{"path": str(i.path), "sha256": i.sha256} for i in inputs],
        "lineage": shared_lineage(inputs),
        "train_participants": data.train_participants,
        "val_participants": data.val_participants})
    log.info("written: %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
