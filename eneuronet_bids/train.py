"""Supervised training of E-NeuroNet (the ``train`` analysis level).

A labelled BIDS dataset plus a derivatives dataset of label maps go through the same
preprocessing as at inference; the network is trained on random patches with a Dice loss and
validated on whole volumes of participants kept out of training.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from . import __version__, templates
from . import distributed
from .array_cache import cached
from .atomic import write_atomic
from .augment import (Compose, RandomBiasField, RandomContrast, RandomElastic,
                      RandomFlipLeftRight, RandomGamma, RandomLowResolution, RandomNoise,
                      RandomTissueContrast)
from .discovery import WorkUnit, discover
from .infer import predict_probabilities, runtime_for
from .labels import label_table, training_labels
from .metrics import dice_per_class, summarise_dice
from .model import ENeuroNet, ModelConfig, model_input
from .model_io import ModelError, export_model, sha256
from .outputs import entities_from_name
from .preprocess import N4_ITERATIONS, preprocess, seed_ants
from .warp_augment import (RegistrationSettings, WarpJob, content_key, match_intensities,
                           plan_pairs, warp_all)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    bids_dir: Path
    output_dir: Path
    labels_dir: Path
    labels_desc: str = "DKT31aseg"
    work_dir: Path = Path("work")
    participants: list[str] | None = None
    val_participants: list[str] = field(default_factory=lambda: ["13", "14", "15", "16"])
    steps: int = 4000
    patch_size: int = 96
    batch_size: int = 1
    lr: float = 5e-4
    weight_decay: float = 1e-5
    dropout: float = 0.1
    ce_weight: float = 1.0
    checkpoint_every: int = 100
    validate_every: int = 500
    seed: int = 0
    nprocs: int = 2
    device: str = "auto"
    resume: bool = False
    #: Warm start from these weights (a model file or a checkpoint) when not resuming; input
    #: channels the old weights lack start at zero.
    init_weights: Path | None = None
    #: Treat every T1w as skull-stripped; otherwise the sidecar's "SkullStripped" decides.
    skull_stripped: bool = False
    #: "none", "elastic", or "registration" (registration-based plus elastic; needs
    #: ``unlabelled_dir``). Intensity augmentation is always on.
    augment: str = "elastic"
    #: An unlabelled BIDS dataset whose brains lend their shapes (e.g. IXI).
    unlabelled_dir: Path | None = None
    #: Unlabelled participants never used as registration targets, e.g. scans kept apart to
    #: measure generalisation to their site.
    unlabelled_exclude: tuple[str, ...] = ()
    #: Unlabelled subjects each labelled subject is registered to.
    pairs_per_subject: int = 1
    #: Probability that a training patch comes from a warped (registered) example.
    registration_p: float = 1 / 3
    #: Give each warped example the intensity distribution of the brain it was warped onto
    #: (``warp_augment.match_intensities``): the unlabelled site's contrast as well as its shapes.
    match_target_intensity: bool = False
    #: Probability that a training patch is mirrored left-right, left and right labels swapped.
    flip_p: float = 0.5
    #: Probability that each tissue of a patch has its intensity shifted by its own amount
    #: (``augment.RandomTissueContrast``).
    tissue_contrast_p: float = 0.0
    #: Probability that a patch looks acquired at a coarser resolution
    #: (``augment.RandomLowResolution``).
    low_resolution_p: float = 0.0
    #: Gamma of the intensity augmentation drawn log-uniformly from exp(-r) to exp(r): 0.4
    #: reaches 0.67, 0.6 reaches 0.55. IXI's cortex is Mindboggle's under a gamma of about 0.62,
    #: its deep grey structures under 0.39-0.51 (docs/tissue_intensity_n4-brain.tsv), which
    #: ``tissue_contrast_p`` covers.
    gamma_log_range: float = 0.4
    #: N4 setting of the preprocessing (``preprocess.N4_ITERATIONS``), stored with the model.
    n4: str = "quick"
    #: Also export the weights of every validation, to ``output_dir/validated/step-N/``, so
    #: that steps can be scored afterwards on data the validation does not see.
    keep_validated: bool = False
    #: Stop after this many steps of this invocation, with a checkpoint, for job time limits;
    #: ``resume`` continues exactly where it stopped.
    stop_after: int | None = None
    #: Processes that make the training batches (augmentation runs on the CPU); None: none on
    #: the CPU, up to 8 with a GPU.
    data_workers: int | None = None
    #: Train under bf16 autocast on a CPU with native bf16 (AVX512-BF16 or AMX): 1.8 times as
    #: fast as fp32 on session 35's Xeon (docs/performance.md). Off by default: on an
    #: AVX512-BF16 EPYC the bf16 backward returned non-finite gradients at random (session 10).
    cpu_bf16: bool = False

    def __post_init__(self):
        if self.augment not in ("none", "elastic", "registration"):
            raise ValueError(f"unknown augmentation {self.augment!r}")
        if self.n4 not in N4_ITERATIONS:
            raise ValueError(f"unknown N4 setting {self.n4!r}")
        if self.augment == "registration" and self.unlabelled_dir is None:
            raise ValueError("--augment registration needs --unlabelled DIR")

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class Example:
    participant: str
    image: np.ndarray  # float32, model grid
    classes: np.ndarray  # uint8 class indices, model grid


@dataclass
class TrainingData:
    """The arrays a run trains and validates on, prepared from the datasets
    (``prepare_data``) or brought along from elsewhere."""

    examples: list[Example]
    #: Empty on ranks other than 0: rank 0 alone validates.
    val_examples: list[Example]
    #: Registration-augmented examples (``--augment registration``).
    warped: list[Example]
    train_participants: list[str]
    val_participants: list[str]


def find_labelled(config: TrainConfig) -> list[tuple[str, WorkUnit, Path]]:
    """(participant, T1w, label map) for every labelled T1w of the dataset. A label map
    belongs to the T1w whose entities (sub, ses, acq, run, ...) its name carries, no more and
    no fewer, so that one run's map is never paired with another run's image."""
    pairs = []
    for unit in discover(config.bids_dir, participants=config.participants, validate=False):
        ent = unit.entities
        folder = config.labels_dir / f"sub-{ent['subject']}"
        if "session" in ent:
            folder = folder / f"ses-{ent['session']}"
        own = {k: str(v) for k, v in ent.items()}
        hits = [h for h in sorted((folder / "anat").glob(
                    f"sub-{ent['subject']}_*desc-{config.labels_desc}_dseg.nii*"))
                if entities_from_name(h.name) == own]
        if not hits:
            log.warning("no %s label map for %s; skipped", config.labels_desc, unit.path.name)
            continue
        pairs.append((ent["subject"], unit, hits[0]))
    if not pairs:
        raise ValueError(f"no T1w in {config.bids_dir} has a desc-{config.labels_desc} label map "
                         f"in {config.labels_dir}")
    return pairs


def _digest(*paths: Path, n4: str) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    h.update(__version__.encode())
    if n4 != "quick":  # so that caches made before the setting existed stay valid
        h.update(n4.encode())
    return h.hexdigest()[:16]


def _preprocess(t1w: WorkUnit, config: TrainConfig, name: str):
    skull_stripped = config.skull_stripped or bool(t1w.metadata.get("SkullStripped", False))
    return preprocess(t1w.path, skull_stripped=skull_stripped,
                      workdir=config.work_dir / "train_prep" / name, n4=config.n4)


def prepare_example(participant: str, t1w: WorkUnit, labels: Path,
                    config: TrainConfig) -> Example:
    """Preprocess one labelled image onto the model grid, cached in the work directory."""

    def make() -> dict[str, np.ndarray]:
        prep = _preprocess(t1w, config, f"sub-{participant}")
        lab = np.asarray(nib.load(str(labels)).dataobj).astype(np.int32)
        if lab.shape != prep.native.shape:
            raise ValueError(f"{labels.name}: shape {lab.shape} differs from its T1w "
                             f"{prep.native.shape}")
        lab = training_labels(lab, prep.brain_mask)
        classes = label_table().to_classes(lab).astype(np.uint8)
        return {"image": prep.image.astype(np.float16),
                "classes": prep.labels_to_grid(classes).astype(np.uint8)}

    key = _digest(t1w.path, labels, n4=config.n4)
    cache = config.work_dir / "train_cache" / f"sub-{participant}_{key}.npz"
    z = cached(cache, make)
    return Example(participant, z["image"].astype(np.float32), z["classes"])


def prepare_unlabelled(t1w: WorkUnit, config: TrainConfig) -> np.ndarray:
    """An unlabelled image on the model grid (brain-extracted, normalised), cached."""
    sub = t1w.entities["subject"]
    key = _digest(t1w.path, n4=config.n4)
    cache = config.work_dir / "unlabelled_cache" / f"sub-{sub}_{key}.npz"
    z = cached(cache, lambda: {"image": _preprocess(t1w, config, f"unlabelled-{sub}")
                                .image.astype(np.float16)})
    return z["image"].astype(np.float32)


def registration_targets(subjects: Iterable[str], exclude: Iterable[str]) -> list[str]:
    """The unlabelled subjects that may be registration targets, sorted; an excluded label
    that is not among them is an error, since a typo would quietly let a test scan in."""
    subjects, exclude = set(subjects), {e.removeprefix("sub-") for e in exclude}
    unknown = sorted(exclude - subjects)
    if unknown:
        raise ValueError(f"--unlabelled-exclude: no such unlabelled participant: "
                         f"{', '.join(unknown)}")
    targets = sorted(subjects - exclude)
    if not targets:
        raise ValueError("--unlabelled-exclude leaves no unlabelled participant")
    return targets


def unlabelled_targets(config: TrainConfig) -> dict[str, WorkUnit]:
    """The T1w of each unlabelled participant that may be a registration target."""
    units = {u.entities["subject"]: u for u in discover(config.unlabelled_dir, validate=False)}
    return {s: units[s] for s in registration_targets(units, config.unlabelled_exclude)}


def warped_examples(examples: list[Example], targets: dict[str, WorkUnit], config: TrainConfig,
                    rng: np.random.Generator) -> list[Example]:
    """Each labelled example registered to ``pairs_per_subject`` random ``targets``."""
    pairs = plan_pairs([e.participant for e in examples], sorted(targets),
                       config.pairs_per_subject, rng)
    needed = sorted({f for _, f in pairs})
    fixed = {f: prepare_unlabelled(targets[f], config)
             for f in tqdm(needed, desc="preprocess unlabelled")}
    by_id = {e.participant: e for e in examples}
    settings = RegistrationSettings()
    jobs = []
    for m, f in pairs:
        ex = by_id[m]
        key = content_key(ex.image, ex.classes, fixed[f], settings=settings)
        jobs.append(WarpJob(m, f, ex.image, ex.classes, fixed[f],
                            config.work_dir / "registration_cache" / f"{m}_to_{f}_{key}.npz",
                            settings))
    warped = warp_all(jobs, config.nprocs, config.seed)
    return [Example(f"{j.moving_id}->{j.fixed_id}",
                    (match_intensities(image, fixed[j.fixed_id])
                     if config.match_target_intensity else image), classes)
            for j, (image, classes) in zip(jobs, warped)]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ce_weight: float,
                      eps: float = 1e-5) -> torch.Tensor:
    """Soft Dice loss over the classes present in the batch (the seed's loss), plus
    ``ce_weight`` times cross-entropy.

    Dice terms come from gathers and index-adds rather than a one-hot tensor, which would be
    a hundred times the size of the patch. The softmax runs over the last axis of a
    classes-last view: for channels_last_3d logits (training) that view needs no copy, where a
    softmax over axis 1 first copied the whole logit tensor, and its gradient back (step times
    before and after: docs/training.md, "The network underfits; a faster CPU step").
    """
    n_classes = logits.shape[1]
    logp = logits.float().movedim(1, -1).log_softmax(-1).reshape(-1, n_classes)
    flat_t = target.reshape(-1)
    logp_t = logp.gather(1, flat_t[:, None]).squeeze(1)
    inter = torch.zeros(n_classes, device=logits.device).index_add(0, flat_t, logp_t.exp())
    truth = torch.bincount(flat_t, minlength=n_classes).float()
    denom = logp.exp().sum(0) + truth
    present = truth > 0
    dice = (2 * inter[present] + eps) / (denom[present] + eps)
    loss = 1 - dice.mean()
    if ce_weight:
        loss = loss - ce_weight * logp_t.mean()
    return loss


class PatchSampler:
    """Random patches, centred on a labelled voxel nine times in ten; with probability
    ``warped_p`` from a warped (registration-augmented) example instead of an original."""

    def __init__(self, examples: list[Example], size: int, warped: list[Example] | None = None,
                 warped_p: float = 0.0):
        self.pools = [examples, warped or []]
        self.size, self.warped_p = size, warped_p if warped else 0.0
        self.foreground = [[np.argwhere(e.classes > 0) for e in pool] for pool in self.pools]

    def sample(self, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        pool = int(rng.random() < self.warped_p)
        i = int(rng.integers(len(self.pools[pool])))
        ex = self.pools[pool][i]
        shape = np.array(ex.classes.shape)
        if rng.random() < 0.9:
            fg = self.foreground[pool][i]
            centre = fg[int(rng.integers(len(fg)))]
        else:
            centre = rng.integers(0, shape)
        start = np.clip(centre - self.size // 2, 0, shape - self.size)
        sl = tuple(slice(s, s + self.size) for s in start)
        return ex.image[sl], ex.classes[sl], tuple(int(s) for s in start)


class Batch(NamedTuple):
    """One training step's patches as the loader passes them between processes: the network
    input (``model_input``: the image plus three coordinate channels) and the int64 class
    indices the loss takes are made on the device (``batch_to_device``), which makes a batch
    of four 96³ patches 17.7 MB instead of 85 MB to receive, pin and copy."""

    images: torch.Tensor  # (N, X, Y, Z) float32
    classes: torch.Tensor  # (N, X, Y, Z) uint8
    starts: torch.Tensor  # (N, 3) each patch's first voxel on the model grid


@dataclass
class TrainingBatches(torch.utils.data.Dataset):
    """Item ``step`` is the batch of that training step: patches sampled, mirrored, deformed
    and intensity-augmented with a generator seeded by ``(seed, rank, step)`` alone.

    So any step's batch can be made in any process and in any order: a ``DataLoader`` with
    worker processes (needed to keep a GPU busy, since augmentation runs on the CPU) gives
    the same batches as making them in the training process, and a resumed run the same as
    an uninterrupted one, with no random state to carry in the checkpoint.
    """

    sampler: PatchSampler
    flip: RandomFlipLeftRight
    elastic: RandomElastic
    tissue_contrast: RandomTissueContrast
    intensity: Compose
    batch_size: int
    seed: int
    rank: int = 0

    def __getitem__(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, self.rank, step])
        images, classes, starts = [], [], []
        for _ in range(self.batch_size):
            image, labels, start = self.flip(*self.sampler.sample(rng), rng)
            image, labels = self.elastic(image, labels, rng)
            images.append(self.intensity(self.tissue_contrast(image, labels, rng), rng))
            classes.append(labels)
            starts.append(start)
        return Batch(torch.from_numpy(np.stack(images).astype(np.float32, copy=False)),
                     torch.from_numpy(np.stack(classes).astype(np.uint8, copy=False)),
                     torch.tensor(starts, dtype=torch.int64))


def training_batches(config: TrainConfig, data: TrainingData, rank: int = 0) -> TrainingBatches:
    """The batches of a run with ``config``'s augmentation recipe."""
    table = label_table()
    return TrainingBatches(
        PatchSampler(data.examples, config.patch_size, data.warped, config.registration_p),
        RandomFlipLeftRight(table.mirrored(), templates.GRID_SHAPE[0], p=config.flip_p),
        RandomElastic(p=0.5 if config.augment != "none" else 0.0),
        RandomTissueContrast(table.tissue_of_class(), p=config.tissue_contrast_p),
        Compose([RandomLowResolution(p=config.low_resolution_p),
                 RandomGamma(log_range=config.gamma_log_range),
                 RandomContrast(), RandomBiasField(), RandomNoise()]),
        config.batch_size, config.seed, rank)


def _one_thread(_worker: int) -> None:
    # Workers run side by side; each one's numpy and torch stay on one core.
    torch.set_num_threads(1)


def batch_loader(batches: TrainingBatches, first: int, stop: int, workers: int,
                 pin_memory: bool) -> torch.utils.data.DataLoader:
    """The batches of steps ``first`` to ``stop - 1``, in order, made by ``workers`` processes
    (0: in this one)."""
    return torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(first, stop), num_workers=workers,
        pin_memory=pin_memory, worker_init_fn=_one_thread if workers else None,
        prefetch_factor=4 if workers else None,
        # A loader draws a seed for its workers when it starts; from the global generator
        # that draw would shift dropout's random stream after a resume.
        generator=torch.Generator().manual_seed(0))


