"""Stand-alone verification that a transformed network computes what the deep one does (RepVGG).

Freshly initialised batch norms (mean 0, var 1, gamma 1, beta 0) hide border and bias mistakes,
so :func:`verify_transform` first gives the deep network random BN statistics and affine
parameters, then transforms and compares. Errors are measured on the feature map before pooling
(every pixel, the border included) and on the logits, each relative to its own scale (the max
absolute value of the deep network's output), at several resolutions including odd ones.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

DEFAULT_RESOLUTIONS = (32, 33, 47)


@dataclass
class VerifyReport:
    """Per-resolution errors; ``max_abs_err`` / ``max_rel_err`` are the worst over all of them."""

    per_resolution: list[dict] = field(default_factory=list)

    @property
    def max_abs_err(self) -> float:
        return _worst(r["max_abs_err"] for r in self.per_resolution)

    @property
    def max_rel_err(self) -> float:
        return _worst(r["max_rel_err"] for r in self.per_resolution)

    def within(self, tolerance: float) -> bool:
        """True if the relative error is at most ``tolerance`` (a NaN error never is)."""
        return self.max_rel_err <= tolerance

    def to_dict(self) -> dict:
        return {"max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err,
                "per_resolution": self.per_resolution}


def _worst(values) -> float:
    """The maximum, NaN if any value is NaN (a network that outputs NaN never passes)."""
    values = list(values)
    return math.nan if any(math.isnan(v) for v in values) else max(values, default=0.0)


@torch.no_grad()
def randomize_bn_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d random running stats and affine parameters, in place.

    Non-zero means and betas make the expansion's zero response (the padding value) matter."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(t: Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) * (high - low) + low)

    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            uniform(m.running_mean, -0.5, 0.5)
            uniform(m.running_var, 0.5, 2.0)
            uniform(m.weight, 0.5, 1.5)
            uniform(m.bias, -0.5, 0.5)
    return net


def _errors(ref: Tensor, out: Tensor) -> tuple[float, float, float]:
    abs_err = (ref.double() - out.double()).abs().max().item()
    scale = ref.double().abs().max().item()
    return abs_err, abs_err / max(scale, 1e-30), scale


@torch.no_grad()
def verify(deep: nn.Module, shallow: nn.Module, resolutions: Sequence[int] = DEFAULT_RESOLUTIONS,
           batch: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32) -> VerifyReport:
    """Compare two networks on the same random inputs (both in eval mode, in ``dtype``).

    float64 checks the algebra alone: a trained network whose BN statistics leave a channel
    nearly constant (variance ~ 0) amplifies float32 rounding in both forms alike, which is no
    difference between them (copies are converted; the networks are left untouched).
    When both have ``features`` (a :class:`~dwnas.nn.static.StaticNet`) the feature maps before
    pooling are compared too; each resolution's error is the worse of features and logits."""
    if dtype != torch.float32:
        deep, shallow = copy.deepcopy(deep).to(dtype), copy.deepcopy(shallow).to(dtype)
    deep.eval()
    shallow.eval()
    gen = torch.Generator().manual_seed(seed)
    report = VerifyReport()
    for res in resolutions:
        x = torch.randn(batch, 3, int(res), int(res), generator=gen).to(dtype)
        entry = {"resolution": int(res)}
        abs_err, rel_err, scale = _errors(deep(x), shallow(x))
        entry.update(logits_abs_err=abs_err, logits_rel_err=rel_err, logits_scale=scale)
        if hasattr(deep, "features") and hasattr(shallow, "features"):
            f_abs, f_rel, f_scale = _errors(deep.features(x), shallow.features(x))
            entry.update(features_abs_err=f_abs, features_rel_err=f_rel, features_scale=f_scale)
            abs_err, rel_err = max(abs_err, f_abs), max(rel_err, f_rel)
        entry.update(max_abs_err=abs_err, max_rel_err=rel_err)
        report.per_resolution.append(entry)
    return report


def verify_transform(deep: nn.Module, resolutions: Sequence[int] = DEFAULT_RESOLUTIONS,
                     batch: int = 2, seed: int = 0,
                     transform_fn: Callable[[nn.Module], nn.Module] | None = None,
                     dtype: torch.dtype = torch.float32) -> VerifyReport:
    """RepVGG-style check of ``transform_fn`` (default :func:`~dwnas.transform.network`) on a
    copy of ``deep`` with randomised batch norms; ``deep`` itself is left untouched."""
    from dwnas.transform.network import transform

    fn = transform if transform_fn is None else transform_fn
    probe = randomize_bn_(copy.deepcopy(deep).eval(), seed)
    return verify(probe, fn(probe), resolutions, batch, seed, dtype)
