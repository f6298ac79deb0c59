"""Training and evaluation loaders over a prepared directory, at one resolution.

A loader yields every batch at the resolution it was built for. Elastic resolution is not the
loader's business: ``dwnas train elastic`` loads at the largest resolution and resizes each batch
on the device (:mod:`dwnas.train.engine`), so workers never need to know a step's resolution.

:class:`DeterministicBatchSampler` yields, for each batch, a list of ``(index, sample_seed)`` keys;
the datasets' ``__getitem__`` takes such a key. Determinism: the shuffle is a function of
``(seed, epoch)``; each sample's augmentation is drawn
from a torch RNG seeded by ``(seed, epoch, index)`` inside ``torch.random.fork_rng`` (so the caller's
RNG is untouched with ``workers=0``). The same ``(seed, epoch)`` therefore gives the same batches,
pixel for pixel, whatever the number of workers, and a run resumed at epoch ``e`` sees what an
uninterrupted run would have seen.

Images come from the JPEG files (decoded with Pillow) or, when present, from the packed copy
(:mod:`dwnas.data.pack`), which skips decoding. Transforms follow the usual ImageNet recipe with
torchvision.transforms.v2: train ``RandomResizedCrop(res) + RandomHorizontalFlip`` (the flip optional), eval
``Resize(int(res / 0.875)) + CenterCrop(res)``, then scaling to [0, 1] and ImageNet normalisation.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dwnas.data.manifest import Manifest, dataset_root, num_classes, read_manifest
from dwnas.errors import DwnasError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EVAL_CROP_RATIO",
    "DeterministicBatchSampler",
    "EpochDataLoader",
    "JpegImages",
    "PackedImages",
    "build_eval_loader",
    "build_train_loader",
    "eval_transform",
    "num_classes",
    "train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_RATIO = 0.875
IMAGENET_CROP_SCALE = (0.08, 1.0)  # RandomResizedCrop's area range, as in torchvision's recipes
_MASK64 = (1 << 64) - 1


def _mix(*values: int) -> int:
    """A 63-bit hash of integers (SplitMix64 steps): cheap, stable across runs and platforms."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & _MASK64)) & _MASK64
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state >> 1


def _resolution(resolution) -> int:
    """A loader's one resolution: a positive int (a range would be elastic resolution, which
    training does on the device)."""
    if isinstance(resolution, Sequence | np.ndarray) or int(resolution) < 1:
        raise DwnasError(f"resolution must be a positive int (got {resolution!r})")
    return int(resolution)


class DeterministicBatchSampler(Sampler):
    """Batches of ``(index, sample_seed)`` keys, a pure function of ``(seed, epoch)``.

    Shuffled by ``(seed, epoch)`` (or in index order) and sharded over ``world_size`` ranks as
    DistributedSampler does (every rank gets the same number of batches; without ``drop_last`` the
    index list is padded by wrapping around). ``sample_seed`` seeds that sample's augmentation.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise DwnasError(f"batch_size must be >= 1 (got {batch_size})")
        if not 0 <= rank < world_size:
            raise DwnasError(f"rank {rank} is outside world_size {world_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (and redraw augmentations) for ``epoch``."""
        self.epoch = epoch

    def _rank_indices(self) -> np.ndarray:
        n = self.num_samples
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        else:
            order = np.arange(n)
        if self.world_size > 1:
            if self.drop_last:
                order = order[: n - n % self.world_size]
            elif n % self.world_size:
                order = np.resize(order, n + self.world_size - n % self.world_size)
            order = order[self.rank :: self.world_size]
        return order

    def __len__(self) -> int:
        per_rank = len(self._rank_indices())
        if self.drop_last:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices = self._rank_indices()
        for b in range(len(self)):
            chunk = indices[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(int(i), _mix(self.seed, self.epoch, int(i))) for i in chunk]


