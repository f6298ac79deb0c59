"""Loaders: one resolution, deterministic shuffling and augmentation (keys pinned to the values
the pipeline's outputs were made with), sharding, eval order and subsets, the packed copy, and
moving the image root."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dwnas.cli import main
from dwnas.data.loaders import (
    DeterministicBatchSampler,
    JpegImages,
    PackedImages,
    build_eval_loader,
    build_train_loader,
    num_classes,
)
from dwnas.errors import DwnasError

CLASSES, TRAIN, VAL, SIZE = 3, 8, 4, 40


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A small generated tree, prepared, with a packed copy at the images' own size."""
    base = tmp_path_factory.mktemp("data")
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(base / "raw"),
                "--classes",
                str(CLASSES),
                "--train-per-class",
                str(TRAIN),
                "--val-per-class",
                str(VAL),
                "--image-size",
                str(SIZE),
                "--seed",
                "0",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "prepare",
                "--root",
                str(base / "raw"),
                "--subset",
                "all",
                "--out",
                str(base / "prepared"),
                "--on-corrupt",
                "fail",
                "--pack-size",
                str(SIZE),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    return base / "prepared"


def batches(loader, epoch=None):
    if epoch is not None:
        loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


# The batch sampler ------------------------------------------------------------------------


def test_sampler_keys_are_those_the_pipeline_was_run_with():
    """(index, augmentation seed) per batch, as computed before the per-batch resolution grid
    was removed: a change here changes every training output."""
    sampler = DeterministicBatchSampler(10, 3, seed=7, epoch=3)
    assert list(sampler) == [
        [(3, 3632389985960211445), (5, 7133216851532208230), (4, 3882283151683806462)],
        [(7, 7545274146796888327), (8, 5347536408423598186), (0, 8753253328822659142)],
        [(9, 869483373331853780), (2, 8979610789286659479), (1, 4154110255143259661)],
    ]
    ranks = [list(DeterministicBatchSampler(11, 2, seed=5, epoch=1, rank=r, world_size=2,
                                            drop_last=False)) for r in range(2)]
    assert ranks == [
        [[(5, 2541748475894479000), (7, 4287967069929927806)],
         [(4, 980256947935387877), (0, 235688740158864400)],
         [(9, 4699392444293552202), (1, 5299780327745176223)]],
        [[(8, 2386654697662265803), (2, 3694050411243871252)],
         [(6, 4850992600093548949), (10, 1582268830072437039)],
         [(3, 3940207680005546896), (5, 2541748475894479000)]],
    ]
    assert list(DeterministicBatchSampler(7, 3, seed=1, shuffle=False, drop_last=False)) == [
        [(0, 1933470964590754054), (1, 1640946741281779067), (2, 471405968090679922)],
        [(3, 4249423326382076871), (4, 3818063733599495961), (5, 5744442074854098306)],
        [(6, 489704833791943400)],
    ]


def test_sampler_is_a_pure_function_of_seed_and_epoch():
    def draw(seed, epoch):
        sampler = DeterministicBatchSampler(100, 8, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0, 3) == draw(0, 3)
    assert draw(0, 3) != draw(0, 4)
    assert draw(0, 3) != draw(1, 3)
    indices = [i for batch in draw(0, 3) for i, _ in batch]
    assert len(indices) == 96 and len(set(indices)) == 96


def test_sampler_shards_disjointly():
    ranks = [
        list(DeterministicBatchSampler(103, 5, seed=2, rank=r, world_size=4)) for r in range(4)
    ]
    assert len({len(r) for r in ranks}) == 1
    seen = [i for r in ranks for batch in r for i, _ in batch]
    assert len(seen) == len(set(seen))
    padded = [
        list(DeterministicBatchSampler(103, 5, rank=r, world_size=4, drop_last=False))
        for r in range(4)
    ]
    covered = {i for r in padded for batch in r for i, _ in batch}
    assert covered == set(range(103))


# Loaders over a prepared directory --------------------------------------------------------


def test_train_batches_at_the_loaders_resolution(prepared):
    loader = build_train_loader(prepared, 4, 32, workers=0, seed=0, packed=False)
    assert isinstance(loader.dataset, JpegImages)
    seen = []
    for images, labels in batches(loader):
        assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
        assert labels.dtype == torch.int64 and set(labels.tolist()) <= set(range(CLASSES))
        seen.append(images)
    assert len(seen) == CLASSES * TRAIN // 4
    assert -3 < float(images.mean()) < 3


def test_a_resolution_range_is_refused(prepared):
    """Elastic resolution is done on the device by training, not by the loader."""
    with pytest.raises(DwnasError, match=r"resolution must be a positive int \(got \(24, 40\)\)"):
        build_train_loader(prepared, 4, (24, 40), workers=0, seed=0, packed=False)
    with pytest.raises(DwnasError, match="resolution must be a positive int"):
        build_eval_loader(prepared, "val", 4, 0, workers=0, packed=False)


def test_train_batches_identical_with_and_without_workers(prepared):
    serial = build_train_loader(prepared, 4, 32, workers=0, seed=5, epoch=2, packed=False)
    parallel = build_train_loader(prepared, 4, 32, workers=2, seed=5, epoch=2, packed=False)
    rng_state = torch.get_rng_state()
    first = batches(serial)
    assert torch.equal(torch.get_rng_state(), rng_state), "the caller's RNG must not move"
    for (x0, y0), (x1, y1) in zip(first, batches(parallel), strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert parallel.persistent_workers
    again = batches(parallel, epoch=2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))