def batch_to_device(batch: Batch, device: torch.device, config: ModelConfig
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's batch as the network (``config``'s input) and the loss take it, made on
    ``device``."""
    images = batch.images.to(device, non_blocking=True)
    return (model_input(images, config, templates.GRID_SHAPE, batch.starts.tolist()),
            batch.classes.to(device, non_blocking=True).long())


def _lr_at(step: int, config: TrainConfig) -> float:
    warmup = min(200, config.steps // 10)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _save_atomic(obj, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def validate(model: ENeuroNet, examples: list[Example], device: torch.device) -> dict:
    table = label_table()
    per_subject = []
    for ex in examples:
        pred = predict_probabilities(model, ex.image, device).argmax(0).cpu().numpy()
        per_subject.append(dice_per_class(pred, ex.classes, len(table)))
    return summarise_dice(np.nanmean(np.array(per_subject), axis=0))


def run(config: TrainConfig, data: TrainingData | None = None) -> Path:
    """Train (or resume) and export the model; returns the exported model's path, or the
    checkpoint's when ``stop_after`` ended this invocation early. ``data``: arrays prepared
    beforehand, instead of preparing them from the datasets that ``config`` names (for a
    machine that has neither the datasets nor ITK, such as a GPU node)."""
    device, native_bf16 = runtime_for(config.device)
    use_bf16 = _trains_in_bf16(config, device, native_bf16)
    group = distributed.join(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    # Each rank draws its own patches; DDP gives every rank rank 0's initial weights.
    torch.manual_seed(config.seed + group.rank)
    if data is None:
        seed_ants(config.seed, config.nprocs)
    torch.set_num_threads(config.nprocs)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _train(config, group, device, use_bf16, data)
    finally:
        group.close()


def _trains_in_bf16(config: TrainConfig, device: torch.device, native_bf16: bool) -> bool:
    """bf16 autocast on CUDA always; on a CPU only when asked (``cpu_bf16``) and native. On an
    AVX512-BF16 EPYC, oneDNN's bf16 backward of the grouped convolutions returned huge or
    non-finite gradients at random within a few steps (session 10), so CPUs train in fp32
    unless told otherwise; inference there uses bf16 regardless (infer.py)."""
    if device.type == "cuda":
        return True
    if config.cpu_bf16 and not native_bf16:
        log.warning("--cpu-bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 "
                    "is far slower than fp32; training in fp32")
    return config.cpu_bf16 and native_bf16


def _update(model: torch.nn.Module, optimiser: torch.optim.Optimizer) -> bool:
    """Clip the gradients to norm 1 and take the optimiser step, unless their norm is not
    finite (one bad bf16 backward would otherwise turn every weight into NaN): then the step
    is skipped. Returns whether the weights were updated."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if not torch.isfinite(norm):
        optimiser.zero_grad(set_to_none=True)
        return False
    optimiser.step()
    return True


