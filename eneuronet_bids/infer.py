"""Model inference on the model grid, and mapping class probabilities back to the T1w grid."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .model import DIVISOR, ENeuroNet, ModelConfig, model_input
from .resample import mask_box, resample_argmax

log = logging.getLogger(__name__)


def runtime_for(requested: str) -> tuple[torch.device, bool]:
    """The torch device for ``--device`` and whether bf16 autocast pays off on it.

    On CPUs without native bf16 (no AVX512-BF16/AMX) autocast is far slower than fp32
    (measured 236 s against 13 s for one volume on an AVX2 EPYC), so it is used only where
    oneDNN reports support.
    """
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA device is available")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda"), True
    return torch.device("cpu"), bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a stage's time
    is the time its work took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_autocast(device: torch.device) -> torch.autocast:
    """The autocast inference runs under: fp16 on CUDA, bf16 on a CPU with native bf16, and
    none (fp32) on other CPUs (``runtime_for``)."""
    return torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu"
                          else torch.float16, enabled=runtime_for(device.type)[1])


def network_box(image: np.ndarray, margin: int = 8) -> tuple[slice, slice, slice]:
    """The block of the model grid the network has to see: the image's non-zero voxels (the
    brain; preprocessing zeroes the rest) plus ``margin``, grown to multiples of
    ``DIVISOR`` and kept inside the grid, whose sides are multiples of ``DIVISOR`` too."""
    nonzero = np.argwhere(image)
    if not len(nonzero):
        return tuple(slice(0, n) for n in image.shape)
    box = []
    for lo, hi, n in zip(nonzero.min(0) - margin, nonzero.max(0) + margin + 1, image.shape):
        size = min(-(-(hi - lo) // DIVISOR) * DIVISOR, n)
        start = int(np.clip((lo + hi - size) // 2, 0, n - size))
        box.append(slice(start, start + size))
    return tuple(box)


def block_input(block: np.ndarray, start: tuple[int, ...], grid_shape: tuple[int, int, int],
                config: ModelConfig, device: torch.device) -> torch.Tensor:
    """The network input (1, C, X, Y, Z) on ``device`` for a block of a grid image that starts
    at ``start``: only the image crosses to the device (``model_input``)."""
    t = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))[None].to(device)
    return model_input(t, config, grid_shape, [start])


@torch.inference_mode()
def predict_probabilities(model: ENeuroNet, image: np.ndarray, device: torch.device,
                          *, region: np.ndarray | None = None, mirror: np.ndarray | None = None,
                          chunk: int | None = None) -> torch.Tensor:
    """Softmax probabilities (C, X, Y, Z) as float16 on ``device`` for a normalised grid image.

    They stay where the network ran: on a GPU the way back to the native grid
    (``to_native_labels``) runs there too, and only class indices reach host memory instead of
    1.4 GB of probabilities for a whole grid.

    The network sees only ``network_box`` (three quarters of the grid for the sample head, and
    the forward pass costs in proportion). Only the voxels of ``region`` (a bool grid mask;
    default everything) are classified: the full-resolution classifier and softmax over 100
    classes cost as much as the rest of the network, and outside the brain they are wasted.
    Everything not classified is certain background.

    With ``mirror`` (``LabelTable.mirrored()``) the image is also classified mirrored along
    its first axis, which on the model grid is left-right about the template's midline, and
    the two estimates are averaged, the mirrored one's hemisphere classes swapped back (test-
    time flip, as in SynthSeg): one more forward pass for a steadier answer.

    The result is stored channels-last (each voxel's C values side by side), as the network
    computes them: the softmax then runs over a contiguous axis, which on the CPU is about
    five times faster. Voxels are classified ``chunk`` at a time; on the CPU the default
    (8,192) keeps each chunk's logits in cache, which made this stage five times faster than
    chunks of half a million voxels (docs/performance.md).
    """
    model.eval()
    if chunk is None:
        chunk = 1 << 13 if device.type == "cpu" else 1 << 19
    box = network_box(image)
    block = image[box]
    n_classes = model.classifier.out_channels
    probs = torch.empty((1, n_classes, *image.shape), dtype=torch.float16, device=device,
                        memory_format=torch.channels_last_3d)[0]
    voxels = probs.permute(1, 2, 3, 0).view(-1, n_classes)
    voxels.zero_()[:, 0] = 1.0
    inside = np.zeros(image.shape, dtype=bool)
    inside[box] = True if region is None else region[box]
    targets = torch.from_numpy(np.flatnonzero(inside)).to(device)
    sources = np.flatnonzero(inside[box])
    weight = model.classifier.weight.view(n_classes, -1)
    bias = model.classifier.bias

    def features(x: np.ndarray, start: tuple[int, ...]) -> torch.Tensor:
        """(voxels of the block, channels) features of a block at ``start`` of the grid."""
        f = model.features(block_input(x, start, image.shape, model.config, device))[0]
        return f.permute(1, 2, 3, 0).reshape(-1, weight.shape[1])

    with inference_autocast(device):
        # (features, their rows for the source voxels, classifier weight^T, bias) per pass
        passes = [(features(block, tuple(b.start for b in box)),
                   torch.from_numpy(sources).to(device), weight.t(), bias)]
        if mirror is not None:
            # The mirrored block sits at the mirrored place on the grid; a source voxel's
            # features there are those of its mirror image.
            start = (image.shape[0] - box[0].stop, box[1].start, box[2].start)
            i, j, k = np.unravel_index(sources, block.shape)
            mirrored = np.ravel_multi_index((block.shape[0] - 1 - i, j, k), block.shape)
            # Classifying with the classes permuted swaps the hemispheres back for free.
            swap = torch.from_numpy(np.asarray(mirror)).to(device)
            passes.append((features(block[::-1], start),
                           torch.from_numpy(mirrored).to(device), weight[swap].t(),
                           bias[swap]))
        for first in range(0, len(sources), chunk):
            estimate = None
            for f, rows, w, b in passes:
                p = torch.addmm(b, f.index_select(0, rows[first:first + chunk]), w)
                p = p.float().softmax(-1)
                estimate = p if estimate is None else estimate.add_(p)
            estimate = estimate.mul_(1 / len(passes)).half()
            voxels.index_copy_(0, targets[first:first + chunk], estimate)
    return probs


def native_probabilities_buffer(shape: tuple[int, int, int], n_classes: int,
                                scratch: Path) -> np.ndarray:
    """A memory-mapped (X, Y, Z, C) uint8 array in ``scratch`` for class probabilities on the
    native grid (a 256³ head has 1.7 GB of them), filled with certain background."""
    scratch.parent.mkdir(parents=True, exist_ok=True)
    # Fortran order: each class is one contiguous volume, as NIfTI stores it.
    out = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8,
                                    shape=(*shape, n_classes), fortran_order=True)
    out[..., 0] = 255
    return out


def to_native_labels(probs: torch.Tensor, grid_to_native_voxels: np.ndarray,
                     brain_mask: np.ndarray, margin: int = 3,
                     probabilities_out: np.ndarray | None = None) -> np.ndarray:
    """Class index per native voxel: probabilities resampled (trilinear), then the argmax;
    with ``probabilities_out`` (from ``native_probabilities_buffer``) the same pass keeps the
    resampled probabilities.

    Only the box around the brain mask (plus ``margin`` voxels) is resampled; the network
    sees zeros outside the mask, so everything beyond the box is background. The resampling
    runs where ``probs`` are (CPU or GPU).
    """
    labels = np.zeros(brain_mask.shape, dtype=np.int64)
    box = mask_box(brain_mask, margin)
    if box is None:
        return labels
    offset = np.eye(4)
    offset[:3, 3] = [b.start for b in box]
    labels[box] = resample_argmax(
        probs, np.linalg.inv(grid_to_native_voxels) @ offset, labels[box].shape,
        probabilities_out=None if probabilities_out is None else probabilities_out[box])
    return labels