def test_crop_scale_reaches_the_random_resized_crop(prepared):
    from torchvision.transforms import v2

    default = build_train_loader(prepared, 4, 32, workers=0, seed=3, packed=False)
    whole = build_train_loader(prepared, 4, 32, workers=0, seed=3, packed=False,
                               crop_scale=(1.0, 1.0))
    crop = next(t for t in whole.dataset.transform.transforms
                if isinstance(t, v2.RandomResizedCrop))
    assert crop.scale == (1.0, 1.0)
    first, other = batches(default), batches(whole)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


def test_hflip_off_never_mirrors_an_image(prepared):
    """Digits change class when mirrored: ``hflip=False`` must leave every draw unflipped."""
    def draws(hflip: bool) -> list[torch.Tensor]:
        dataset = build_train_loader(prepared, 4, 32, workers=0, seed=0, packed=False,
                                     crop_scale=(1.0, 1.0), hflip=hflip).dataset
        return [dataset[(0, seed)][0] for seed in range(16)]

    plain = draws(False)
    assert all(torch.equal(plain[0], x) for x in plain)
    flipped = [x for x in draws(True) if not torch.equal(x, plain[0])]
    assert flipped and all(torch.equal(x, plain[0].flip(-1)) for x in flipped)


def test_set_epoch_reshuffles_and_redraws_augmentation(prepared):
    loader = build_train_loader(prepared, 4, 32, workers=0, seed=0, packed=False)
    epoch0, epoch1 = batches(loader, 0), batches(loader, 1)
    assert [y.tolist() for _, y in epoch0] != [y.tolist() for _, y in epoch1]
    assert sorted(t for _, y in epoch0 for t in y.tolist()) == sorted(
        t for _, y in epoch1 for t in y.tolist()
    )


def test_eval_loader_is_deterministic_in_manifest_order(prepared):
    loader = build_eval_loader(prepared, "val", 5, 32, workers=0, packed=False)
    first = batches(loader)
    labels = torch.cat([y for _, y in first]).tolist()
    assert labels == sorted(labels) and len(labels) == CLASSES * VAL
    assert all(x.shape[-2:] == (32, 32) for x, _ in first)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, batches(loader), strict=True))


def test_eval_limit_picks_a_seeded_subset(prepared):
    def paths(seed):
        loader = build_eval_loader(
            prepared, "train", 4, 24, workers=0, limit=10, seed=seed, packed=False
        )
        assert sum(len(y) for _, y in loader) == 10
        return loader.dataset.paths.tolist()

    assert paths(0) == paths(0)
    assert paths(0) != paths(1)
    assert paths(0) == sorted(paths(0))


def test_packed_copy_is_used_by_default_and_matches_jpeg(prepared):
    packed = build_eval_loader(prepared, "val", 6, 32, workers=0)
    jpeg = build_eval_loader(prepared, "val", 6, 32, workers=0, packed=False)
    assert isinstance(packed.dataset, PackedImages) and isinstance(jpeg.dataset, JpegImages)
    for (xp, yp), (xj, yj) in zip(batches(packed), batches(jpeg), strict=True):
        assert torch.equal(yp, yj)
        assert float((xp - xj).abs().max()) < 0.05
    train = build_train_loader(prepared, 4, 40, workers=0, seed=0)
    assert isinstance(train.dataset, PackedImages)
    for images, _ in batches(train):
        assert images.shape[-1] == 40


def test_pack_command_rebuilds_and_stale_pack_is_refused(prepared, tmp_path):
    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy)
    # the images sit beside the prepared dir, which names them relative to itself: they move along
    shutil.copytree(Path(prepared).parent / "raw", tmp_path / "raw")
    assert main(["data", "pack", "--prepared", str(copy), "--size", "24", "--workers", "1"]) == 0
    array = np.load(copy / "packed" / "train.npy", mmap_mode="r")
    assert array.shape == (CLASSES * TRAIN, 24, 24, 3) and array.dtype == np.uint8
    with (copy / "train.csv").open("a") as f:
        f.write("train/n00000000/n00000000_train_00000.JPEG,0,n00000000\n")
    with pytest.raises(DwnasError, match="train.csv"):
        build_train_loader(copy, 4, 24, workers=0, seed=0)
    assert len(build_train_loader(copy, 4, 24, workers=0, seed=0, packed=False).dataset) == 25


def test_root_override_after_moving_the_images(prepared, tmp_path):
    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy, ignore=shutil.ignore_patterns("packed"))
    raw = Path(prepared).parent / "raw"
    moved = tmp_path / "moved"
    shutil.copytree(raw, moved)
    loader = build_eval_loader(copy, "val", 4, 24, workers=0, root=moved)
    assert len(batches(loader)) == 3
    with pytest.raises(DwnasError, match="nowhere"):
        build_eval_loader(copy, "val", 4, 24, workers=0, root=tmp_path / "nowhere")


def test_num_classes(prepared):
    assert num_classes(prepared) == CLASSES
