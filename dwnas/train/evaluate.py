"""Subnet evaluation with BN recalibration, on images held in memory and resized on the device.

A subnet's BN statistics are not the supernet's: before evaluating an (arch, resolution) we
re-estimate them on a fixed, seeded sample of training images at that resolution, as
Once-for-All does. Images are decoded once at the largest resolution (eval transform: resize to
res/0.875, centre crop) and resized per resolution on the device - this project's choice, which
makes a resolution sweep or a search cost forward passes only, not JPEG decoding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dwnas.io import write_json


@dataclass
class ImageBank:
    """Images (N, 3, R, R) decoded once at a base resolution, with their labels."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def load(cls, prepared: str | Path, split: str, resolution: int, limit: int | None,
             seed: int, workers: int = 0, batch_size: int = 128) -> ImageBank:
        from dwnas.data.loaders import build_eval_loader

        loader = build_eval_loader(prepared, split, batch_size=batch_size, resolution=resolution,
                                   workers=workers, limit=limit, seed=seed)
        images, labels = [], []
        for x, y in loader:
            images.append(x)
            labels.append(y)
        return cls(torch.cat(images), torch.cat(labels))

    def batches(self, resolution: int, batch_size: int, device: torch.device | str = "cpu"):
        """Yield (images, labels) at ``resolution``, resized on the device."""
        for start in range(0, len(self.labels), batch_size):
            x = self.images[start:start + batch_size].to(device, non_blocking=True)
            y = self.labels[start:start + batch_size].to(device, non_blocking=True)
            yield resize_batch(x, resolution), y


def resize_batch(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a batch to ``resolution`` x ``resolution`` (bilinear, antialiased when shrinking)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    shrink = resolution < images.shape[-1]
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                         align_corners=False, antialias=shrink)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, bank: ImageBank, resolution: int, batch_size: int,
                   device: torch.device | str = "cpu") -> None:
    """Replace every BN layer's running statistics by exact averages over ``bank`` at ``resolution``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
    model.train()
    # momentum 1/(k+1) at batch k makes the running average the exact mean over all batches
    # (what momentum=None does in nn.BatchNorm2d, spelled out for the functional BN path too)
    for k, (x, _) in enumerate(bank.batches(resolution, batch_size, device)):
        for bn in bns:
            bn.momentum = 1.0 / (k + 1)
        model(x)
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, bank: ImageBank, resolution: int, batch_size: int,
             device: torch.device | str = "cpu") -> dict:
    """Top-1 / top-5 accuracy of ``model`` (an ``nn.Module``, put in eval mode, or any callable,
    e.g. an exported file's runner) on ``bank`` at ``resolution``."""
    if isinstance(model, nn.Module):
        model.eval()
    correct1 = correct5 = total = 0
    for x, y in bank.batches(resolution, batch_size, device):
        logits = model(x)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        total += len(y)
    return {"top1": correct1 / max(total, 1), "top5": correct5 / max(total, 1), "n": total}


def evaluate_subnet(supernet, arch, resolution: int, calib: ImageBank, val: ImageBank,
                    batch_size: int = 128, device: torch.device | str = "cpu") -> dict:
    """Extract ``arch`` as a static network, recalibrate its BN at ``resolution``, measure accuracy."""
    subnet = supernet.subnet(arch).to(device)
    recalibrate_bn(subnet, calib, resolution, batch_size, device)
    return accuracy(subnet, val, resolution, batch_size, device)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class EvalData:
    """Calibration and validation images of a prepared dataset, decoded once at a bank resolution
    and resized per evaluation: the one way every reported top-1 is taken (search, transform,
    baselines), so that an exported network is evaluated exactly as it was reported."""

    calib: ImageBank
    val: ImageBank
    batch_size: int

    @classmethod
    def load(cls, prepared: str | Path, resolution: int, calib_images: int,
             val_images: int | None, seed: int, batch_size: int) -> EvalData:
        return cls(ImageBank.load(prepared, "train", resolution, calib_images, seed),
                   ImageBank.load(prepared, "val", resolution, val_images, seed), batch_size)

    def calibrate(self, model: nn.Module, resolution: int) -> nn.Module:
        """Re-estimate ``model``'s BN statistics at ``resolution`` in place (momenta kept)."""
        recalibrate_bn(model.to(default_device()), self.calib, resolution, self.batch_size,
                       default_device())
        return model

    def accuracy(self, model: nn.Module, resolution: int) -> dict:
        """Top-1/top-5 of ``model`` after :meth:`calibrate`: the statistics it is evaluated with
        are the ones it keeps, so an exported network is the evaluated one."""
        return self._score(model, resolution, self.val)

    def train_accuracy(self, model: nn.Module, resolution: int) -> dict:
        """Top-1/top-5 on the calibration images (a sample of the *training* split): a check
        that can steer a procedure without looking at the validation split."""
        return self._score(model, resolution, self.calib)

    def _score(self, model: nn.Module, resolution: int, bank: ImageBank) -> dict:
        self.calibrate(model, resolution)
        result = accuracy(model, bank, resolution, self.batch_size, default_device())
        model.cpu()
        return result


class EvalCache:
    """Accuracies keyed by (checkpoint digest, arch JSON, resolution), persisted as JSON."""

    def __init__(self, path: str | Path | None, checkpoint_id: str):
        self.path = Path(path) if path else None
        self.checkpoint_id = checkpoint_id
        self.entries: dict[str, dict] = {}
        if self.path and self.path.is_file():
            self.entries = json.loads(self.path.read_text())

    def key(self, arch, resolution: int) -> str:
        return f"{self.checkpoint_id}|{arch.to_json()}|{resolution}"

    def get(self, arch, resolution: int) -> dict | None:
        return self.entries.get(self.key(arch, resolution))

    def put(self, arch, resolution: int, result: dict) -> None:
        self.entries[self.key(arch, resolution)] = result

    def save(self) -> None:
        if self.path:
            write_json(self.path, self.entries)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (the identity of a checkpoint in caches)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]
