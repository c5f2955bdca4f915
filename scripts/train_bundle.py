"""Train on a machine that has neither the datasets nor ITK (a lent GPU machine, say), from the
arrays the train level prepares.

    # where the datasets are: the train level's own command line, after "--"; prepares (through
    # the work directory's caches) the training, validation and warped examples, and saves them
    python scripts/train_bundle.py export BUNDLE.npz -- BIDS OUT train --labels … -w WORK …
    # elsewhere: the same run from the bundle; options after "--" override the stored ones
    python scripts/train_bundle.py train BUNDLE.npz OUT -- --device cuda --steps 3000 …

OUT receives what the train level writes (checkpoints, log, model, ``validated/``). Images are
stored as 8-bit integers in steps of 1/128 (normalised intensities run from 0 to about 1.5), so
rounding moves a voxel by at most 0.004, a tenth of the largest noise the augmentation adds; the
bundle is about half the size of the float16 caches (40.4 against 73.4 MB for run 22) (the lent GPU machine takes 64 MiB a call).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEP = 128  # quantisation steps per unit of normalised intensity


def allow_missing_itk() -> None:
    """Let ``eneuronet_bids.train`` import where antspyx is missing (the lent GPU machine):
    training from a bundle's arrays never calls it."""
    try:
        import ants  # noqa: F401
    except ImportError:
        sys.modules["ants"] = types.ModuleType("ants")


def quantise(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * STEP), 0, 255).astype(np.uint8)


def dequantise(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / STEP


def save(path: Path, data, argv: list[str]) -> None:
    from eneuronet_bids.atomic import write_atomic

    arrays, meta = {}, {"argv": argv, "train_participants": data.train_participants,
                        "val_participants": data.val_participants}
    for kind in ("examples", "val_examples", "warped"):
        meta[kind] = [ex.participant for ex in getattr(data, kind)]
        for i, ex in enumerate(getattr(data, kind)):
            arrays[f"{kind}_{i}_image"] = quantise(ex.image)
            arrays[f"{kind}_{i}_classes"] = ex.classes
    arrays["meta"] = np.array(json.dumps(meta))
    write_atomic(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def load(path: Path):
    from eneuronet_bids.train import Example, TrainingData

    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        kinds = {kind: [Example(name, dequantise(z[f"{kind}_{i}_image"]),
                                z[f"{kind}_{i}_classes"])
                        for i, name in enumerate(meta[kind])]
                 for kind in ("examples", "val_examples", "warped")}
    return TrainingData(**kinds, train_participants=meta["train_participants"],
                        val_participants=meta["val_participants"]), meta["argv"]


def _config(argv: list[str]):
    from eneuronet_bids.cli import train_config
    from eneuronet_bids.parser import parse_args

    args = parse_args(argv)
    if args.analysis_level != "train":
        sys.exit("the command line after -- must be a train level's")
    return train_config(args, args.work_dir or Path(args.output_dir) / "work")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="prepare a train level's arrays and save them")
    exp.add_argument("bundle", type=Path)
    exp.add_argument("argv", nargs=argparse.REMAINDER, help="-- and the train command line")
    tr = sub.add_parser("train", help="run the stored train level from the bundle")
    tr.add_argument("bundle", type=Path)
    tr.add_argument("output_dir", type=Path)
    tr.add_argument("argv", nargs=argparse.REMAINDER, help="-- and options that override")
    opts = ap.parse_args()
    argv = opts.argv[1:] if opts.argv[:1] == ["--"] else opts.argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    from eneuronet_bids.malloc import keep_freed_memory

    keep_freed_memory()  # as the train level does

    if opts.command == "export":
        from eneuronet_bids import distributed
        from eneuronet_bids.train import prepare_data

        config = _config(argv)
        save(opts.bundle, prepare_data(config, distributed.Group()), argv)
        logging.info("written: %s (%.1f MB)", opts.bundle, opts.bundle.stat().st_size / 1e6)
        return 0

    allow_missing_itk()
    from eneuronet_bids.train import run

    data, stored = load(opts.bundle)
    config = _config([*stored, *argv])
    # The stored command line's output and work directories are the exporting machine's.
    config = dataclasses.replace(config, output_dir=opts.output_dir,
                                 work_dir=opts.output_dir / "work")
    logging.info("written: %s", run(config, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
