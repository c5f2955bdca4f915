"""Time the network where it runs (CPU or GPU) on model-grid images, and check its accuracy there.

    python scripts/benchmark_model.py BUNDLE.npz --device cuda --out docs/performance_gpu.json

BUNDLE is a ``scripts/train_bundle.py export`` file; its validation subjects are the images.
For each image, with the test-time flip (the default) and without, ``predict_probabilities``
(the participant level's ``model_forward`` stage; its probabilities stay on the device) is
timed once cold and then ``--repeats`` times, beside one pass of the network alone
(``network_pass_median_s``: the rest of the stage is the classifier and the softmax), and the
argmax is scored against the labels on the model grid (so the same numbers from ``--device
cpu`` show whether the device changes the parcellation). With the flip, the way back to a
native grid (the ``resample_to_native`` stage, ``to_native_labels``, onto a stand-in T1w grid:
0.9 mm voxels turned 10 degrees) is timed on the device too, and its labels are compared with
the same resampling on the CPU (``native_agreement``: the fraction of equal voxels). On a GPU
the same again with cuDNN's autotuner on (``inference_cudnn_benchmark``). Then
a training step (forward, Dice + cross-entropy, backward, Adam) on random 96³ patches
(``--patch``) is timed per batch size, memory layout and precision (``--train-precision``;
by default the ``train`` level's: bf16 autocast on a GPU, fp32 on a CPU), counting the steps
whose gradient norm was not finite, and the making of one augmented
patch of the bundle's recipe on one core; last, the training loop's loader (``loader``: such
batches made by worker processes, as many as ``gpu_session.sh`` trains with, and moved to the
device), whose wall time per batch a training step cannot beat.
Preprocessing is not included: it runs on the CPU (docs/performance.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_bundle  # noqa: E402

train_bundle.allow_missing_itk()

import torch  # noqa: E402
from scipy import ndimage  # noqa: E402
from eneuronet_bids.infer import (block_input, inference_autocast, network_box,  # noqa: E402
                                  predict_probabilities, runtime_for, synchronize,
                                  to_native_labels)
from eneuronet_bids.labels import label_table  # noqa: E402
from eneuronet_bids.malloc import keep_freed_memory  # noqa: E402
from eneuronet_bids.metrics import dice_per_class, summarise_dice  # noqa: E402
from eneuronet_bids.model_io import load_model, shipped_model  # noqa: E402
from eneuronet_bids.resample import resample  # noqa: E402
from eneuronet_bids.train import (_update, batch_loader, batch_to_device,  # noqa: E402
                                  segmentation_loss, training_batches)


def _timed(fn, device: torch.device) -> tuple[float, object]:
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - t0, out


def stand_in_native_grid(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(grid_to_native_voxels, brain_mask)`` of a stand-in T1w grid for a model-grid image:
    0.9 mm voxels, turned 10 degrees about the first axis, covering the grid (a participant's
    grid is never the model's, so the way back is a real trilinear resampling)."""
    angle = np.deg2rad(10)
    turn = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                     [0, np.sin(angle), np.cos(angle)]])
    shape = tuple(int(np.ceil(n / 0.9)) + 16 for n in image.shape)
    to_native = np.eye(4)
    to_native[:3, :3] = turn / 0.9
    to_native[:3, 3] = (np.array(shape) - 1) / 2 - to_native[:3, :3] @ (
        (np.array(image.shape) - 1) / 2)
    mask = resample((image > 0).astype(np.float32), np.linalg.inv(to_native), shape,
                    mode="nearest").numpy() > 0.5
    return to_native, mask


def native_resampling(probs: torch.Tensor, image: np.ndarray, device: torch.device,
                      repeats: int) -> dict:
    """``to_native_labels`` timed where ``probs`` are, and compared with the CPU's result."""
    to_native, mask = stand_in_native_grid(image)

    def call():
        return to_native_labels(probs, to_native, mask)

    cold, labels = _timed(call, device)
    warm = [_timed(call, device)[0] for _ in range(repeats)]
    t0 = time.perf_counter()
    on_cpu = to_native_labels(probs.cpu(), to_native, mask)
    cpu_s = time.perf_counter() - t0
    return {"native_shape": list(mask.shape), "native_cold_s": round(cold, 4),
            "native_median_s": round(statistics.median(warm), 4),
            "native_on_cpu_s": round(cpu_s, 4),
            "native_agreement": round(float((labels == on_cpu)[mask].mean()), 6)}


