"""The train stages as library functions: :func:`run` trains the supernet or its elastic
successor, :func:`sweep` measures accuracy against resolution.

Data flow: the prepared images and a recipe (the params section ``train.<stage>``) feed the
:class:`~dwnas.train.engine.Trainer` (sandwich rule; the elastic stage draws each step's
resolution from a range and starts from the supernet's checkpoint); each epoch's metrics go to
the stage's MLflow run as they come, so tracking lives here rather than in the command. The
sweep evaluates the largest and smallest subnets of a trained checkpoint at every resolution of
a range (BN recalibrated, :func:`~dwnas.train.evaluate.evaluate_subnet`).

Both run in the calling process: ``--nproc`` (torchrun, one process per rank) is the command's
business (:func:`dwnas.cli.relaunch_under_torchrun`); :func:`run` reads the rank from the
environment torchrun sets.
"""

from __future__ import annotations

from pathlib import Path


def run(*, stage: str, prepared: str | Path, recipe: dict, resolution: tuple[int, int],
        out: str | Path, summary: str | Path, space: dict | None = None,
        init: str | Path | None = None, seed: int = 0, workers: int = 0,
        calib_images: int = 500, val_images: int | None = None, eval_batch: int = 128,
        resume: bool = True) -> dict:
    """Train ``stage`` (``supernet``: ``space`` from scratch at one resolution; ``elastic``: from
    the checkpoint ``init`` over the range ``resolution``) with ``recipe`` (the params section
    ``train.<stage>``); write the checkpoint ``out`` and the JSON ``summary``, log the MLflow run
    ``train_<stage>`` (only rank 0 logs) and return the summary."""
    import os

    from dwnas import track
    from dwnas.config import range_problems
    from dwnas.errors import DwnasError
    from dwnas.train.engine import Trainer, TrainJob
    from dwnas.train.recipe import Recipe

    for problem in range_problems("resolution", *resolution):
        raise DwnasError(problem)
    if resolution[0] < 16:
        raise DwnasError(f"resolution: min must be >= 16 (got {resolution[0]})")
    training = Recipe.from_params(recipe, where=f"train.{stage}")
    if init is not None and not Path(init).is_file():
        raise DwnasError(f"--init {init}: checkpoint not found")
    job = TrainJob(
        stage=stage, prepared=Path(prepared), out=Path(out), summary=Path(summary),
        recipe=training, seed=seed, resolution=resolution, space=space,
        init=Path(init) if init else None, workers=workers,
        calib_images=calib_images, val_images=val_images, eval_batch=eval_batch,
        resume=resume,
    )
    if os.environ.get("RANK", "0") != "0":
        os.environ["DWNAS_TRACKING"] = "0"
    run_params = {"recipe": recipe, "resolution": list(resolution), "seed": seed,
                  "init": init, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    with track.stage_run(f"train_{stage}", run_params) as tracked:
        trainer = Trainer(job, on_epoch=lambda m, step: tracked.log_metrics(m, step=int(m["epoch"])))
        try:
            result = trainer.run()
        finally:
            trainer.ctx.close()
        tracked.log_metrics({"final": result["final"]})
        tracked.log_artifact(job.summary)
    return result


def sweep(*, checkpoint: str | Path, prepared: str | Path, resolutions: tuple[int, int, int],
          label: str, out: str | Path, seed: int = 0, calib_images: int = 500,
          val_images: int | None = None, eval_batch: int = 128) -> dict:
    """Top-1 of the largest and smallest subnets of ``checkpoint`` at each resolution of
    ``resolutions`` (min, max, step); write the JSON ``out`` (the curve ``label``), log the MLflow
    run ``sweep_<label>`` and return the summary."""
    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.io import write_json
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.train.evaluate import ImageBank, evaluate_subnet

    lo, hi, step = resolutions
    if lo > hi or step < 1:
        raise DwnasError(f"--resolutions {lo}:{hi}:{step}: need min <= max and step >= 1")
    model, _ = load_supernet(checkpoint)
    space = model.space
    sizes = list(range(lo, hi + 1, step))
    calib = ImageBank.load(prepared, "train", hi, calib_images, seed)
    val = ImageBank.load(prepared, "val", hi, val_images, seed)
    rows = []
    for name, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        for res in sizes:
            acc = evaluate_subnet(model, arch.with_resolution(res), res, calib, val, eval_batch)
            rows.append({"label": label, "subnet": name, "resolution": res, **acc})
    spread = {name: max(r["top1"] for r in rows if r["subnet"] == name)
              - min(r["top1"] for r in rows if r["subnet"] == name)
              for name in ("largest", "smallest")}
    summary = {"label": label, "checkpoint": str(checkpoint), "rows": rows, "top1_spread": spread}
    write_json(out, summary)
    track.log_stage(f"sweep_{label}", {"resolutions": sizes, "label": label},
                    {"top1_spread": spread}, [out])
    return summary
