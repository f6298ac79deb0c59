"""What every baseline shares, so that its row of the report is produced like Double-Win's.

* :func:`fit`: a small static-network training loop with the project's recipe (optimiser,
  warm-up + cosine schedule, label smoothing, gradient clipping), optionally distilling from a
  teacher and calling a hook per step (progressive linearisation, single-path sampling). Used where
  the supernet :class:`~dwnas.train.engine.Trainer` does not fit: DepthShrinker's fine-tuning, ODN's
  growing networks, HURRICANE's single-path supernet. Single process.
* evaluation (:class:`dwnas.train.evaluate.EvalData`) and export
  (:func:`dwnas.transform.deploy.export_network`) are Double-Win's own, so a baseline's exported
  files are evaluated and verified exactly as a searched network's.
* :func:`log_row`: the one MLflow run (stage ``baseline_<method>``, tags method and budget) that
  carries what the report's main table reads: ``results.<variant>.top1`` and the transform figures.
* :class:`Setup` (what every method's ``run`` takes besides its own settings), :func:`recipe_of`
  (a params recipe section, checked for the method) and :func:`finish` (the output folder every
  method writes, through Double-Win's export path, and its row).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dwnas.errors import DwnasError
from dwnas.transform.deploy import ROW_KEYS


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Setup:
    """What every baseline stage takes besides its method's settings: the prepared dataset, the
    output folder, the seed, DataLoader workers, the evaluation (BN recalibration images,
    validation images, batch) and the export (runtimes, tolerance)."""

    prepared: str | Path
    out: str | Path
    seed: int = 0
    workers: int = 0
    calib_images: int = 500
    val_images: int | None = None
    eval_batch: int = 128
    tolerance: float = 1e-5
    runtimes: Sequence[str] = ("torch", "onnxruntime")

    def eval_data(self, resolution: int):
        """Double-Win's evaluation (:class:`~dwnas.train.evaluate.EvalData`) at ``resolution``."""
        from dwnas.train.evaluate import EvalData

        return EvalData.load(self.prepared, resolution, self.calib_images, self.val_images,
                             self.seed, self.eval_batch)


def recipe_of(section: dict, where: str, *, single_path: bool = False,
              single_process: bool = True):
    """The recipe of a params section; ``single_path``: one network per step (a static net, SPOS);
    ``single_process``: trained by :func:`fit`, so ``nproc`` must be 1."""
    from dwnas.train.recipe import Recipe

    if not isinstance(section, dict):
        raise DwnasError(f"{where}: must be a mapping (a training recipe)")
    recipe = Recipe.from_params(section, where=where)
    if single_path and recipe.subnets_per_step != 1:
        raise DwnasError(f"{where}.subnets_per_step: this network trains one path per step "
                         f"(got {recipe.subnets_per_step}); set 1")
    nproc = section.get("nproc", 1)
    if single_process and nproc != 1:
        raise DwnasError(f"{where}.nproc: this baseline trains in one process (got {nproc}); set 1")
    return recipe


# -- training ---------------------------------------------------------------------------------------
def images_seen(*histories: list[dict]) -> int:
    """Training images passed through the network over ``fit`` histories (the training budget
    the main table reports; docs/training.md "Training budget")."""
    return sum(int(epoch["images"]) for history in histories for epoch in history)


