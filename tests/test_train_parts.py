import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eneuronet_bids.augment import (Compose, RandomBiasField, RandomContrast, RandomGamma,
                                    RandomLowResolution, RandomNoise, RandomTissueContrast)
from eneuronet_bids.train import (Example, PatchSampler, TrainConfig, TrainingBatches, _digest,
                                  _lr_at, _trains_in_bf16, _update, find_labelled,
                                  segmentation_loss)


def test_loss_matches_one_hot_dice_plus_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 6, 6)
    target = torch.randint(0, 4, (2, 6, 6, 6))  # class 4 absent: not in the Dice mean
    p = logits.softmax(1)
    onehot = F.one_hot(target, 5).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    present = onehot.sum(dims) > 0
    dice = (2 * (p * onehot).sum(dims) + 1e-5) / (p.sum(dims) + onehot.sum(dims) + 1e-5)
    expected = 1 - dice[present].mean() + F.cross_entropy(logits, target)
    assert segmentation_loss(logits, target, 1.0).item() == pytest.approx(expected.item(), rel=1e-5)
    pure = segmentation_loss(logits, target, 0.0).item()
    assert pure == pytest.approx((1 - dice[present].mean()).item(), rel=1e-5)


def test_perfect_prediction_has_zero_dice_loss():
    target = torch.randint(0, 3, (1, 4, 4, 4))
    logits = 50 * F.one_hot(target, 3).permute(0, 4, 1, 2, 3).float()
    assert segmentation_loss(logits, target, 0.0).item() == pytest.approx(0.0, abs=1e-4)


def test_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(bids_dir=None, output_dir=None, labels_dir=None, steps=1000, lr=1e-3)
    lrs = [_lr_at(s, cfg) for s in range(1000)]
    assert lrs[0] < lrs[99] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(5e-5, rel=0.01)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))


def test_patches_have_the_right_size_and_mostly_foreground():
    rng = np.random.default_rng(0)
    classes = np.zeros((40, 40, 40), np.uint8)
    classes[30:36, 30:36, 30:36] = 7
    ex = Example("01", rng.random((40, 40, 40)).astype(np.float32), classes)
    sampler = PatchSampler([ex], 16)
    hits = 0
    for _ in range(50):
        img, lab, start = sampler.sample(rng)
        assert img.shape == lab.shape == (16, 16, 16)
        assert np.array_equal(lab, classes[tuple(slice(s, s + 16) for s in start)])
        hits += (lab == 7).any()
    assert hits >= 35


def test_augmentations_keep_shape_dtype_and_background():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 20, 20), np.float32)
    x[5:15, 5:15, 5:15] = rng.uniform(0.2, 1.0, (10, 10, 10))
    aug = Compose([RandomGamma(p=1), RandomContrast(p=1), RandomBiasField(p=1), RandomNoise(p=1)])
    y = aug(x, rng)
    assert y.shape == x.shape and y.dtype == np.float32
    assert (y[x == 0] == 0).all()
    assert not np.allclose(y, x)


def test_switched_off_transforms_draw_no_random_numbers():
    rng, untouched = np.random.default_rng(3), np.random.default_rng(3)
    x = np.ones((8, 8, 8), np.float32)
    classes = np.ones((8, 8, 8), np.int64)
    assert RandomLowResolution(p=0)(x, rng) is x
    assert RandomTissueContrast(np.array([0, 1]), p=0)(x, classes, rng) is x
    assert rng.random() == untouched.random()


def test_tissue_contrast_shifts_each_tissue_by_one_amount():
    rng = np.random.default_rng(4)
    classes = np.zeros((40, 40, 40), np.int64)
    classes[2:38, 2:38, 2:20] = 1  # two classes of tissue 1 side by side...
    classes[2:38, 2:20, 2:20] = 2
    classes[2:38, 2:38, 20:38] = 3  # ...and one of tissue 2
    x = np.where(classes > 0, 0.5, 0).astype(np.float32)
    y = RandomTissueContrast(np.array([0, 1, 1, 2]), p=1, max_shift=0.3)(x, classes, rng)
    assert y.dtype == np.float32 and (y[classes == 0] == 0).all()
    # more than 4 smoothing SDs from any edge between tissues
    inner1, inner2 = y[7:33, 7:33, 7:15], y[7:33, 7:33, 25:33]
    assert np.ptp(inner1) < 1e-5 and np.ptp(inner2) < 1e-5
    assert abs(inner1.mean() - inner2.mean()) > 1e-3
    assert (y[classes > 0] >= 0.01).all()


