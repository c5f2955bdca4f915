"""The participant level: each T1w image through preprocess -> infer -> resample back -> write.

Images are independent: one failure is reported and the others go on.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, outputs, templates
from .discovery import WorkUnit
from .infer import predict_probabilities, runtime_for, to_native_labels
from .labels import label_table
from .model_io import load_model, shipped_model
from .preprocess import preprocess, seed_ants

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParticipantConfig:
    bids_dir: Path
    output_dir: Path
    work_dir: Path
    model: Path | None = None
    device: str = "auto"
    skull_stripped: bool = False
    force: bool = False
    seed: int = 0
    omp_nthreads: int = 1
    nprocs: int = 1


@dataclass
class ImageResult:
    unit: WorkUnit
    status: str  # "done", "skipped" or "failed"
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)


class _Worker:
    """Holds the loaded model for the images one process handles."""

    def __init__(self, config: ParticipantConfig):
        self.config = config
        seed_ants(config.seed, config.omp_nthreads)
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.omp_nthreads)
        self.device, _ = runtime_for(config.device)
        self.model, self.model_info = load_model(config.model or shipped_model(), self.device)

    def process(self, unit: WorkUnit) -> ImageResult:
        cfg = self.config
        paths = outputs.output_paths(cfg.output_dir, unit)
        if not cfg.force and outputs.is_complete(paths):
            return ImageResult(unit, "skipped", "outputs complete (use --force to recompute)")
        skull_stripped = cfg.skull_stripped or bool(unit.metadata.get("SkullStripped", False))
        work = cfg.work_dir / unit.label
        t_start = time.perf_counter()
        prep = preprocess(unit.path, skull_stripped=skull_stripped, workdir=work)
        timings = dict(prep.timings)

        t0 = time.perf_counter()
        probs = predict_probabilities(self.model, prep.image, self.device)
        timings["model_forward"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        classes = to_native_labels(probs, prep.grid_to_native_voxels(), prep.brain_mask)
        del probs
        labels = label_table().to_labels(classes)
        timings["resample_to_native"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        timings["total"] = time.perf_counter() - t_start
        provenance = {
            "SkullStrippedInput": skull_stripped,
            "Software": {"Name": "eneuronet", "Version": __version__},
            "Model": {"Name": "E-NeuroNet", "Path": self.model_info["path"],
                      "SHA256": self.model_info["sha256"]},
            "Device": str(self.device),
            "Threads": self.config.omp_nthreads,
            "Template": outputs.TEMPLATE,
            "StageTimings": {k: round(v, 3) for k, v in timings.items()},
            "Warnings": prep.warnings,
        }
        outputs.write_image_outputs(
            paths, unit=unit, bids_dir=cfg.bids_dir, native=prep.native, labels=labels,
            preproc=prep.bias_corrected, mask=prep.brain_mask.astype(np.uint8),
            xfm=prep.ants_transform, provenance=provenance,
        )
        timings["write"] = time.perf_counter() - t0
        for w in prep.warnings:
            log.warning("%s: %s", unit.path.name, w)
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        log.info("%s: done (%s)", unit.path.name, stages)
        return ImageResult(unit, "done", timings=timings)


_WORKER: _Worker | None = None


def _init_worker(config: ParticipantConfig) -> None:
    global _WORKER
    _WORKER = _Worker(config)


def _run_one(unit: WorkUnit) -> ImageResult:
    assert _WORKER is not None
    try:
        return _WORKER.process(unit)
    except Exception as exc:  # noqa: BLE001
        # One image's failure must not stop the others (InputError for bad input, but also
        # whatever ANTs or torch raise); its reason is one line for the user.
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.error("%s: failed: %s", unit.path.name, message)
        log.debug("traceback", exc_info=True)
        return ImageResult(unit, "failed", message)


def run_participants(units: list[WorkUnit], config: ParticipantConfig) -> list[ImageResult]:
    """Process every unit; the model is loaded once per worker process.

    Raises ModelError or TemplateError before any image is touched when the model cannot be
    loaded or a template is missing.
    """
    templates.check_available()
    outputs.write_dataset_description(config.output_dir, config.bids_dir)
    workers = max(1, min(len(units), config.nprocs // max(1, config.omp_nthreads)))
    if workers == 1:
        _init_worker(config)
        return [_run_one(u) for u in tqdm(units, desc="T1w images", unit="image",
                                          disable=len(units) < 2)]
    load_model(config.model or shipped_model(), torch.device("cpu"))  # fail fast, once
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(config,)) as pool:
        return list(tqdm(pool.map(_run_one, units), total=len(units), desc="T1w images",
                         unit="image"))