def fit(model: nn.Module, prepared: str | Path, recipe, resolution: int, seed: int, *,
        workers: int = 0, forward: Callable | None = None, teacher: nn.Module | None = None,
        on_step: Callable[[float], None] | None = None, desc: str = "fit") -> list[dict]:
    """Train ``model`` for ``recipe.epochs`` epochs at ``resolution``; returns per-epoch figures.

    ``forward(x, step)`` replaces ``model(x)`` (e.g. a sampled single path); with a ``teacher``
    and ``recipe.distill`` the loss is the soft cross-entropy to its predictions; ``on_step`` gets
    the fractional epoch before each step (e.g. to set a linearisation alpha).
    """
    from dwnas.data.loaders import build_train_loader
    from dwnas.progress import progress
    from dwnas.train.engine import seed_everything
    from dwnas.train.recipe import build_optimizer, build_scheduler, distillation_loss

    seed_everything(seed)
    dev = device()
    model.to(dev)
    if teacher is not None:
        teacher.to(dev).eval()
    loader = build_train_loader(prepared, recipe.batch_size, resolution=resolution,
                                workers=workers, seed=seed, crop_scale=recipe.crop_scale,
                                hflip=recipe.hflip)
    steps_per_epoch = len(loader)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    run = forward or (lambda x, step: model(x))
    history, step = [], 0
    for epoch in range(recipe.epochs):
        loader.set_epoch(epoch)
        model.train()
        total, images, started = 0.0, 0, time.monotonic()
        for batch, (x, y) in enumerate(progress(loader, total=steps_per_epoch,
                                                desc=f"{desc} epoch {epoch + 1}/{recipe.epochs}")):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if on_step is not None:
                on_step(epoch + batch / steps_per_epoch)
            logits = run(x, step)
            if teacher is not None and recipe.distill:
                with torch.no_grad():
                    target = teacher(x)
                loss = distillation_loss(logits, target)
            else:
                loss = criterion(logits.float(), y)
            if not torch.isfinite(loss):
                raise DwnasError(f"{desc}: non-finite loss ({loss.item()}) at step {step} (epoch "
                                 f"{epoch + 1}); lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            total += loss.item() * len(y)
            images += len(y)
        seconds = time.monotonic() - started
        history.append({"epoch": epoch + 1, "loss": total / max(images, 1), "images": images,
                        "lr": optimizer.param_groups[0]["lr"],
                        "images_per_s": images / max(seconds, 1e-9)})
        log(f"{desc} epoch {epoch + 1}/{recipe.epochs}: loss {history[-1]['loss']:.4g}, "
            f"{history[-1]['images_per_s']:.0f} img/s")
    return history


# -- the report's row -------------------------------------------------------------------------------
def row_metrics(variant: str, accuracy: dict, transform: dict) -> dict:
    """The metrics a row of the main table joins on (``results.<variant>.top1`` + figures)."""
    return {"results": {variant: {"top1": accuracy["top1"], "top5": accuracy["top5"]}},
            **{key: transform[key] for key in ROW_KEYS}}


def log_row(method: str, variant: str, params: dict, metrics: dict, artifacts: list[Path],
            run=None) -> None:
    """Record the baseline's row: a stage run ``baseline_<method>`` tagged with method and budget
    (the variant). ``run``: an already open stage run (one that logged training curves)."""
    from dwnas import track

    tags = {"dwnas.method": method, "dwnas.budget": variant}
    if run is not None:
        run.set_tags(tags)
        run.log_metrics(metrics)
        for path in artifacts:
            run.log_artifact(path)
        return
    with track.stage_run(f"baseline_{method}", params) as opened:
        log_row(method, variant, params, metrics, artifacts, opened)


def finish(method: str, variant: str, net, setup: Setup, resolution: int, *, evaluation,
           description: dict, extra_files: dict, summary_extra: dict, params: dict, run=None,
           space_fingerprint: str | None = None) -> dict:
    """Write the output folder (weights, the network's description - ``arch.json`` for an
    architecture of a space, ``config.json`` otherwise -, the deploy files of every runtime,
    transform.json, summary.json) through Double-Win's own export path, which recalibrates,
    exports and evaluates the exported files; log the report's row; return the summary."""
    from dwnas.io import atomic_dir, torch_save, write_json
    from dwnas.transform.deploy import export_network

    out = Path(setup.out)
    with atomic_dir(out) as tmp:
        for name, writer in extra_files.items():
            writer(tmp / name)
        figures = export_network(net, tmp, resolution, evaluation, setup.runtimes, setup.tolerance,
                                 setup.seed)
        if "weights.pt" not in extra_files:  # the recalibrated weights, as exported
            torch_save(static_weights(net), tmp / "weights.pt")
        is_arch = set(description) == {"stages", "resolution"}
        write_json(tmp / ("arch.json" if is_arch else "config.json"), description)
        write_json(tmp / "transform.json", {"method": method, "variant": variant, **figures,
                                            "space_fingerprint": space_fingerprint})
        accuracy = {"top1": figures["top1"]["evaluated"], "top5": figures["top5"]}
        summary = {"method": method, "variant": variant, "resolution": int(resolution),
                   "top1": accuracy["top1"], "top5": accuracy["top5"],
                   **{key: figures[key] for key in ROW_KEYS}, **summary_extra}
        write_json(tmp / "summary.json", summary)
    log_row(method, variant, params, {**row_metrics(variant, accuracy, figures),
                                      **_numeric(summary_extra)},
            [out / "summary.json", out / "transform.json"], run)
    log(f"{out}: {method} {variant}: top-1 {accuracy['top1']:.4f} (files: "
        + ", ".join(f"{k} {v:.4f}" for k, v in figures["top1"].items() if k != "evaluated")
        + f"), depth {figures['layers_deep']} -> {figures['layers_shallow']}, MACs "
        f"{figures['macs_deep'] / 1e6:.2f} M -> {figures['macs_shallow'] / 1e6:.2f} M, max rel err "
        f"{figures['max_rel_err']:.2e}")
    return summary


def static_weights(net) -> dict:
    """A static network's weights with the config that rebuilds its structure."""
    return {"format": "dwnas-static", "config": net.config(), "state_dict": net.state_dict()}


def _numeric(data: dict) -> dict:
    """The scalar numbers of a summary section (history lists stay in the JSON)."""
    return {k: v for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def work_dir(out: Path) -> Path:
    """A scratch folder beside ``out`` for resumable training state (removed once ``out`` exists)."""
    return out.with_name(f".{out.name}.work")