def test_low_resolution_blurs_fine_detail_and_keeps_the_background():
    rng = np.random.default_rng(5)
    x = np.zeros((32, 32, 32), np.float32)
    x[4:28, 4:28, 4:28] = 0.5 + 0.4 * (np.indices((24, 24, 24)).sum(0) % 2)  # a checkerboard
    y = RandomLowResolution(p=1, max_mm=3.0)(x, rng)
    assert y.shape == x.shape and y.dtype == np.float32
    assert (y[x == 0] == 0).all()
    inside = (slice(8, 24),) * 3
    assert y[inside].std() < 0.5 * x[inside].std()
    assert abs(y[inside].mean() - x[inside].mean()) < 0.05


def test_elastic_moves_image_and_labels_together():
    from eneuronet_bids.augment import RandomElastic

    rng = np.random.default_rng(1)
    classes = np.zeros((32, 32, 32), np.uint8)
    classes[8:24, 8:24, 8:24] = 5
    classes[12:20, 12:20, 12:20] = 9
    image = classes.astype(np.float32) / 9
    x, y = RandomElastic(p=1.0, sigma=4.0)(image, classes, rng)
    assert x.shape == y.shape == classes.shape and y.dtype == np.uint8
    assert set(np.unique(y)) <= {0, 5, 9}  # nearest neighbour: no new labels
    assert not np.array_equal(y, classes)
    # the image moved with the labels: where the warped label is 9, the image is ~1
    assert x[y == 9].mean() > 0.95 and x[y == 0].mean() < 0.05
    same = RandomElastic(p=0.0)(image, classes, rng)
    assert same[0] is image and same[1] is classes


def test_flip_mirrors_image_labels_and_place_and_swaps_hemispheres():
    from eneuronet_bids.augment import RandomFlipLeftRight
    from eneuronet_bids.labels import label_table

    table = label_table()
    names = [lab.name for lab in table]
    left, right = names.index("Left-Hippocampus"), names.index("Right-Hippocampus")
    brainstem = names.index("Brain-Stem")
    classes = np.zeros((16, 8, 8), np.uint8)
    classes[2:5] = left  # low x: the left of the patch (RAS grid)
    classes[7:9] = brainstem
    image = np.linspace(0, 1, 16, dtype=np.float32)[:, None, None] * np.ones((1, 8, 8))
    flip = RandomFlipLeftRight(table.mirrored(), grid_width=160, p=1.0)
    x, y, start = flip(image, classes, (100, 3, 4), np.random.default_rng(0))
    assert start == (160 - 100 - 16, 3, 4)  # the mirrored place on the grid
    assert np.array_equal(x, image[::-1])
    assert set(np.unique(y[11:14])) == {right} and not (y == left).any()
    assert set(np.unique(y[7:9])) == {brainstem} and y.dtype == np.uint8
    assert (y == 0).sum() == (classes == 0).sum()
    # twice is the identity; p = 0 leaves the patch alone
    x2, y2, start2 = flip(x, y, start, np.random.default_rng(0))
    assert np.array_equal(x2, image) and np.array_equal(y2, classes) and start2 == (100, 3, 4)
    same = RandomFlipLeftRight(table.mirrored(), 160, p=0.0)(image, classes, (1, 2, 3),
                                                               np.random.default_rng(0))
    assert same[0] is image and same[1] is classes and same[2] == (1, 2, 3)


def test_pairs_are_distinct_per_subject():
    from eneuronet_bids.warp_augment import plan_pairs

    pairs = plan_pairs(["01", "02", "03"], ["a", "b", "c", "d"], 2, np.random.default_rng(0))
    assert len(pairs) == 6
    for m in ("01", "02", "03"):
        fixed = [f for mm, f in pairs if mm == m]
        assert len(set(fixed)) == 2
    assert plan_pairs(["01"], [], 2, np.random.default_rng(0)) == []


def test_excluded_unlabelled_participants_are_never_targets():
    from eneuronet_bids.train import registration_targets

    subjects = ["IXI002", "IXI012", "IXI013"]
    assert registration_targets(subjects, ["sub-IXI012"]) == ["IXI002", "IXI013"]
    assert registration_targets(subjects, []) == subjects
    with pytest.raises(ValueError, match="IXI999"):  # a typo must not let a test scan in
        registration_targets(subjects, ["IXI012", "IXI999"])
    with pytest.raises(ValueError, match="leaves no"):
        registration_targets(subjects, subjects)


