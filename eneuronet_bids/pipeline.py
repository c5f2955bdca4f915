"""The participant level: each T1w image through preprocess -> infer -> resample back -> write.

Images are independent: one failure is reported and the others go on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from . import __version__, outputs, qc, report, templates
from .citation import MethodsSettings, methods_markdown
from .cleanup import keep_largest_pieces
from .discovery import WorkUnit
from .infer import (native_probabilities_buffer, predict_probabilities, runtime_for,
                    synchronize, to_native_labels)
from .interrupt import process_pool
from .labels import label_table
from .model import count_parameters
from .model_io import load_model, shipped_model
from .preprocess import Preprocessed, preprocess, seed_ants
from .resample import resample
from .resources import IMAGE_PEAK_MB, available_memory_mb, worker_count

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
    mem_mb: int | None = None  # None: what the process may use (resources.available_memory_mb)
    save_probabilities: bool = False
    test_time_flip: bool = True


@dataclass
class ImageResult:
    unit: WorkUnit
    status: str  # "done", "skipped" or "failed"
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def made_alike(paths: outputs.OutputPaths, model_sha256: str, test_time_flip: bool) -> bool:
    """Whether complete outputs were made as this run would make them: with the same model
    file (sha256) and test-time flip setting, and with the cortical clean-up, as their dseg
    sidecar records. A re-run with another ``--model`` (a retrained network) must not keep
    the old parcellations."""
    try:
        made = json.loads(paths.dseg_json.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(made, dict) and isinstance(made.get("Model"), dict)
            and made["Model"].get("SHA256") == model_sha256
            and made.get("TestTimeFlip") == test_time_flip
            and "CorticalIslandVoxelsRelabelled" in made)


class _Worker:
    """Holds the loaded model for the images one process handles."""

    def __init__(self, config: ParticipantConfig):
        self.config = config
        seed_ants(config.seed, config.omp_nthreads)
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.omp_nthreads)
        self.device, _ = runtime_for(config.device)
        self.model, self.model_info = load_model(config.model or shipped_model(), self.device)
        self.mirror = label_table().mirrored() if config.test_time_flip else None

    def process(self, unit: WorkUnit) -> ImageResult:
        cfg = self.config
        paths = outputs.output_paths(cfg.output_dir, unit)
        if not cfg.force and outputs.is_complete(paths, cfg.save_probabilities):
            if made_alike(paths, self.model_info["sha256"], cfg.test_time_flip):
                return ImageResult(unit, "skipped", "outputs complete (use --force to recompute)")
            log.warning("%s: its outputs were made with another model or test-time flip "
                        "setting, or before the cortical clean-up; recomputing them",
                        unit.path.name)
        skull_stripped = cfg.skull_stripped or bool(unit.metadata.get("SkullStripped", False))
        work = cfg.work_dir / unit.label
        t_start = time.perf_counter()
        prep = preprocess(unit.path, skull_stripped=skull_stripped, workdir=work,
                          n4=self.model.config.n4)
        timings = dict(prep.timings)

        to_native = prep.grid_to_native_voxels()
        grid_brain = resample(prep.brain_mask.astype(np.float32), to_native,
                              templates.GRID_SHAPE, mode="nearest").numpy() > 0.5
        t0 = time.perf_counter()
        # Classify the brain mask and the network's input, plus the two voxels trilinear
        # resampling to the native grid reads around them.
        region = ndimage.binary_dilation(grid_brain | (prep.image > 0), iterations=2)
        probs = predict_probabilities(self.model, prep.image, self.device, region=region,
                                      mirror=self.mirror)
        synchronize(self.device)
        timings["model_forward"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        summary = qc.summarise_probabilities(probs, grid_brain)
        timings["qc_summary"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        native_probs = (native_probabilities_buffer(prep.brain_mask.shape, probs.shape[0],
                                                    work / "probseg.npy")
                        if cfg.save_probabilities else None)
        classes = to_native_labels(probs, to_native, prep.brain_mask,
                                   probabilities_out=native_probs)
        del probs
        timings["resample_to_native"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        table = label_table()
        classes, relabelled = keep_largest_pieces(classes, table.classes_in("cortical"))
        labels = table.to_labels(classes)
        timings["cleanup"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        volumes = qc.volumes_by_name(labels, float(np.prod(prep.native.header.get_zooms()[:3])))
        z_scores = qc.volume_z_scores(volumes)
        verdict = qc.assess(summary, z_scores, prep.warnings)
        provenance = {
            "SkullStrippedInput": skull_stripped,
            "Software": {"Name": "eneuronet", "Version": __version__},
            "Model": {"Name": "E-NeuroNet", "Path": self.model_info["path"],
                      "SHA256": self.model_info["sha256"]},
            "Device": str(self.device),
            "Threads": self.config.omp_nthreads,
            "TestTimeFlip": cfg.test_time_flip,
            "CorticalIslandVoxelsRelabelled": relabelled,
            "Template": outputs.TEMPLATE,
            "Warnings": prep.warnings,
        }
        html = report.render_image_report(report.ImageReport(
            title=paths.report.name.removesuffix("_report.html"), source=str(unit.path),
            qc=verdict.to_dict(), volumes=volumes, z_scores=z_scores,
            provenance={**provenance, "StageTimings (s)": _rounded(timings)},
            figures=_figures(prep, to_native, classes, grid_brain)))
        timings["report"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start

        t0 = time.perf_counter()
        outputs.write_image_outputs(
            paths, unit=unit, bids_dir=cfg.bids_dir, native=prep.native, labels=labels,
            preproc=prep.bias_corrected, skull_stripped=skull_stripped,
            mask=prep.brain_mask.astype(np.uint8),
            xfm=prep.ants_transform, volumes=volumes, qc=verdict.to_dict(), report_html=html,
            provenance={**provenance, "StageTimings": _rounded(timings)},
            probabilities=native_probs,
        )
        del native_probs
        (work / "probseg.npy").unlink(missing_ok=True)
        timings["write"] = time.perf_counter() - t0
        for w in prep.warnings:
            log.warning("%s: %s", unit.path.name, w)
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        log.info("%s: done, QC %s (%s)", unit.path.name, verdict.verdict, stages)
        return ImageResult(unit, "done", timings=timings)


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}


def _figures(prep: Preprocessed, to_native: np.ndarray, classes: np.ndarray,
             grid_brain: np.ndarray) -> dict:
    """The report's mosaics, on the model grid: the N4-corrected head (not the network's
    masked input, so that the brain-mask outline can be judged) and the parcellation as
    written on the native grid (``classes``), brought back by nearest neighbour."""
    head = resample(prep.bias_corrected.astype(np.float32), to_native, templates.GRID_SHAPE)
    head = head.numpy()
    grid_labels = resample(classes.astype(np.float32), to_native, templates.GRID_SHAPE,
                           mode="nearest").numpy().astype(np.uint8)
    return {
        "Parcellation": report.mosaic(head, grid_brain, labels=grid_labels),
        "Brain mask (red outline)": report.mosaic(
            head, grid_brain, outlines=((grid_brain, report.MASK_COLOUR),)),
        f"Alignment check: {templates.TEMPLATE} brain outline (blue) over the aligned image":
            report.mosaic(head, grid_brain,
                          outlines=((templates.template_mask_on_grid(), report.TEMPLATE_COLOUR),)),
    }


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
        # InputError names the file itself (other callers need that); say it once here.
        message = message.removeprefix(f"{unit.path.name}: ")
        log.error("%s: failed: %s", unit.path.name, message)
        log.debug("traceback", exc_info=True)
        return ImageResult(unit, "failed", message)


def _write_run_files(config: ParticipantConfig, model: torch.nn.Module, info: dict) -> None:
    """The files the whole output directory shares: dataset description, label table and
    methods boilerplate (same content from every run with the same settings)."""
    outputs.write_dataset_description(config.output_dir, config.bids_dir)
    outputs.write_methods(config.output_dir, methods_markdown(MethodsSettings(
        model_path=Path(info["path"]), model_sha256=info["sha256"],
        parameters=count_parameters(model),
        n4_in_brain=model.config.n4 == "brain", test_time_flip=config.test_time_flip)))


def write_boilerplate(config: ParticipantConfig) -> Path:
    """The shared files alone (``--boilerplate-only``); returns the methods boilerplate's path.
    Raises ModelError."""
    model, info = load_model(config.model or shipped_model(), torch.device("cpu"))
    _write_run_files(config, model, info)
    return outputs.methods_path(config.output_dir)


def run_participants(units: list[WorkUnit], config: ParticipantConfig) -> list[ImageResult]:
    """Process every unit; the model is loaded once per worker process.

    Raises ModelError or TemplateError before any image is touched when the model cannot be
    loaded or a template is missing.
    """
    templates.check_available()
    mem_mb = config.mem_mb if config.mem_mb is not None else available_memory_mb()
    workers = worker_count(len(units), config.nprocs, config.omp_nthreads, mem_mb)
    if workers < worker_count(len(units), config.nprocs, config.omp_nthreads, None):
        log.warning("%d image(s) at a time, not more: %.1f GB of memory (%s) allows one "
                    "per %.1f GB", workers, mem_mb / 1024,
                    "--mem-mb" if config.mem_mb is not None else "free for this process",
                    IMAGE_PEAK_MB / 1024)
    if workers == 1:
        _init_worker(config)
        _write_run_files(config, _WORKER.model, _WORKER.model_info)
        return [_run_one(u) for u in tqdm(units, desc="T1w images", unit="image",
                                          disable=len(units) < 2)]
    write_boilerplate(config)  # loads the model here once: a bad one fails before the workers
    with process_pool(workers, _init_worker, (config,)) as pool_map:
        return list(tqdm(pool_map(_run_one, units), total=len(units), desc="T1w images",
                         unit="image"))

