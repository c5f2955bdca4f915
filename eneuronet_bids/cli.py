"""Entry point: ``eneuronet`` / ``run.py``. Exit codes are documented in the README:

0 all images done (or skipped as complete); 1 one or more images failed; 2 bad command line,
paths or dataset (for the group level: no complete participant outputs); 3 model file
(``--model``, or ``--init-weights`` for train) corrupt or not made for this network; 130 and
143 stopped by Ctrl-C and SIGTERM (128 + the signal's number, as a shell reports it).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + 2, 128 + 15
#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_INTERVAL_S = 30

log = logging.getLogger("eneuronet")


def _setup_logging(verbose: int, quiet: int) -> None:
    level = max(logging.DEBUG, min(logging.ERROR, logging.INFO - 10 * (verbose - quiet)))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("bidsschematools", "bids", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _setup_environment(work_dir: Path, threads: int) -> None:
    """Point every cache at the work directory (HOME may be unwritable), cap threads, keep
    freed memory in the process (``malloc.keep_freed_memory``) and space out progress lines
    written to a file."""
    from .malloc import keep_freed_memory

    log.debug("malloc keeps freed memory: %s", keep_freed_memory())
    cache = work_dir / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    for var, sub in (("XDG_CACHE_HOME", ""), ("MPLCONFIGDIR", "matplotlib"),
                     ("TORCH_HOME", "torch"), ("DENO_DIR", "deno")):
        if not os.access(os.environ.get(var, str(Path.home())), os.W_OK):
            os.environ[var] = str(cache / sub)
    for var in ("OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if not sys.stderr.isatty():
        # A log file (a batch job's, a container's) would get a progress line for every
        # training step; tqdm reads this default when it is first imported, after this.
        os.environ.setdefault("TQDM_MININTERVAL", str(PROGRESS_INTERVAL_S))


def _validate_bids(bids_dir: Path) -> None:
    from .parser import UsageError

    # The validator is installed beside our interpreter; a venv's bin/ need not be on PATH.
    beside = Path(sys.executable).parent / "bids-validator-deno"
    validator = str(beside) if beside.is_file() else shutil.which("bids-validator-deno")
    try:
        if validator is None:
            raise FileNotFoundError("bids-validator-deno")
        # No time limit: it reads every file of the dataset, however many there are.
        log.info("validating %s with bids-validator-deno (--skip-bids-validation skips it)",
                 bids_dir)
        proc = subprocess.run([validator, "--ignoreWarnings", str(bids_dir)],
                              capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise UsageError("bids-validator-deno is not installed; use --skip-bids-validation "
                         "to go on without validation") from exc
    if proc.returncode != 0:
        errors = [ln.strip() for ln in proc.stdout.splitlines() if "[ERROR]" in ln]
        first = errors[0] if errors else "see bids-validator-deno output"
        log.debug(proc.stdout)
        raise UsageError(f"{bids_dir} is not valid BIDS ({first}); fix it or use "
                         "--skip-bids-validation")


def main(argv: list[str] | None = None) -> int:
    from .interrupt import Terminated, sigterm_raises

    with sigterm_raises():
        try:
            return _main(argv)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            log.error("stopped by %s; nothing unfinished passes for complete: the same command "
                      "continues (train: with --resume)", "SIGTERM" if terminated else "Ctrl-C")
            return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    from .parser import UsageError, parse_args, validate_paths

    args = parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        validate_paths(args)
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="eneuronet_work_") as tmp:
        work_dir = args.work_dir or Path(tmp)
        _setup_environment(work_dir, args.omp_nthreads)
        try:
            if args.analysis_level == "participant":
                return _participant(args, work_dir)
            if args.analysis_level == "train":
                return _train(args, work_dir)
            return _group(args)
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE


def _participant(args, work_dir: Path) -> int:
    from . import outputs
    from .discovery import DiscoveryError, discover, load_filter_file
    from .model_io import ModelError
    from .parser import UsageError
    from .pipeline import ParticipantConfig, run_participants, write_boilerplate
    from .templates import TemplateError

    foreign = outputs.foreign_dataset(args.output_dir)
    if foreign:
        raise UsageError(f"output_dir {args.output_dir} holds {foreign}; give eneuronet a "
                         "folder of its own (e.g. <bids_dir>/derivatives/eneuronet)")
    if not args.skip_bids_validation:
        _validate_bids(args.bids_dir)
    try:
        t1w_filter = load_filter_file(args.bids_filter_file) if args.bids_filter_file else None
        units = discover(args.bids_dir, participants=args.participant_label,
                         sessions=args.session_label, t1w_filter=t1w_filter)
    except DiscoveryError as exc:
        raise UsageError(str(exc)) from exc
    config = ParticipantConfig(
        bids_dir=args.bids_dir, output_dir=args.output_dir, work_dir=work_dir,
        model=args.model, device=args.device, skull_stripped=args.skull_stripped,
        force=args.force, seed=args.random_seed, omp_nthreads=args.omp_nthreads,
        nprocs=args.nprocs, mem_mb=args.mem_mb, save_probabilities=args.save_probabilities,
        test_time_flip=args.test_time_flip,
    )
    try:
        if args.boilerplate_only:
            log.info("methods boilerplate written: %s", write_boilerplate(config))
            return EXIT_OK
        log.info("%d T1w image(s) to process", len(units))
        results = run_participants(units, config)
    except ModelError as exc:
        log.error("%s", exc)
        return EXIT_MODEL
    except TemplateError as exc:
        raise UsageError(str(exc)) from exc
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    log.info("summary: %d done, %d skipped (already complete), %d failed",
             counts["done"], counts["skipped"], counts["failed"])
    for r in results:
        if r.status == "failed":
            log.error("failed: %s: %s", r.unit.path.name, r.message)
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _group(args) -> int:
    from .group import run_group

    paths = run_group(args.output_dir, args.participant_label)
    log.info("group outputs: %s, %s, %s", paths.volumes.name, paths.qc.name, paths.report.name)
    return EXIT_OK


def train_config(args, work_dir: Path):
    """The ``TrainConfig`` of a parsed ``train`` command line."""
    from .train import TrainConfig

    return TrainConfig(
        bids_dir=args.bids_dir, output_dir=args.output_dir, labels_dir=args.labels,
        labels_desc=args.labels_desc, work_dir=work_dir, participants=args.participant_label,
        val_participants=args.val_participants, steps=args.steps, patch_size=args.patch_size,
        batch_size=args.batch_size, lr=args.lr, dropout=args.dropout,
        validate_every=args.validate_every, checkpoint_every=args.checkpoint_every,
        seed=args.random_seed, nprocs=args.omp_nthreads,
        device=args.device, resume=args.resume, skull_stripped=args.skull_stripped,
        init_weights=args.init_weights, augment=args.augment, unlabelled_dir=args.unlabelled,
        unlabelled_exclude=tuple(args.unlabelled_exclude),
        pairs_per_subject=args.pairs_per_subject, registration_p=args.registration_p,
        match_target_intensity=args.match_target_intensity,
        flip_p=args.flip_p, tissue_contrast_p=args.tissue_contrast_p,
        low_resolution_p=args.low_resolution_p, gamma_log_range=args.gamma_log_range,
        n4=args.n4, keep_validated=args.keep_validated,
        stop_after=args.stop_after, data_workers=args.data_workers, cpu_bf16=args.cpu_bf16,
    )


def _train(args, work_dir: Path) -> int:
    from .model_io import ModelError
    from .templates import TemplateError
    from .train import run

    try:
        path = run(train_config(args, work_dir))
    except (ValueError, TemplateError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except ModelError as exc:
        log.error("%s", exc)
        return EXIT_MODEL
    log.info("written: %s", path)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