def network_pass(model, image: np.ndarray, device: torch.device):
    """One pass of the network alone over the block ``predict_probabilities`` feeds it, the
    input already on the device: what the stage costs before the classifier and the
    softmax."""
    box = network_box(image)
    x = block_input(image[box], tuple(b.start for b in box), image.shape, model.config, device)

    @torch.inference_mode()
    def call():
        with inference_autocast(device):
            return model.features(x)
    return call


def inference(model, examples, device, repeats: int, native: bool = True) -> list[dict]:
    table = label_table()
    rows = []
    for ex in examples:
        network = network_pass(model, ex.image, device)
        network()  # warm-up
        network_s = statistics.median(_timed(network, device)[0] for _ in range(repeats))
        # As the participant level: the brain (here the image, skull-stripped) dilated by two.
        region = ndimage.binary_dilation(ex.image > 0, iterations=2)
        for flip in (True, False):
            mirror = table.mirrored() if flip else None
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)

            def call():
                return predict_probabilities(model, ex.image, device, region=region,
                                             mirror=mirror)

            cold, probs = _timed(call, device)
            warm = [_timed(call, device)[0] for _ in range(repeats)]
            dice = summarise_dice(dice_per_class(probs.argmax(0).cpu().numpy(), ex.classes,
                                                 len(table)))["groups"]
            rows.append({"participant": ex.participant, "test_time_flip": flip,
                         "cold_s": round(cold, 4), "median_s": round(statistics.median(warm), 4),
                         "min_s": round(min(warm), 4), "max_s": round(max(warm), 4),
                         "network_pass_median_s": round(network_s, 4),
                         "peak_gpu_gb": (round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
                                         if device.type == "cuda" else None),
                         **{f"dice_{k}": round(v, 4) for k, v in dice.items()},
                         **(native_resampling(probs, ex.image, device, repeats)
                            if flip and native else {})})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def training_steps(model, device, batch_sizes, repeats: int, patch: int,
                   precisions: list[str]) -> list[dict]:
    n_classes = model.classifier.out_channels
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-6)
    model.train()
    rows = []
    # channels_last_3d is what training uses; contiguous for comparison, since cuDNN's
    # grouped 3D convolutions need not favour the same layout as oneDNN's.
    for layout in (torch.channels_last_3d, torch.contiguous_format):
        model.to(memory_format=layout)
        for precision, batch in itertools.product(precisions, batch_sizes):
            x = torch.rand(batch, model.config.in_channels, patch, patch, patch, device=device
                           ).contiguous(memory_format=layout)
            y = torch.randint(0, n_classes, (batch, patch, patch, patch), device=device)
            nonfinite = 0

            def step():
                nonlocal nonfinite
                with torch.autocast(device.type, dtype=torch.bfloat16,
                                    enabled=precision == "bf16"):
                    logits = model(x)
                loss = segmentation_loss(logits, y, 1.0)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if not _update(model, optimiser):  # the train level's clip-or-skip
                    nonfinite += 1
                return loss.item()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(3):
                step()
            times = [_timed(step, device)[0] for _ in range(repeats)]
            rows.append({"batch_size": batch, "patch": patch, "precision": precision,
                         "layout": "channels_last_3d" if layout == torch.channels_last_3d
                         else "contiguous",
                         "median_s": round(statistics.median(times), 4),
                         "min_s": round(min(times), 4),
                         "steps": 3 + repeats, "nonfinite_grad_steps": nonfinite,
                         "peak_gpu_gb": (round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
                                         if device.type == "cuda" else None)})
            print(json.dumps(rows[-1]), flush=True)
        if device.type == "cpu":
            break  # the CPU comparison is in docs/training.md already
    return rows