def prepare_data(config: TrainConfig, group: distributed.Group) -> TrainingData:
    """Every labelled image (and, for registration augmentation, its warped copies) on the
    model grid, through the work directory's caches."""
    pairs = find_labelled(config)
    val_ids = {p.removeprefix("sub-") for p in config.val_participants}
    train_pairs = [p for p in pairs if p[0] not in val_ids]
    val_pairs = [p for p in pairs if p[0] in val_ids]
    if not train_pairs:
        raise ValueError("every labelled participant is held out for validation")
    log.info("%d training and %d validation participants", len(train_pairs), len(val_pairs))
    # before the slow preprocessing: a missing template or a wrong --unlabelled-exclude
    # fails at once
    templates.check_available()
    targets = unlabelled_targets(config) if config.augment == "registration" else {}
    if not group.main:  # rank 0 fills the caches; the others then read them
        group.barrier()
    examples = [prepare_example(*p, config) for p in tqdm(train_pairs, desc="preprocess train")]
    val_examples = ([prepare_example(*p, config) for p in tqdm(val_pairs, desc="preprocess val")]
                    if group.main else [])
    # The pairs depend on the seed alone.
    warped = (warped_examples(examples, targets, config, np.random.default_rng([config.seed, 1]))
              if targets else [])
    if group.main:
        group.barrier()
    return TrainingData(examples, val_examples, warped, [p[0] for p in train_pairs],
                        [p[0] for p in val_pairs])


