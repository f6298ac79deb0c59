"""The usual training-recipe parts, built from a params section: optimiser, schedule, loss."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from dwnas.errors import DwnasError

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters shared by the supernet and the elastic stage."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    warmup_epochs: float
    label_smoothing: float
    grad_clip: float | None
    subnets_per_step: int
    distill: bool
    linearize_epochs: float
    checkpoint_every: int
    crop_scale: tuple[float, float]  # RandomResizedCrop's area range: (0.08, 1) on ImageNet
    hflip: bool = True  # random horizontal flips; off where a mirror image changes the class (digits)

    OPTIONAL = ("hflip",)

    @classmethod
    def from_params(cls, section: dict, where: str = "train") -> Recipe:
        known = {f.name for f in fields(cls)}
        missing = sorted(known - set(section) - set(cls.OPTIONAL))
        if missing:
            raise DwnasError(f"{where}: missing keys {missing}")
        values = {k: section[k] for k in known if k in section}
        values["crop_scale"] = tuple(values["crop_scale"])
        recipe = cls(**values)
        recipe.check(where)
        return recipe

    def check(self, where: str = "train") -> None:
        """Reject inconsistent settings with the offending key named (the CLI bypasses the schema)."""
        problems = []
        if self.epochs < 1:
            problems.append(f"{where}.epochs: must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"{where}.batch_size: must be >= 1 (got {self.batch_size})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"{where}.optimizer: unknown optimiser {self.optimizer!r}, use one of {OPTIMIZERS}")
        if not self.lr > 0:
            problems.append(f"{where}.lr: must be > 0 (got {self.lr})")
        if self.subnets_per_step < 1:
            problems.append(f"{where}.subnets_per_step: must be >= 1 (got {self.subnets_per_step})")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"{where}.grad_clip: must be > 0 or null (got {self.grad_clip})")
        scale = self.crop_scale
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            problems.append(f"{where}.crop_scale: must be [min, max] with 0 < min <= max <= 1 "
                            f"(got {list(self.crop_scale)})")
        if not isinstance(self.hflip, bool):
            problems.append(f"{where}.hflip: must be true or false (got {self.hflip!r})")
        if problems:
            raise DwnasError("; ".join(problems))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only: BN parameters and biases (any 1-d tensor) skip it."""
    decay, no_decay = [], []
    for _, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0)
    return torch.optim.AdamW(groups, lr=recipe.lr)


def build_scheduler(optimizer, recipe: Recipe, steps_per_epoch: int):
    """Linear warm-up then cosine decay to zero, stepped once per optimiser step."""
    total = max(1, recipe.epochs * steps_per_epoch)
    warmup = min(total - 1, int(recipe.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def linear_alpha(recipe: Recipe, epoch_float: float) -> float:
    """Progressive linearisation: blocks chosen linear blend act -> identity over the first epochs."""
    if recipe.linearize_epochs <= 0:
        return 1.0
    return min(1.0, epoch_float / recipe.linearize_epochs)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy against the (detached) largest subnet's predictions: in-place distillation."""
    soft = teacher_logits.detach().float().softmax(dim=1)
    return -(soft * student_logits.float().log_softmax(dim=1)).sum(dim=1).mean()
