"""Command line, fmriprep style: ``eneuronet bids_dir output_dir {participant,group,train}``.

Paths are validated here, before any work starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import __version__
from .resources import IMAGE_PEAK_MB


class UsageError(ValueError):
    """A bad argument or path; reported as one line with exit code 2."""


def _abspath(value: str) -> Path:
    return Path(value).expanduser().absolute()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: …)`` only where it tells the reader something: not to help that
    already states its default, nor for flags and options whose default is "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # Identity, not equality: a default of 0 is worth showing, False (a flag) is not.
        if ("default" in text or any(default is v for v in (None, False, argparse.SUPPRESS))
                or default == [] or isinstance(action, argparse._CountAction)):
            return text
        if isinstance(default, list):
            return f"{text} (default: {' '.join(map(str, default))})"
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eneuronet",
        description="Whole-brain DKT31 + aseg parcellation of T1w images with E-NeuroNet "
                    "(BIDS App).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("bids_dir", type=_abspath, help="the root folder of a BIDS dataset")
    p.add_argument("output_dir", type=_abspath,
                   help="where derivatives (participant) or the trained model (train) go")
    p.add_argument("analysis_level", choices=["participant", "group", "train"],
                   help="participant: parcellate each T1w; group: group tables and report; "
                        "train: train a model on a labelled dataset")
    p.add_argument("--version", action="version", version=f"eneuronet {__version__}")

    g = p.add_argument_group("Options for filtering BIDS queries")
    g.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                   help="participants to process, with or without the 'sub-' prefix "
                        "(default: all)")
    g.add_argument("--session-label", "--session_label", nargs="+", metavar="LABEL",
                   help="sessions to process, with or without 'ses-' (default: all)")
    g.add_argument("--bids-filter-file", type=_abspath, metavar="FILE",
                   help="JSON file whose 't1w' object refines the T1w query with BIDS entities "
                        "(e.g. {\"t1w\": {\"acquisition\": \"mprage\", \"run\": 1}}); null "
                        "means the entity must be absent, \"*\" any value")
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                   help="do not validate bids_dir with bids-validator-deno")

    g = p.add_argument_group("Options for performance")
    g.add_argument("--nprocs", "--n-cpus", type=int, default=os.cpu_count() or 1,
                   help="maximum number of CPUs to use (default: all of this machine's)")
    g.add_argument("--omp-nthreads", type=int, default=None,
                   help="threads per process for torch and ITK (default: --nprocs)")
    g.add_argument("--mem-mb", "--mem_mb", "--mem", type=int, default=None, metavar="MB",
                   help="memory the participant level may use, in MB: images run at once are "
                        f"limited to one per {IMAGE_PEAK_MB / 1024:g} GB (default: the memory "
                        "free for this process, within a container's or batch job's limit)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the network runs; auto picks CUDA when present")
    g.add_argument("-w", "--work-dir", type=_abspath, default=None,
                   help="folder for intermediate files and caches, kept for reuse "
                        "(default: a temporary folder, removed at exit)")

    g = p.add_argument_group("Options for the parcellation")
    g.add_argument("--model", type=_abspath, default=None,
                   help="a model file from the train level (default: the shipped model)")
    g.add_argument("--skull-stripped", action="store_true",
                   help="treat every T1w as already skull-stripped (otherwise a T1w is "
                        "skull-stripped only when its sidecar says \"SkullStripped\": true)")
    g.add_argument("--random-seed", type=int, default=0,
                   help="seed (>= 0) for every random choice; results are identical for a "
                        "given seed with --omp-nthreads 1")
    g.add_argument("--force", action="store_true",
                   help="recompute images whose outputs are already complete (outputs "
                        "of another --model or flip setting, or from before the cortical "
                        "clean-up, are always recomputed)")
    g.add_argument("--test-time-flip", action=argparse.BooleanOptionalAction, default=True,
                   help="also classify the image mirrored left-right and average the two "
                        "(one more forward pass); --no-test-time-flip for speed")
    g.add_argument("--save-probabilities", action="store_true",
                   help="also write each image's class probabilities on its own grid as a "
                        "4D _probseg.nii.gz (uint8, scaled by 1/255; about 100 volumes)")

    g.add_argument("--boilerplate-only", "--boilerplate_only", action="store_true",
                   help="write the methods boilerplate (logs/CITATION.md) for these settings "
                        "and stop, processing no image")

    g = p.add_argument_group("Options for the train level")
    g.add_argument("--labels", type=_abspath, metavar="DIR",
                   help="derivatives dataset with a label map per T1w of bids_dir")
    g.add_argument("--labels-desc", default="DKT31aseg",
                   help="desc- entity of the label maps (…_desc-<DESC>_dseg.nii.gz)")
    g.add_argument("--steps", type=int, default=4000, help="optimiser steps")
    g.add_argument("--patch-size", type=int, default=96,
                   help="side of the cubic training patch (multiple of 16)")
    g.add_argument("--batch-size", type=int, default=1, help="patches per optimiser step")
    g.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate")
    g.add_argument("--dropout", type=float, default=0.1, metavar="P",
                   help="dropout rate after every convolution while training (default: 0.1; "
                        "0 also makes a CPU step about a fifth faster)")
    g.add_argument("--val-participants", nargs="+", default=["13", "14", "15", "16"],
                   metavar="LABEL", help="participants kept out of training for validation")
    g.add_argument("--validate-every", type=int, default=500, metavar="N",
                   help="score the validation participants every N steps")
    g.add_argument("--checkpoint-every", type=int, default=50, metavar="N",
                   help="write output_dir/checkpoint.pt every N steps (for --resume)")
    g.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N steps of this run with a checkpoint (job time limits); "
                        "continue with --resume")
    g.add_argument("--data-workers", type=int, default=None, metavar="N",
                   help="processes that make the augmented training batches (default: none "
                        "on the CPU, up to 8 with a GPU, which otherwise waits for them)")
    g.add_argument("--cpu-bf16", action="store_true",
                   help="train under bf16 autocast on a CPU with native bf16 (AVX512-BF16 or "
                        "AMX; about 1.8 times as fast as fp32 on one such CPU); off by default "
                        "(fp32), as another such CPU once gave non-finite gradients in bf16")
    g.add_argument("--keep-validated", action="store_true",
                   help="also export the weights of every validation to "
                        "output_dir/validated/step-N/ (to score the steps elsewhere)")
    g.add_argument("--resume", action="store_true",
                   help="continue from output_dir/checkpoint.pt")
    g.add_argument("--augment", choices=["none", "elastic", "registration"], default="elastic",
                   help="spatial augmentation: registration = labelled brains warped onto "
                        "unlabelled ones with ANTs SyN, plus elastic (intensity augmentation "
                        "is always on)")
    g.add_argument("--unlabelled", type=_abspath, metavar="DIR",
                   help="unlabelled BIDS dataset for --augment registration (e.g. IXI)")
    g.add_argument("--unlabelled-exclude", nargs="+", default=[], metavar="LABEL",
                   help="unlabelled participants never used as registration targets, with or "
                        "without 'sub-' (e.g. scans kept apart for testing)")
    g.add_argument("--pairs-per-subject", type=int, default=1,
                   help="unlabelled subjects each labelled subject is registered to")
    g.add_argument("--registration-p", type=float, default=1 / 3,
                   help="probability that a training patch comes from a warped example "
                        "(default: 1/3, the seed's)")
    g.add_argument("--match-target-intensity", action="store_true",
                   help="give each warped example the intensity distribution of the brain it "
                        "was warped onto (histogram matching inside the brain): the "
                        "unlabelled site's contrast as well as its shapes")
    g.add_argument("--flip-p", type=float, default=0.5,
                   help="probability that a training patch is mirrored left-right, with left "
                        "and right labels swapped (0 turns it off)")
    g.add_argument("--tissue-contrast-p", type=float, default=0.0,
                   help="probability that each tissue's intensity in a training patch is "
                        "shifted by its own random amount (contrast unlike the training "
                        "scans')")
    g.add_argument("--low-resolution-p", type=float, default=0.0,
                   help="probability that a training patch is blurred and resampled as if "
                        "acquired at 1-3 mm per axis")
    g.add_argument("--gamma-log-range", type=float, default=0.4, metavar="R",
                   help="intensity augmentation's gamma is drawn from exp(-R) to exp(R) "
                        "(default: 0.4, a gamma of 0.67 to 1.49)")
    g.add_argument("--n4", choices=["quick", "brain"], default="quick",
                   help="bias correction of the training images, stored with the model so "
                        "that the participant level repeats it: quick = three short N4 levels "
                        "(the shipped model's), brain = four levels of 50 inside the brain mask")
    g.add_argument("--init-weights", type=_abspath, metavar="FILE",
                   help="warm start from a model file or checkpoint (ignored with --resume)")

    g = p.add_argument_group("Other options")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    g.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    return p


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def validate_paths(args: argparse.Namespace) -> None:
    """Check paths and values up front; raises UsageError with a one-line message."""
    if not args.bids_dir.is_dir():
        raise UsageError(f"bids_dir {args.bids_dir} does not exist or is not a folder")
    if not (args.bids_dir / "dataset_description.json").is_file():
        raise UsageError(f"bids_dir {args.bids_dir} is not a BIDS dataset "
                         "(no dataset_description.json)")
    if _inside(args.output_dir, args.bids_dir) and not _inside(
            args.output_dir, args.bids_dir / "derivatives") or \
            args.output_dir.resolve() == (args.bids_dir / "derivatives").resolve():
        raise UsageError("output_dir must not be bids_dir or inside it, except under "
                         f"{args.bids_dir / 'derivatives'}/<name>")
    if args.bids_filter_file is not None and not args.bids_filter_file.is_file():
        raise UsageError(f"--bids-filter-file {args.bids_filter_file} does not exist")
    if args.model is not None and not args.model.is_file():
        raise UsageError(f"--model {args.model} does not exist")
    if args.nprocs < 1 or (args.omp_nthreads is not None and args.omp_nthreads < 1):
        raise UsageError("--nprocs and --omp-nthreads must be at least 1")
    if args.mem_mb is not None and args.mem_mb < 1:
        raise UsageError("--mem-mb must be at least 1")
    if args.random_seed < 0:
        raise UsageError("--random-seed must be 0 or more")
    if args.analysis_level == "train":
        if args.labels is None or not args.labels.is_dir():
            raise UsageError("the train level needs --labels DIR, an existing derivatives folder")
        if args.patch_size % 16 or args.patch_size < 32:
            raise UsageError("--patch-size must be a multiple of 16, at least 32")
        if args.init_weights is not None and not args.init_weights.is_file():
            raise UsageError(f"--init-weights {args.init_weights} does not exist")
        if args.steps < 1 or args.batch_size < 1:
            raise UsageError("--steps and --batch-size must be at least 1")
        if args.augment == "registration" and (args.unlabelled is None
                                               or not args.unlabelled.is_dir()):
            raise UsageError("--augment registration needs --unlabelled DIR, an existing "
                             "BIDS dataset")
        if args.pairs_per_subject < 1 or not 0 <= args.registration_p <= 1:
            raise UsageError("--pairs-per-subject must be at least 1 and --registration-p "
                             "within [0, 1]")
        if not 0 <= args.dropout < 1:
            raise UsageError("--dropout must be within [0, 1)")
        if not 0 <= args.gamma_log_range <= 1.5:
            raise UsageError("--gamma-log-range must be within [0, 1.5]")
        for name in ("flip_p", "tissue_contrast_p", "low_resolution_p"):
            if not 0 <= getattr(args, name) <= 1:
                raise UsageError(f"--{name.replace('_', '-')} must be within [0, 1]")
        if args.data_workers is not None and args.data_workers < 0:
            raise UsageError("--data-workers must be at least 0")
    _check_writable(args.output_dir, "output_dir")
    if args.work_dir is not None:
        _check_writable(args.work_dir, "--work-dir")


def _check_writable(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be created: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} is not writable")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.omp_nthreads is None:
        args.omp_nthreads = args.nprocs
    return args