def _data_workers(config: TrainConfig, device: torch.device) -> int:
    if config.data_workers is not None:
        return config.data_workers
    # On the CPU the network needs every core; a GPU waits for the CPU's augmentation unless
    # several processes make the batches.
    return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


def _train(config: TrainConfig, group: distributed.Group, device: torch.device, use_bf16: bool,
           data: TrainingData | None) -> Path:
    table = label_table()
    model = ENeuroNet(ModelConfig(n_classes=len(table), dropout=config.dropout, n4=config.n4)
                      ).to(device)
    model = model.to(memory_format=torch.channels_last_3d)
    ckpt_path = config.output_dir / "checkpoint.pt"
    resuming = config.resume and ckpt_path.exists()
    # The runs behind the initial weights, oldest first; this run is appended when it exports.
    inherited: list[str] = []
    origin = "random initialisation"
    if config.init_weights is not None and not resuming:
        # before the slow preprocessing: fail at once
        inherited, digest = _warm_start(model, config.init_weights)
        origin = f"warm start from sha256 {digest[:12]}"
    if data is None:
        data = prepare_data(config, group)
    val_examples = data.val_examples

    def export(directory: Path, state: dict, steps: int, kept: int, scores: dict | None) -> Path:
        return export_model(
            directory, model.config, state,
            training={"config": config.to_json(), "steps": steps, "best_step": kept,
                      "lineage": [*inherited, _describe_run(config, origin, steps, kept)],
                      "train_participants": data.train_participants,
                      "val_participants": data.val_participants,
                      "labels_dir": str(config.labels_dir), "labels_desc": config.labels_desc},
            validation=scores)

    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_path = config.output_dir / "best.pt"
    log_csv = config.output_dir / "training_log.csv"
    step, best = 0, -1.0
    history: list[dict] = []
    if resuming:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step, best, history = state["step"], state["best"], state["history"]
        # checkpoints written before session 11 carry no lineage
        inherited = state.get("inherited", [])
        origin = state.get("origin", "resumed from a checkpoint that did not record its start")
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed at step %d", step)
        if group.main:
            _truncate_log(log_csv, step)
    elif group.main:  # a fresh start: what an interrupted earlier run left here is not ours
        log_csv.unlink(missing_ok=True)
        best_path.unlink(missing_ok=True)
    net = distributed.wrap(model, group, device)
    batches = training_batches(config, data, group.rank)

    def checkpoint() -> None:
        _save_atomic({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                      "step": step, "best": best, "history": history,
                      "torch_rng": torch.get_rng_state(),
                      "config": config.to_json(), "model_config": model.config.to_dict(),
                      "inherited": inherited, "origin": origin}, ckpt_path)

    bar = tqdm(total=config.steps, initial=step, desc="train", dynamic_ncols=True,
               disable=not group.main)
    running = None
    stop = config.steps if config.stop_after is None else min(config.steps,
                                                              step + config.stop_after)
    loader = batch_loader(batches, step, stop, _data_workers(config, device),
                          pin_memory=device.type == "cuda")
    for batch in loader:
        model.train()
        for param_group in optimiser.param_groups:
            param_group["lr"] = _lr_at(step, config)
        x, y = batch_to_device(batch, device, model.config)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = net(x)
        loss = segmentation_loss(logits, y, config.ce_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if not _update(model, optimiser):
            log.warning("step %d: non-finite gradients, update skipped", step + 1)
        step += 1
        value = loss.item()  # the step's second device sync (the first: _update)
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", best_dice=f"{best:.3f}")
        record = {"step": step, "loss": round(value, 5), "lr": _lr_at(step - 1, config)}
        if val_examples and (step % config.validate_every == 0 or step == config.steps):
            model.eval()
            scores = validate(model, val_examples, device)
            record.update({f"val_{k}": round(v, 4) for k, v in scores["groups"].items()})
            history.append({"step": step, **scores["groups"]})
            log.info("step %d validation Dice %s", step, scores["groups"])
            if scores["groups"]["all"] > best:
                best = scores["groups"]["all"]
                _save_atomic({"model": model.state_dict(), "step": step, "scores": scores,
                              "lineage": [*inherited, _describe_run(config, origin, step, step)]},
                             best_path)
            if config.keep_validated:
                export(config.output_dir / "validated" / f"step-{step:06d}", model.state_dict(),
                       step, step, scores)
        if group.main:
            _append_csv(log_csv, record)
            if step % config.checkpoint_every == 0 or step == stop:
                checkpoint()
    bar.close()
    group.barrier()  # the last checkpoint is on disk before any rank returns
    if step < config.steps:
        log.info("stopped at step %d of %d; continue with --resume", step, config.steps)
        return ckpt_path
    if not group.main:
        return ckpt_path

    final = torch.load(best_path, weights_only=False) if best_path.exists() else None
    state = final["model"] if final else model.state_dict()
    scores = final["scores"] if final else None
    best_step = final["step"] if final else step
    return export(config.output_dir / "model", state, step, best_step, scores)


def _describe_run(config: TrainConfig, origin: str, steps: int, best_step: int) -> str:
    """One line of a model's lineage: what this run did, enough to repeat it."""
    return (f"{steps} steps, weights from step {best_step}; {origin}; lr {config.lr:g}, "
            f"patch {config.patch_size}, batch {config.batch_size}, augment {config.augment}, "
            f"flip_p {config.flip_p:g}, tissue_contrast_p {config.tissue_contrast_p:g}, "
            f"low_resolution_p {config.low_resolution_p:g}, gamma_log_range "
            f"{config.gamma_log_range:g}, n4 {config.n4}, seed {config.seed}")


def _lineage_of(path: Path, blob: dict, digest: str) -> list[str]:
    """The runs behind a model file or best checkpoint (``digest``: its sha256). Files
    exported before the lineage was stored in them have it, as one line, in the
    ``warm_start`` of the card beside them."""
    if "lineage" in blob:
        return list(blob["lineage"])
    card_path = path.with_name("model_card.json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    warm_start = card.get("training", {}).get("warm_start")
    if warm_start and card.get("sha256") == digest:
        return [warm_start]
    return [f"{path.name} (sha256 {digest[:12]}): its lineage was not recorded"]


def _warm_start(model: ENeuroNet, path: Path) -> tuple[list[str], str]:
    """Copy the weights of a model file or checkpoint into ``model``; returns their lineage
    and the file's sha256. Raises ModelError (one line) for a file that is damaged, not ours,
    or made for another network or label table. Weights of a network with fewer input
    channels fill the first ones; the new channels start at zero."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        old = blob.get("state_dict") or blob["model"]
        shapes = {name: tuple(value.shape) for name, value in old.items()}
    except Exception as exc:  # torch and pickle raise many types for a damaged file
        raise ModelError(f"--init-weights {path} is corrupt or not an E-NeuroNet model or "
                         f"checkpoint ({type(exc).__name__})") from exc
    labels = label_table().indices.tolist()
    if blob.get("labels", labels) != labels:
        raise ModelError(f"--init-weights {path} was trained for another label table")
    for name, target in model.state_dict().items():
        shape = shapes.get(name)
        if shape == tuple(target.shape):
            target.copy_(old[name])
        elif (shape is not None and len(shape) == target.dim() > 1 and shape[0] == target.shape[0]
              and shape[2:] == target.shape[2:] and shape[1] < target.shape[1]):
            target.zero_()
            target[:, : shape[1]].copy_(old[name])
        else:
            raise ModelError(f"--init-weights {path} does not fit this network ({name}: "
                             f"{shape or 'missing'} against {tuple(target.shape)})")
    log.info("warm start from %s", path)
    digest = sha256(path)
    return _lineage_of(path, blob, digest), digest


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    path.unlink()
    for row in rows:
        if int(row["step"]) <= step:
            _append_csv(path, row)


def _append_csv(path: Path, record: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        # Validation columns appear only on some rows; a fixed header keeps the file rectangular.
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "val_cortical",
                                               "val_non-cortical", "val_white-matter", "val_all"],
                                extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(record)
