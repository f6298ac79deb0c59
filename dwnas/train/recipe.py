"""The usual training-recipe parts, built from a params section: optimiser, schedule, loss."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from dwnas.config import ParamsError, recipe_problems, section_problems


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

    @classmethod
    def from_params(cls, section: dict, where: str = "train") -> Recipe:
        """The recipe of a params section, held to the schema's ``$defs/recipe`` and the recipe
        rules of ``dwnas params check`` (the CLI hands sections over as JSON, past the file check);
        raises ParamsError naming every problem by key path. Keys that are no field are ignored."""
        problems = section_problems(section, "$defs/recipe", where) or recipe_problems(section, where)
        if problems:
            raise ParamsError(None, problems)
        values = {f.name: section[f.name] for f in fields(cls) if f.name in section}
        values["crop_scale"] = tuple(values["crop_scale"])
        return cls(**values)


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
