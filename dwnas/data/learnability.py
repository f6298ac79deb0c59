"""Is the embedded dataset a fair task? A small CNN must learn it, a linear model on pixels must not.

Both models train on the decoded images of a prepared directory (train split) and are scored on
its val split, with the same budget of epochs, so the gap measures how much the task needs spatial
feature learning rather than colour or position statistics.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def load_split(prepared_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image of ``split`` into uint8 (N, 3, H, W) plus int64 labels."""
    from PIL import Image

    from dwnas.data.manifest import dataset_root, read_manifest

    prepared_dir = Path(prepared_dir)
    root = dataset_root(prepared_dir)
    manifest = read_manifest(prepared_dir, split)
    images = []
    for rel in manifest.paths:
        with Image.open(root / rel.decode()) as im:
            images.append(np.asarray(im.convert("RGB")))
    return np.stack(images).transpose(0, 3, 1, 2).copy(), manifest.labels.copy()


def small_cnn(num_classes: int):
    """Seven conv-BN-ReLU layers in four pooled stages (16-32-64-64 channels), global average
    pooling, a linear head: about 140k weights."""
    import torch.nn as nn

    def conv(cin, cout):
        return [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]

    return nn.Sequential(
        *conv(3, 16),
        nn.MaxPool2d(2),
        *conv(16, 32),
        *conv(32, 32),
        nn.MaxPool2d(2),
        *conv(32, 64),
        *conv(64, 64),
        nn.MaxPool2d(2),
        *conv(64, 64),
        *conv(64, 64),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def linear_model(num_classes: int, image_shape: tuple[int, int, int]):
    """Multinomial logistic regression on raw pixels."""
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(image_shape)), num_classes))


def _normalise(x):
    return (x.float() / 255.0 - 0.5) / 0.25


def fit_and_score(
    model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int = 64,
    seed: int = 0,
    flip: bool = True,
) -> dict:
    """Train with AdamW and a cosine schedule; return val top-1, train top-1 and seconds."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    x_val, y_val = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * (len(x_train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=gen)
        for b in range(len(x_train) // batch_size):
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb = _normalise(x_train[idx])
            if flip:
                mask = torch.rand(len(idx), generator=gen) < 0.5
                xb[mask] = xb[mask].flip(-1)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start

    def accuracy(x, y):
        model.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, len(x), 256):
                correct += (model(_normalise(x[s : s + 256])).argmax(1) == y[s : s + 256]).sum()
        return float(correct) / len(x)

    return {
        "val_top1": accuracy(x_val, y_val),
        "train_top1": accuracy(x_train, y_train),
        "train_seconds": seconds,
        "epochs": epochs,
    }


def evaluate(
    prepared_dir: str | Path, cnn_epochs: int = 12, linear_epochs: int = 12, seed: int = 0
) -> dict:
    """Train the small CNN and the linear model on a prepared directory; report both."""
    import torch

    train = load_split(prepared_dir, "train")
    val = load_split(prepared_dir, "val")
    classes = int(max(train[1].max(), val[1].max())) + 1
    torch.manual_seed(seed)
    cnn = fit_and_score(
        small_cnn(classes), train, val, cnn_epochs, lr=3e-3, weight_decay=5e-4, seed=seed
    )
    torch.manual_seed(seed)
    linear = fit_and_score(
        linear_model(classes, train[0].shape[1:]),
        train,
        val,
        linear_epochs,
        lr=1e-3,
        weight_decay=1e-2,
        seed=seed,
        flip=False,
    )
    return {
        "classes": classes,
        "train_images": len(train[1]),
        "val_images": len(val[1]),
        "image_size": int(train[0].shape[-1]),
        "chance": 1.0 / classes,
        "cnn": cnn,
        "linear": linear,
    }