def patch_making(data, argv: list[str], n: int) -> dict:
    """Seconds to make one augmented patch in one process on one core (the loader's cost)."""
    config = train_bundle._config([*argv, "--batch-size", "1"])
    batches = training_batches(config, data)
    torch.set_num_threads(1)
    times = []
    for step in range(n):
        t0 = time.perf_counter()
        batches[step]
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "patches": n}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process, no child
    return usage.ru_utime + usage.ru_stime


def loader_throughput(data, argv: list[str], model_config, device: torch.device, workers: int,
                      n: int, batch_size: int) -> dict:
    """The training loop's loader alone: ``n`` batches of the bundle's recipe made by
    ``workers`` processes and moved to the device as the loop moves them (the labels read
    once, as the loss reads them). After the first quarter (the workers' start), the wall time
    per batch and this process's CPU time per batch: the cost of receiving batches, which
    the worker processes do not share."""
    config = train_bundle._config([*argv, "--batch-size", str(batch_size)])
    batches = training_batches(config, data)
    skip = n // 4
    received = 0
    for i, batch in enumerate(batch_loader(batches, 0, n, workers,
                                           pin_memory=device.type == "cuda")):
        if i == skip:
            synchronize(device)
            t0, cpu0 = time.perf_counter(), _cpu_seconds()
        received = sum(t.nbytes for t in batch)
        x, y = batch_to_device(batch, device, model_config)
        y.max()
    synchronize(device)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    timed = n - skip
    return {"workers": workers, "batch_size": batch_size, "batches": timed,
            "mb_per_batch": round(received / 1e6, 1),
            "wall_s_per_batch": round(wall / timed, 4),
            "main_cpu_s_per_batch": round(cpu / timed, 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=None, help="at most this many images")
    ap.add_argument("--train-batch-sizes", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--patch", type=int, default=96, help="training patch side (voxels)")
    ap.add_argument("--train-precision", nargs="+", choices=["fp32", "bf16"], default=None,
                    help="training-step precisions to time (default: the train level's, bf16 "
                         "on a GPU, fp32 on a CPU; bf16 on a CPU is train --cpu-bf16)")
    ap.add_argument("--patches", type=int, default=20,
                    help="augmented patches to time (0: not timed)")
    ap.add_argument("--loader-workers", type=int, default=None,
                    help="loader processes to time (default: the CPU count less two)")
    ap.add_argument("--loader-batches", type=int, default=200,
                    help="batches to time the loader on (0: not timed)")
    ap.add_argument("--loader-batch-size", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    keeps_freed = keep_freed_memory()  # as the participant and train levels do
    device, _ = runtime_for(args.device)
    data, argv = train_bundle.load(args.bundle)
    model_path = args.model or shipped_model()
    model, model_info = load_model(model_path, device)
    result = {"device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                         else "cpu"),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "malloc_keeps_freed_memory": keeps_freed,
              "model_sha256": model_info["sha256"]}
    print(json.dumps(result), flush=True)
    result["inference"] = inference(model, data.val_examples[:args.images], device,
                                    args.repeats)
    if device.type == "cuda":
        # cuDNN's autotuner times the algorithms for each convolution shape on its first use.
        # The participant level leaves it off (every image's block has its own shape, so each
        # would pay the search, and the chosen algorithms may differ between runs); timed
        # here, cold and warm, to know what it would buy.
        torch.backends.cudnn.benchmark = True
        # the way back to the native grid has no convolution: not timed again
        result["inference_cudnn_benchmark"] = inference(
            model, data.val_examples[:args.images], device, args.repeats, native=False)
        torch.backends.cudnn.benchmark = False
    precisions = args.train_precision or (["bf16"] if device.type == "cuda" else ["fp32"])
    result["training_step"] = training_steps(model, device, args.train_batch_sizes,
                                             args.repeats, args.patch, precisions)
    if args.patches:
        result["patch_making"] = patch_making(data, argv, args.patches)
        print(json.dumps(result["patch_making"]), flush=True)
    if args.loader_batches:
        workers = (args.loader_workers if args.loader_workers is not None
                   else max(1, (os.cpu_count() or 3) - 2))
        result["loader"] = loader_throughput(data, argv, model.config, device, workers,
                                             args.loader_batches, args.loader_batch_size)
        print(json.dumps(result["loader"]), flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