def test_registration_cache_key_follows_content_and_settings():
    from eneuronet_bids.warp_augment import RegistrationSettings, content_key

    a = np.zeros((4, 4, 4), np.float32)
    b = a.copy()
    b[0, 0, 0] = 1
    s = RegistrationSettings()
    assert content_key(a, settings=s) == content_key(a.copy(), settings=s)
    assert content_key(a, settings=s) != content_key(b, settings=s)
    assert content_key(a, settings=s) != content_key(
        a, settings=RegistrationSettings(syn_iterations=(10, 0, 0)))


def test_sampler_draws_warped_examples_at_the_given_rate():
    rng = np.random.default_rng(0)
    orig = Example("01", np.zeros((20, 20, 20), np.float32), np.ones((20, 20, 20), np.uint8))
    warped = Example("01->a", np.ones((20, 20, 20), np.float32), np.ones((20, 20, 20), np.uint8))
    sampler = PatchSampler([orig], 8, [warped], warped_p=0.3)
    share = np.mean([sampler.sample(rng)[0].mean() for _ in range(2000)])
    assert 0.26 < share < 0.34
    assert all(PatchSampler([orig], 8, [], 0.9).sample(rng)[0].max() == 0 for _ in range(20))


def test_matched_intensities_take_the_reference_distribution_in_the_same_order():
    from eneuronet_bids.warp_augment import match_intensities

    rng = np.random.default_rng(0)
    image = np.zeros((20, 20, 20), np.float32)
    image[4:16, 4:16, 4:16] = rng.uniform(0.2, 1.0, (12, 12, 12))
    reference = np.zeros((20, 20, 20), np.float32)
    reference[2:17, 3:18, 5:15] = np.clip(rng.normal(0.7, 0.15, (15, 15, 10)), 0.01, None)
    out = match_intensities(image, reference)
    brain = image > 0
    assert out.dtype == image.dtype and (out[~brain] == 0).all() and (out[brain] > 0).all()
    order = np.argsort(image[brain])
    assert (np.diff(out[brain][order]) >= 0).all()  # monotone: no tissue swaps places
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    assert np.allclose(np.quantile(out[brain], q), np.quantile(reference[reference > 0], q),
                       atol=0.01)
    assert match_intensities(image, np.zeros_like(image)) is image  # nothing to match to


def test_warped_examples_take_their_targets_intensities_only_when_asked(tmp_path, monkeypatch):
    from eneuronet_bids import train

    classes = np.zeros((12, 12, 12), np.uint8)
    classes[3:9, 3:9, 3:9] = 2
    moving = Example("01", classes.astype(np.float32) * 0.25, classes)  # brain at 0.5
    target = np.where(classes > 0, 0.9, 0).astype(np.float32)
    monkeypatch.setattr(train, "prepare_unlabelled", lambda unit, config: target)
    monkeypatch.setattr(train, "warp_all", lambda jobs, nprocs, seed:
                        [(j.moving_image, j.moving_classes) for j in jobs])
    for match, brain_value in ((False, 0.5), (True, 0.9)):
        config = TrainConfig(bids_dir=tmp_path, output_dir=tmp_path, labels_dir=tmp_path,
                             work_dir=tmp_path, match_target_intensity=match)
        (warped,) = train.warped_examples([moving], {"IXI002": None}, config,
                                          np.random.default_rng(0))
        assert warped.participant == "01->IXI002"
        assert np.allclose(warped.image[classes > 0], brain_value)
        assert (warped.image[classes == 0] == 0).all() and warped.classes is classes


