"""One training engine for both stages: hybrid transformable (supernet) and elastic resolution.

A step follows the sandwich rule: the largest deep subnet (the teacher), then the smallest and
random subnets, each with a random ``linear`` mask, so that the deep and the shallow form of every
block train on the same weights; the others distil from the teacher's predictions. The subnets and
the step's input resolution derive from (seed, global step) alone, hence every rank and every
resumed run draws the same ones. Resume is exact: model, optimiser, scheduler, step and every RNG
state are checkpointed, and a mid-epoch resume replays the data order without training on it.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dwnas.config import params_hash
from dwnas.errors import DwnasError
from dwnas.io import torch_save, write_json
from dwnas.train.distributed import DistContext
from dwnas.train.evaluate import ImageBank, evaluate_subnet, resize_batch
from dwnas.train.recipe import (
    Recipe,
    build_optimizer,
    build_scheduler,
    distillation_loss,
    linear_alpha,
)
from dwnas.train.sampling import sample_step_archs, step_resolution


@dataclass
class TrainJob:
    """Everything a training run depends on; its hash decides whether a saved state may resume."""

    stage: str
    prepared: Path
    out: Path
    summary: Path
    recipe: Recipe
    seed: int
    resolution: tuple[int, int]
    space: dict | None = None
    init: Path | None = None
    workers: int = 0
    calib_images: int = 500
    val_images: int | None = None
    eval_batch: int = 128
    resume: bool = True
    extra: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        data = asdict(self)
        for volatile in ("resume", "summary", "workers", "out"):
            data.pop(volatile)
        return params_hash({k: str(v) for k, v in data.items()})

    @property
    def state_path(self) -> Path:
        """The rolling resumable state, beside the final checkpoint (never mistaken for it)."""
        return self.out.with_name(self.out.stem + ".state.pt")


def capture_rng() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Trainer:
    """Runs a :class:`TrainJob`; ``on_epoch(metrics, step)`` receives each epoch's figures (rank 0)."""

    def __init__(self, job: TrainJob, on_epoch: Callable[[dict, int], None] | None = None):
        self.job = job
        self.on_epoch = on_epoch or (lambda metrics, step: None)
        self.ctx = DistContext.from_env()

    # -- set-up -----------------------------------------------------------------------------
    def _build_model(self, num_classes: int):
        from dwnas.nn.checkpoint import load_supernet
        from dwnas.nn.supernet import Supernet
        from dwnas.space import Space

        seed_everything(self.job.seed)
        if self.job.init is not None:
            model, ckpt = load_supernet(self.job.init)
            if ckpt["num_classes"] != num_classes:
                raise DwnasError(
                    f"{self.job.init}: checkpoint has {ckpt['num_classes']} classes, the dataset "
                    f"{self.job.prepared} has {num_classes}")
            space = model.space
        else:
            if self.job.space is None:
                raise DwnasError("train: a space (params) or an --init checkpoint is required")
            space = Space.from_params(self.job.space)
            model = Supernet(space, num_classes)
        return model.to(self.ctx.device), space

    def _loaders(self):
        from dwnas.data.loaders import build_train_loader, num_classes

        prepared = self.job.prepared
        if not (prepared / "train.csv").is_file():
            raise DwnasError(f"{prepared}: no train.csv manifest (run `dwnas data prepare` first)")
        lo, hi = self.job.resolution
        loader = build_train_loader(prepared, self.job.recipe.batch_size, resolution=hi,
                                    workers=self.job.workers, seed=self.job.seed,
                                    rank=self.ctx.rank, world_size=self.ctx.world_size,
                                    crop_scale=self.job.recipe.crop_scale)
        if len(loader) == 0:
            raise DwnasError(f"{prepared}: fewer training images than one batch of "
                             f"{self.job.recipe.batch_size} per process")
        return loader, num_classes(prepared)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> dict:
        job, recipe, ctx = self.job, self.job.recipe, self.ctx
        loader, n_classes = self._loaders()
        model, space = self._build_model(n_classes)
        if ctx.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        ctx.broadcast_parameters(model)
        optimizer = build_optimizer(model, recipe)
        steps_per_epoch = len(loader)
        scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
        criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        lo, hi = job.resolution
        eval_res = sorted({lo, hi})
        calib = ImageBank.load(job.prepared, "train", hi, job.calib_images, job.seed)
        val = ImageBank.load(job.prepared, "val", hi, job.val_images, job.seed)

        step, history, rng_state = 0, [], None
        if job.resume and job.state_path.is_file():
            step, history, rng_state = self._resume(model, optimizer, scheduler)
        total_steps = recipe.epochs * steps_per_epoch
        start_epoch, skip = divmod(step, steps_per_epoch)
        if start_epoch >= recipe.epochs:
            _log(f"{job.stage}: state at step {step} already complete")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=ctx.device.type == "cuda")
        started = time.monotonic()
        for epoch in range(start_epoch, recipe.epochs):
            set_epoch = getattr(loader, "set_epoch", None) or getattr(loader.batch_sampler, "set_epoch", None)
            if set_epoch:
                set_epoch(epoch)
            if rng_state is not None and skip == 0:
                restore_rng(rng_state)
            model.train()
            epoch_loss, epoch_images, epoch_start = 0.0, 0, time.monotonic()
            for batch_idx, (x, y) in enumerate(loader):
                if batch_idx < skip:
                    if batch_idx == skip - 1 and rng_state is not None:
                        restore_rng(rng_state)
                    continue
                x = x.to(ctx.device, non_blocking=True)
                y = y.to(ctx.device, non_blocking=True)
                resolution = step_resolution(job.seed, step, lo, hi)
                x = resize_batch(x, resolution)
                if ctx.device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                alpha = linear_alpha(recipe, epoch + batch_idx / steps_per_epoch)
                archs = sample_step_archs(space, job.seed, step, recipe.subnets_per_step)
                optimizer.zero_grad(set_to_none=True)
                teacher, losses = None, []
                for arch in archs:
                    with autocast:
                        logits = model(x, arch, linear_alpha=alpha)
                    if teacher is None or not recipe.distill:
                        loss = criterion(logits.float(), y)
                    else:
                        loss = distillation_loss(logits, teacher)
                    if teacher is None:
                        teacher = logits.detach()
                    loss.backward()
                    losses.append(loss.detach())
                step_loss = torch.stack(losses).sum()
                if not ctx.all_finite(step_loss):
                    raise DwnasError(
                        f"{job.stage}: non-finite loss ({step_loss.item()}) at step {step} "
                        f"(epoch {epoch}); lower the learning rate. Last good state kept at "
                        f"{job.state_path if job.state_path.exists() else 'none (no checkpoint yet)'}")
                ctx.average_gradients(model)
                if recipe.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                epoch_loss += losses[0].item() * len(y)
                epoch_images += len(y)
                if recipe.checkpoint_every and step % recipe.checkpoint_every == 0:
                    self._save_state(model, optimizer, scheduler, step, history)
                self._progress(step, total_steps, started, epoch, losses[0].item())
            skip, rng_state = 0, None
            seconds = time.monotonic() - epoch_start
            metrics = {
                "epoch": epoch + 1,
                "loss": epoch_loss / max(epoch_images, 1),
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": epoch_images * ctx.world_size / max(seconds, 1e-9),
                "linear_alpha": linear_alpha(recipe, epoch + 1),
            }
            for name, arch in (("largest", space.largest()), ("smallest", space.smallest())):
                for res in eval_res:
                    acc = evaluate_subnet(model, arch.with_resolution(res), res, calib, val,
                                          job.eval_batch, ctx.device)
                    suffix = "" if res == hi else f"_r{res}"
                    metrics[f"{name}_top1{suffix}"] = acc["top1"]
                    metrics[f"{name}_top5{suffix}"] = acc["top5"]
            history.append(metrics)
            if ctx.is_main:
                _log(f"{job.stage} epoch {epoch + 1}/{recipe.epochs}: " + ", ".join(
                    f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"))
                self.on_epoch(metrics, step)
            self._save_state(model, optimizer, scheduler, step, history)
        return self._finish(model, space, history, n_classes)

    # -- checkpoints ----------------------------------------------------------------------------
    def _save_state(self, model, optimizer, scheduler, step: int, history: list) -> None:
        if not self.ctx.is_main:
            return
        torch_save({
            "fingerprint": self.job.fingerprint(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "history": history,
            "rng": capture_rng(),
        }, self.job.state_path)

    def _resume(self, model, optimizer, scheduler):
        state = torch.load(self.job.state_path, map_location=self.ctx.device, weights_only=False)
        if state.get("fingerprint") != self.job.fingerprint():
            _log(f"{self.job.stage}: ignoring {self.job.state_path}: it belongs to other settings")
            return 0, [], None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _log(f"{self.job.stage}: resumed from {self.job.state_path} at step {state['step']}")
        return state["step"], state["history"], state["rng"]

    def _finish(self, model, space, history: list, n_classes: int) -> dict:
        from dwnas.nn.checkpoint import save_supernet

        job = self.job
        last = history[-1] if history else {}
        summary = {
            "stage": job.stage,
            "epochs": job.recipe.epochs,
            "resolution": {"min": job.resolution[0], "max": job.resolution[1]},
            "num_classes": n_classes,
            "world_size": self.ctx.world_size,
            "final": last,
            "history": history,
            "recipe": asdict(job.recipe),
        }
        if self.ctx.is_main:
            save_supernet(job.out, model, {"stage": job.stage, "summary": summary,
                                           "resolution": list(job.resolution)})
            write_json(job.summary, summary)
            job.state_path.unlink(missing_ok=True)
        self.ctx.barrier()
        return summary

    def _progress(self, step: int, total: int, started: float, epoch: int, loss: float) -> None:
        if not self.ctx.is_main:
            return
        now = time.monotonic()
        if step == total or now - getattr(self, "_last_print", 0.0) >= 15.0:
            self._last_print = now
            rate = step / max(now - started, 1e-9) if step else 0.0
            eta = (total - step) / rate if rate > 0 else float("nan")
            _log(f"{self.job.stage}: step {step}/{total} (epoch {epoch + 1}), loss {loss:.3f}, "
                 f"ETA {eta:.0f}s")