def train_transform(resolution: int, pil_input: bool = True,
                    crop_scale: tuple[float, float] = IMAGENET_CROP_SCALE, hflip: bool = True):
    """RandomResizedCrop (area fraction in ``crop_scale``) + horizontal flip (``hflip``: off
    where a mirror image changes the class, as for digits) + float + ImageNet normalisation at
    ``resolution``."""
    from torchvision.transforms import v2

    steps = [v2.RandomResizedCrop(resolution, scale=tuple(crop_scale), antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalised_tensor(pil_input))


def eval_transform(resolution: int, pil_input: bool = True):
    """Resize(int(res / 0.875)) + CenterCrop(res) + float + ImageNet normalisation."""
    from torchvision.transforms import v2

    steps = [
        v2.Resize(int(resolution / EVAL_CROP_RATIO), antialias=True),
        v2.CenterCrop(resolution),
    ]
    return v2.Compose(steps + _to_normalised_tensor(pil_input))


def _to_normalised_tensor(pil_input: bool) -> list:
    from torchvision.transforms import v2

    head = [v2.ToImage()] if pil_input else []
    return head + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def _parse_key(key) -> tuple[int, int | None]:
    """``(index, sample_seed)`` from a sampler's key, or a bare index (no seeded augmentation)."""
    if isinstance(key, tuple | list):
        return int(key[0]), (int(key[1]) if key[1] is not None else None)
    return int(key), None


class _ResolutionDataset(Dataset):
    """Shared logic: a key -> (image tensor at the dataset's resolution, label)."""

    pil_input = True

    def __init__(self, labels: np.ndarray, train: bool, resolution: int,
                 crop_scale: tuple[float, float] = IMAGENET_CROP_SCALE, hflip: bool = True):
        # Import here, in the parent: forked workers then inherit it instead of each paying the
        # multi-second torchvision import on their first item.
        import torchvision.transforms.v2  # noqa: F401

        self.labels = labels
        self.train = train
        self.resolution = resolution
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self._built = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def transform(self):
        """The train or eval transform at ``resolution``, built on first use (in each worker)."""
        if self._built is None:
            if self.train:
                self._built = train_transform(self.resolution, self.pil_input, self.crop_scale,
                                              self.hflip)
            else:
                self._built = eval_transform(self.resolution, self.pil_input)
        return self._built

    def _load(self, index: int):
        raise NotImplementedError

    def __getitem__(self, key):
        index, seed = _parse_key(key)
        image = self._load(index)
        transform = self.transform
        if self.train and seed is not None:
            with torch.random.fork_rng(devices=[]):
                # Only the CPU generator: torch.manual_seed would also queue CUDA seeding.
                torch.default_generator.manual_seed(seed)
                out = transform(image)
        else:
            out = transform(image)
        return out, int(self.labels[index])


class JpegImages(_ResolutionDataset):
    """Images decoded from the files listed in a manifest."""

    def __init__(self, manifest: Manifest, root: str | Path, train: bool, resolution: int = 224,
                 crop_scale: tuple[float, float] = IMAGENET_CROP_SCALE, hflip: bool = True):
        super().__init__(manifest.labels, train, resolution, crop_scale, hflip)
        self.paths = manifest.paths
        self.root = str(root)

    def _load(self, index: int):
        from PIL import Image

        path = f"{self.root}/{self.paths[index].decode()}"
        with Image.open(path) as im:
            if not self.train:
                # Decode at 1/2..1/8 scale when the eval resize would shrink that much anyway.
                side = int(self.resolution / EVAL_CROP_RATIO)
                im.draft("RGB", (side, side))
            return im.convert("RGB")


class PackedImages(_ResolutionDataset):
    """Images read from a packed split (a uint8 (N, S, S, 3) .npy file, memory-mapped)."""

    pil_input = False

    def __init__(
        self,
        npy_path: str | Path,
        labels: np.ndarray,
        train: bool,
        resolution: int = 224,
        rows: np.ndarray | None = None,
        crop_scale: tuple[float, float] = IMAGENET_CROP_SCALE,
        hflip: bool = True,
    ):
        super().__init__(labels, train, resolution, crop_scale, hflip)
        self.npy_path = str(npy_path)
        self.rows = rows  # row of the packed array for each dataset index (None: identity)
        self._array = None  # opened lazily in each worker: a memmap must not be pickled

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def _load(self, index: int):
        from torchvision import tv_tensors

        if self._array is None:
            self._array = np.load(self.npy_path, mmap_mode="r")
        row = index if self.rows is None else int(self.rows[index])
        pixels = torch.from_numpy(np.array(self._array[row]))
        return tv_tensors.Image(pixels.permute(2, 0, 1))


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed (itself from the
    loader's generator), for any code that uses them."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class EpochDataLoader(DataLoader):
    """A DataLoader over a :class:`DeterministicBatchSampler`: ``set_epoch`` picks the epoch's
    shuffle and augmentations, as DistributedSampler's does."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


def _packed_dir(prepared_dir: Path, packed) -> Path | None:
    if packed is False:
        return None
    if packed is None or packed is True:
        candidate = prepared_dir / "packed"
        if (candidate / "meta.json").is_file():
            return candidate
        if packed is True:
            raise DwnasError(
                f"{candidate} not found (run `dwnas data pack --prepared {prepared_dir}`)"
            )
        return None
    return Path(packed)


def _dataset(prepared_dir, split, train, resolution, root, packed, subset=None,
             crop_scale=IMAGENET_CROP_SCALE, hflip=True):
    from dwnas.data.pack import read_packed_meta

    prepared_dir = Path(prepared_dir)
    manifest = read_manifest(prepared_dir, split)
    if len(manifest) == 0:
        raise DwnasError(f"{prepared_dir / (split + '.csv')} lists no images")
    if subset is not None:
        manifest = Manifest(split, manifest.paths[subset], manifest.labels[subset])
    packed_dir = _packed_dir(prepared_dir, packed)
    if packed_dir is None:
        return JpegImages(manifest, dataset_root(prepared_dir, root), train, resolution, crop_scale,
                          hflip)
    meta = read_packed_meta(packed_dir, prepared_dir, split)
    needed = resolution if train else int(resolution / EVAL_CROP_RATIO)
    if needed > meta["size"]:
        warnings.warn(
            f"packed images are {meta['size']} px but {split} at resolution {resolution} needs "
            f"{needed} px: they will be upscaled",
            stacklevel=3,
        )
    return PackedImages(meta["path"], manifest.labels, train, resolution, rows=subset,
                        crop_scale=crop_scale, hflip=hflip)


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


def _loader(dataset, sampler, workers: int, seed: int) -> EpochDataLoader:
    return EpochDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )


def build_train_loader(
    prepared_dir: str | Path,
    batch_size: int,
    resolution: int,
    workers: int,
    seed: int,
    epoch: int = 0,
    drop_last: bool = True,
    root: str | Path | None = None,
    packed: bool | str | Path | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    crop_scale: tuple[float, float] = IMAGENET_CROP_SCALE,
    hflip: bool = True,
) -> EpochDataLoader:
    """Shuffled, augmented (images, labels) batches of the train split at ``resolution``.

    ``packed``: None uses ``prepared_dir/packed`` when it exists, False never, True requires
    it, a path names another pack. ``rank``/``world_size`` default to torch.distributed's when it is
    initialised. ``crop_scale``: RandomResizedCrop's range of crop area; ``hflip``: random
    horizontal flips. Call ``loader.set_epoch(e)`` before each epoch.
    """
    resolution = _resolution(resolution)
    dataset = _dataset(prepared_dir, "train", True, resolution, root, packed,
                       crop_scale=crop_scale, hflip=hflip)
    rank, world_size = _distributed(rank, world_size)
    sampler = DeterministicBatchSampler(
        len(dataset),
        batch_size,
        seed=seed,
        epoch=epoch,
        shuffle=True,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
    )
    if len(sampler) == 0:
        raise DwnasError(
            f"{prepared_dir}: {len(dataset)} train images give no full batch of {batch_size} "
            f"on each of {world_size} rank(s)"
        )
    return _loader(dataset, sampler, workers, seed)


def build_eval_loader(
    prepared_dir: str | Path,
    split: str,
    batch_size: int,
    resolution: int,
    workers: int,
    root: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    packed: bool | str | Path | None = None,
) -> EpochDataLoader:
    """Deterministic (images, labels) batches of ``split`` with the eval transform, in manifest
    order; ``limit`` keeps a random subset of that many images, chosen by ``seed``."""
    subset = None
    if limit is not None:
        total = len(read_manifest(prepared_dir, split))
        if limit < 1:
            raise DwnasError(f"limit must be >= 1 (got {limit})")
        if limit < total:
            subset = np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))
    dataset = _dataset(prepared_dir, split, False, _resolution(resolution), root, packed, subset)
    sampler = DeterministicBatchSampler(
        len(dataset), batch_size, seed=seed, shuffle=False, drop_last=False
    )
    return _loader(dataset, sampler, workers, seed)
