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


def run(setup, *, width: float, resolution: int, recipe: dict, resume: bool = True) -> dict | None:
    """Train MobileNetV2 at ``width`` and ``resolution`` with the supernet Trainer (``recipe``: the
    params section ``baselines.mobilenetv2.recipe``; one process per rank under torchrun), check
    it against torchvision's and write ``setup.out`` (:func:`~dwnas.baselines.common.finish`).
    Returns the summary; None on a rank other than 0, which only trains."""
    import os
    import shutil
    from pathlib import Path

    from dwnas import track
    from dwnas.baselines.common import finish, recipe_of, work_dir
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.train.engine import Trainer, TrainJob

    variant = variant_label(width, resolution)
    section = space_section(width, resolution)
    training = recipe_of(recipe, "baselines.mobilenetv2.recipe", single_path=True,
                         single_process=False)
    out = Path(setup.out)
    work = work_dir(out)
    job = TrainJob(stage=f"mobilenetv2 {variant}", prepared=Path(setup.prepared),
                   out=work / "weights.pt", summary=work / "train.json", recipe=training,
                   seed=setup.seed, resolution=(resolution, resolution), space=section,
                   workers=setup.workers, calib_images=setup.calib_images,
                   val_images=setup.val_images, eval_batch=setup.eval_batch, resume=resume)
    main_rank = os.environ.get("RANK", "0") == "0"
    if not main_rank:
        os.environ["DWNAS_TRACKING"] = "0"
    params = {"width": width, "resolution": resolution, "recipe": recipe, "seed": setup.seed}
    with track.stage_run("baseline_mobilenetv2", params) as stage:
        trainer = Trainer(job, on_epoch=lambda m, step: stage.log_metrics(m, step=int(m["epoch"])))
        try:
            trained = trainer.run()
        finally:
            trainer.ctx.close()
        if not main_rank:
            return None
        supernet, ckpt = load_supernet(job.out)
        arch = supernet.space.largest()
        net = supernet.subnet(arch).eval()
        check = torchvision_check(net, width, resolution, ckpt["num_classes"])
        summary = finish("mobilenetv2", variant, net, setup, resolution,
                         evaluation=setup.eval_data(resolution),
                         description=arch.to_dict(),
                         extra_files={"weights.pt": lambda p: shutil.copy2(job.out, p)},
                         summary_extra={"width": width, "torchvision": check,
                                        "epochs": training.epochs, "train": trained,
                                        "images_seen": trained["images_seen_total"]},
                         params=params, run=stage)
    shutil.rmtree(work, ignore_errors=True)
    return summary
