"""MobileNetV2 (Sandler et al., 2018) as a one-architecture space, trained by the supernet Trainer.

torchvision's MobileNetV2 is a member of the project's space family (same ``make_divisible``
channel rounding, same macro structure), so a space whose every choice list has one value *is*
MobileNetV2 at that width and resolution: the :class:`~dwnas.nn.supernet.Supernet` of it is a
static network, the Trainer's sandwich degenerates to that one subnet (``subnets_per_step: 1``),
and its checkpoint feeds ``dwnas transform`` like any other. :func:`torchvision_check` compares
parameters and MACs with torchvision's own model, counted by the same counter.
"""

from __future__ import annotations

from dwnas.errors import DwnasError

# (output channels, stride, blocks) of the expand-6, kernel-3 stages: torchvision's
# inverted_residual_setting after the first (expand 1, 16 channels) block.
STAGES = ((24, 2, 2), (32, 2, 3), (64, 2, 4), (96, 1, 3), (160, 2, 3), (320, 1, 1))


def variant_label(width: float, resolution: int) -> str:
    """File-name-safe name of one variant, e.g. ``w0.5_r64``."""
    return f"w{width:g}_r{int(resolution)}"


def parse_variant(label: str) -> tuple[float, int]:
    try:
        width, resolution = label.split("_")
        if not (width.startswith("w") and resolution.startswith("r")):
            raise ValueError(label)
        return float(width[1:]), int(resolution[1:])
    except ValueError as exc:
        raise DwnasError(f"MobileNetV2 variant {label!r}: expected w<width>_r<resolution>, "
                         "e.g. w0.5_r64") from exc


def space_section(width: float, resolution: int) -> dict:
    """The params ``space`` section whose only architecture is MobileNetV2 at ``width``."""
    if not width > 0:
        raise DwnasError(f"MobileNetV2 width multiplier must be > 0 (got {width})")
    if resolution < 16:
        raise DwnasError(f"MobileNetV2 resolution must be >= 16 (got {resolution})")
    return {
        "width_mult": float(width),
        "stem_channels": 32,
        "first_block": {"channels": 16, "expand": 1, "kernel": 3},
        "stages": [{"channels": c, "stride": s, "depths": [n], "kernels": [3], "expands": [6]}
                   for c, s, n in STAGES],
        "head_channels": 1280,
        "linear": [False],
        "resolution": {"min": int(resolution), "max": int(resolution), "step": 1},
    }


def torchvision_check(net, width: float, resolution: int, num_classes: int) -> dict:
    """Parameters and MACs of ``net`` against ``torchvision.models.mobilenet_v2`` (same width and
    classes), both counted by :func:`dwnas.nn.counters.count`. ``available: false`` with a reason
    when torchvision cannot be imported; a mismatch raises."""
    from dwnas.nn.counters import count

    try:
        from torchvision.models import mobilenet_v2
    except Exception as exc:  # a torchvision wheel that cannot load its ops raises many types
        return {"available": False, "reason": f"torchvision not importable: {exc}"}
    reference = count(mobilenet_v2(width_mult=width, num_classes=num_classes), resolution)
    ours = count(net, resolution)
    result = {"available": True, "params": ours.params, "macs": ours.macs,
              "torchvision_params": reference.params, "torchvision_macs": reference.macs,
              "depth": ours.depth, "torchvision_depth": reference.depth}
    if (ours.params, ours.macs) != (reference.params, reference.macs):
        raise DwnasError(f"MobileNetV2 w{width:g} at {resolution} px differs from torchvision's: "
                         f"{ours.params} vs {reference.params} parameters, {ours.macs} vs "
                         f"{reference.macs} MACs")
    return result