def test_warp_pair_registers_a_shifted_blob_and_caches(tmp_path):
    from eneuronet_bids.warp_augment import RegistrationSettings, WarpJob, warp_pair

    grid = np.indices((40, 40, 40)).astype(np.float32)
    def ball(centre, r):
        return (((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0) < r * r)
    moving_classes = ball((17, 20, 20), 9).astype(np.uint8) * 3
    fixed = ball((23, 20, 20), 11).astype(np.float32)
    job = WarpJob("01", "a", moving_classes.astype(np.float32) / 3, moving_classes, fixed,
                  tmp_path / "pair.npz", RegistrationSettings(syn_iterations=(20, 10, 0),
                                                              affine_iterations=(50, 20, 0, 0)))
    image, classes = warp_pair(job)
    assert set(np.unique(classes)) <= {0, 3}
    target = fixed > 0.5
    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice(classes == 3, target) > dice(moving_classes == 3, target) + 0.15
    assert job.cache.exists()
    again = warp_pair(job)  # read back from the cache: the same arrays as the first time
    assert np.array_equal(again[1], classes) and np.array_equal(again[0], image)


def test_array_cache_makes_once_and_leaves_nothing_on_failure(tmp_path):
    from eneuronet_bids.array_cache import cached

    calls = []
    def make():
        calls.append(1)
        return {"a": np.arange(5, dtype=np.int16)}
    path = tmp_path / "sub" / "x.npz"
    first, second = cached(path, make), cached(path, make)
    assert len(calls) == 1 and np.array_equal(first["a"], second["a"])
    assert second["a"].dtype == np.int16
    class Unwritable:  # fails inside the write, after the temporary file exists
        def __array__(self, *args, **kwargs):
            raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        cached(tmp_path / "sub" / "y.npz", lambda: {"a": Unwritable()})
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.npz"]


def test_each_t1w_is_paired_with_its_own_label_map(tmp_path):
    """Two runs of one participant each have a label map; the other's must never be taken."""
    bids, labels = tmp_path / "bids", tmp_path / "labels"
    for root in (bids, labels):
        root.mkdir()
        (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    for name, has_labels in (("sub-01_run-1", True), ("sub-01_run-2", True),
                             ("sub-02", True), ("sub-03_acq-fast", False)):
        sub = name.split("_")[0]
        (bids / sub / "anat").mkdir(parents=True, exist_ok=True)
        (bids / sub / "anat" / f"{name}_T1w.nii.gz").write_bytes(b"")
        if has_labels:
            (labels / sub / "anat").mkdir(parents=True, exist_ok=True)
            (labels / sub / "anat" / f"{name}_desc-DKT31aseg_dseg.nii.gz").write_bytes(b"")
    (labels / "sub-03" / "anat").mkdir(parents=True)  # a map for another T1w of sub-03 only
    (labels / "sub-03" / "anat" / "sub-03_desc-DKT31aseg_dseg.nii.gz").write_bytes(b"")
    pairs = find_labelled(TrainConfig(bids_dir=bids, output_dir=tmp_path / "out",
                                      labels_dir=labels))
    assert [(p, t1w.path.name, lab.name) for p, t1w, lab in pairs] == [
        ("01", "sub-01_run-1_T1w.nii.gz", "sub-01_run-1_desc-DKT31aseg_dseg.nii.gz"),
        ("01", "sub-01_run-2_T1w.nii.gz", "sub-01_run-2_desc-DKT31aseg_dseg.nii.gz"),
        ("02", "sub-02_T1w.nii.gz", "sub-02_desc-DKT31aseg_dseg.nii.gz"),
    ]


def test_cache_keys_differ_by_n4_and_quick_keeps_the_old_key(tmp_path):
    import hashlib

    from eneuronet_bids import __version__

    image = tmp_path / "t1w.nii.gz"
    image.write_bytes(b"not really an image")
    old = hashlib.sha256(image.read_bytes() + __version__.encode()).hexdigest()[:16]
    assert _digest(image, n4="quick") == old  # caches made before the setting stay valid
    assert _digest(image, n4="brain") != old
    with pytest.raises(ValueError, match="N4"):
        TrainConfig(bids_dir=tmp_path, output_dir=tmp_path, labels_dir=tmp_path, n4="strong")


def _batches(examples, seed=0, batch_size=2):
    from eneuronet_bids.augment import RandomElastic, RandomFlipLeftRight
    from eneuronet_bids.labels import label_table
    from eneuronet_bids.templates import GRID_SHAPE
    table = label_table()
    return TrainingBatches(
        PatchSampler(examples, 16), RandomFlipLeftRight(table.mirrored(), GRID_SHAPE[0]),
        RandomElastic(p=0.5, sigma=3.0), RandomTissueContrast(table.tissue_of_class(), p=0.5),
        Compose([RandomGamma(), RandomNoise()]), batch_size, seed)


def test_a_steps_batch_depends_on_the_step_alone_not_on_the_process():
    from eneuronet_bids.labels import label_table
    from eneuronet_bids.train import batch_loader
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 5, (40, 40, 40)).astype(np.uint8)
    ex = Example("01", rng.random((40, 40, 40)).astype(np.float32), classes)
    batches = _batches([ex])
    here = [batches[s] for s in range(2, 6)]
    workers = list(batch_loader(batches, 2, 6, workers=2, pin_memory=False))
    assert len(workers) == 4
    for batch, from_worker in zip(here, workers):
        assert batch.images.shape == batch.classes.shape == (2, 16, 16, 16)
        assert batch.images.dtype == torch.float32 and batch.classes.dtype == torch.uint8
        assert batch.starts.shape == (2, 3) and int(batch.classes.max()) < len(label_table())
        assert all(torch.equal(a, b) for a, b in zip(batch, from_worker))
    assert not torch.equal(here[0].images, here[1].images)  # steps differ
    assert not torch.equal(here[0].images, _batches([ex], seed=1)[2].images)  # and seeds


def test_a_batch_reaches_the_device_as_network_input_and_class_indices():
    from eneuronet_bids.model import ModelConfig
    from eneuronet_bids.templates import GRID_SHAPE
    from eneuronet_bids.train import batch_to_device
    rng = np.random.default_rng(0)
    ex = Example("01", rng.random((40, 40, 40)).astype(np.float32),
                 rng.integers(0, 5, (40, 40, 40)).astype(np.uint8))
    batch = _batches([ex])[3]
    x, y = batch_to_device(batch, torch.device("cpu"), ModelConfig(n_classes=5))
    assert x.shape == (2, 4, 16, 16, 16) and x.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(x[:, 0], batch.images)
    for n, start in enumerate(batch.starts.tolist()):
        for axis in range(3):
            # the patch's grid coordinates, scaled to [-1, 1] over the whole grid
            half = (GRID_SHAPE[axis] - 1) / 2
            index = [slice(None)] * 3
            index[axis] = [0, -1]
            ends = x[n, 1 + axis][tuple(index)].unique()
            assert torch.allclose(ends, torch.tensor([start[axis] - half, start[axis] + 15 - half]
                                                     ) / half)
    assert y.dtype == torch.int64 and torch.equal(y, batch.classes.long())


def test_elastic_field_equals_the_3d_spline_zoom_of_its_control_points():
    from scipy import ndimage

    from eneuronet_bids.augment import RandomElastic

    elastic = RandomElastic(points=3)
    coarse = np.random.default_rng(2).normal(0, 15, (3, 3, 3))
    shape = (20, 17, 24)
    weights = [elastic._weights(n) for n in shape]
    field = np.einsum("ia,jb,kc,abc->ijk", *weights, coarse)
    zoom = [n / 3 for n in shape]
    expected = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
    assert field.shape == expected.shape == shape
    np.testing.assert_allclose(field, expected, atol=1e-9)


def _linear_with_gradients(grad: float) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Linear(3, 2)
    for param in model.parameters():
        param.grad = torch.full_like(param, grad)
    return model, torch.optim.SGD(model.parameters(), lr=1.0)


def test_an_update_with_non_finite_gradients_is_skipped():
    for bad in (float("nan"), float("inf")):
        model, optimiser = _linear_with_gradients(bad)
        before = [p.detach().clone() for p in model.parameters()]
        assert not _update(model, optimiser)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert all(p.grad is None for p in model.parameters())  # not carried into the next step


def test_an_update_clips_the_gradients_to_norm_one():
    model, optimiser = _linear_with_gradients(10.0)
    before = [p.detach().clone() for p in model.parameters()]
    assert _update(model, optimiser)
    moved = torch.cat([(a - p.detach()).flatten() for a, p in zip(before, model.parameters())])
    assert moved.norm().item() == pytest.approx(1.0, rel=1e-5)  # SGD, lr 1: the clipped gradient


def test_cpus_train_in_fp32_unless_asked_and_native(caplog):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    plain = TrainConfig(bids_dir=None, output_dir=None, labels_dir=None)
    asked = TrainConfig(bids_dir=None, output_dir=None, labels_dir=None, cpu_bf16=True)
    assert _trains_in_bf16(plain, cuda, True) and _trains_in_bf16(asked, cuda, True)
    assert not _trains_in_bf16(plain, cpu, True)
    assert _trains_in_bf16(asked, cpu, True)
    assert not caplog.records
    assert not _trains_in_bf16(asked, cpu, False)
    assert "no native bf16" in caplog.text
