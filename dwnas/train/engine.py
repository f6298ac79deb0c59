"""One training engine for both stages: hybrid transformable (supernet) and elastic resolution.

A step follows the sandwich rule: the largest deep subnet (the teacher), then the smallest and
random subnets, each with a random ``linear`` mask, so that the deep and the shallow form of every
block train on the same weights; the others distil from the teacher's predictions. The subnets and
the step's input resolution derive from (seed, global step) alone, hence every rank and every
resumed run draws the same ones. Resume is exact: model, optimiser, scheduler, step and every RNG
state are checkpointed, and a mid-epoch resume replays the data order without training on it.

A saved state resumes only when its fingerprint matches part for part: the params that shape
training, the ``--init`` checkpoint's bytes and the prepared manifests' bytes. It is read with
``weights_only=True`` (plain types and tensors only, so a planted pickle cannot run code), and an
unreadable, foreign or corrupt state is logged and replaced by a fresh start.
"""

from __future__ import annotations

import glob
import hashlib
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dwnas.errors import DwnasError
from dwnas.io import torch_save, write_json
from dwnas.train.distributed import DistContext
from dwnas.train.evaluate import ImageBank, evaluate_subnet, file_digest, resize_batch
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

    def fingerprint(self, world_size: int = 1) -> dict[str, str]:
        """A hash per part that shapes training, so that a mismatch can say which part differs.

        ``init`` and ``prepared`` are hashed by content (a re-trained supernet or a re-prepared
        dataset at the same path must not resume); ``checkpoint_every`` only paces saves.
        """
        parts = {"stage": self.stage, "seed": self.seed, "resolution": list(self.resolution),
                 "space": self.space, "calib_images": self.calib_images,
                 "val_images": self.val_images, "eval_batch": self.eval_batch,
                 "extra": self.extra, "world_size": world_size}
        for key, value in asdict(self.recipe).items():
            if key != "checkpoint_every":
                parts[f"recipe.{key}"] = value
        hashes = {key: _hash(value) for key, value in parts.items()}
        hashes["init"] = file_digest(self.init) if self.init is not None else "none"
        hashes["prepared"] = manifests_digest(self.prepared)
        return hashes

    @property
    def state_path(self) -> Path:
        """The rolling resumable state, beside the final checkpoint (never mistaken for it)."""
        return self.out.with_name(self.out.stem + ".state.pt")


MANIFESTS = ("train.csv", "val.csv", "classes.json")
_DESCRIBE = {"init": "the --init checkpoint's contents",
             "prepared": "the prepared manifests (" + ", ".join(MANIFESTS) + ")"}


def _hash(value) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def manifests_digest(prepared: Path) -> str:
    """Content hash of a prepared dir's manifests (not of the images they list)."""
    return _hash({name: file_digest(prepared / name) if (prepared / name).is_file() else None
                  for name in MANIFESTS})


def capture_rng() -> dict:
    """Every RNG state as tensors and plain types, so that ``weights_only`` loading reads it."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def decode_rng(state: dict) -> dict:
    """The saved RNG states in the form the setters take; raises on a malformed entry."""
    py, npy = state["python"], state["numpy"]
    gauss = py["gauss"]
    decoded = {
        "python": (int(py["version"]), tuple(int(v) for v in py["state"].tolist()),
                   None if gauss is None else float(gauss)),
        "numpy": (str(npy["name"]), npy["keys"].cpu().numpy().astype(np.uint32), int(npy["pos"]),
                  int(npy["has_gauss"]), float(npy["cached"])),
        "torch": state["torch"].cpu().to(torch.uint8),
    }
    if "cuda" in state:
        decoded["cuda"] = [t.cpu().to(torch.uint8) for t in state["cuda"]]
    return decoded


def restore_rng(decoded: dict) -> None:
    """Apply :func:`decode_rng`'s result."""
    random.setstate(decoded["python"])
    np.random.set_state(decoded["numpy"])
    torch.set_rng_state(decoded["torch"])
    if "cuda" in decoded and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(decoded["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


class Trainer:
    """Runs a :class:`TrainJob`; ``on_epoch(metrics, step)`` receives each epoch's figures (rank 0)."""

    def __init__(self, job: TrainJob, on_epoch: Callable[[dict, int], None] | None = None):
        self.job = job
        self.on_epoch = on_epoch or (lambda metrics, step: None)
        self.ctx = DistContext.from_env()

    # -- set-up -----------------------------------------------------------------------------
    def _build_model(self, num_classes: int):
        from dwnas.nn.checkpoint import checkpoint_images_seen, load_supernet
        from dwnas.nn.supernet import Supernet
        from dwnas.space import Space

        seed_everything(self.job.seed)
        if self.job.init is not None:
            model, ckpt = load_supernet(self.job.init)
            self._init_images_seen = checkpoint_images_seen(ckpt)
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
                                    crop_scale=self.job.recipe.crop_scale,
                                    hflip=self.job.recipe.hflip)
        if len(loader) == 0:
            raise DwnasError(f"{prepared}: fewer training images than one batch of "
                             f"{self.job.recipe.batch_size} per process")
        return loader, num_classes(prepared)

    # -- the run ----------------------------------------------------------------------------
    def _setup(self, n_classes: int, steps_per_epoch: int):
        model, space = self._build_model(n_classes)
        if self.ctx.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.ctx.broadcast_parameters(model)
        optimizer = build_optimizer(model, self.job.recipe)
        scheduler = build_scheduler(optimizer, self.job.recipe, steps_per_epoch)
        return model, space, optimizer, scheduler

    def _check_free_space(self, model) -> None:
        """What training will write, known before its first step: the checkpoint (the weights),
        the resume state (weights and up to two optimizer moments) and, while a state is
        replaced, the one before it: 7 x the weights' bytes at most."""
        from dwnas.io import check_free_space

        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        check_free_space(self.job.out, 7 * weights, "the checkpoint and its resume state")

    def run(self) -> dict:
        job, recipe, ctx = self.job, self.job.recipe, self.ctx
        if ctx.is_main:
            self._remove_stale_temporaries()
        loader, n_classes = self._loaders()
        self._fingerprint = job.fingerprint(ctx.world_size)
        steps_per_epoch = len(loader)
        model, space, optimizer, scheduler = self._setup(n_classes, steps_per_epoch)
        if ctx.is_main:
            self._check_free_space(model)
        step, history, rng_state, partial = 0, [], None, (0.0, 0, 0.0)
        state = self._read_state() if job.resume else None
        if state is not None:
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                self._discard_state(f"its weights do not fit this model ({_first_line(exc)})")
                model, space, optimizer, scheduler = self._setup(n_classes, steps_per_epoch)
            else:
                step, history, rng_state = state["step"], state["history"], state["rng"]
                partial = state["epoch_partial"]
                _log(f"{job.stage}: resumed from {job.state_path} at step {step}")
                if ctx.is_main:  # the finished run carries the whole curve, not only what follows
                    for metrics in history:
                        self.on_epoch(metrics, int(metrics["epoch"]) * steps_per_epoch)
        criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        lo, hi = job.resolution
        eval_res = sorted({lo, hi})
        calib = ImageBank.load(job.prepared, "train", hi, job.calib_images, job.seed)
        val = ImageBank.load(job.prepared, "val", hi, job.val_images, job.seed)

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
            if skip:  # resumed mid-epoch: the epoch's figures include the batches before the kill
                epoch_loss, epoch_images = partial[0], partial[1]
                epoch_start -= partial[2]
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
                # not at an epoch's last step: the save after its evaluation follows (a state saved
                # before it would resume past an epoch whose figures were never recorded)
                if (recipe.checkpoint_every and step % recipe.checkpoint_every == 0
                        and step % steps_per_epoch):
                    self._save_state(model, optimizer, scheduler, step, history,
                                     (epoch_loss, epoch_images, time.monotonic() - epoch_start))
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
        return self._finish(model, space, history, n_classes,
                            total_steps * recipe.batch_size * ctx.world_size * recipe.subnets_per_step)

    # -- checkpoints ----------------------------------------------------------------------------
    def _save_state(self, model, optimizer, scheduler, step: int, history: list,
                    partial: tuple[float, int, float] = (0.0, 0, 0.0)) -> None:
        """The resumable state; ``partial``: the running epoch's loss sum, images and seconds."""
        if not self.ctx.is_main:
            return
        torch_save({
            "fingerprint": self._fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "history": history,
            "epoch_partial": [float(partial[0]), int(partial[1]), float(partial[2])],
            "rng": capture_rng(),
        }, self.job.state_path)

    def _remove_stale_temporaries(self) -> None:
        """Drop what a kill during an atomic save left (``.<name>.<random>.tmp``, see dwnas.io)."""
        job = self.job
        stale = []
        for target in (job.state_path, job.out, job.summary):
            pattern = str(target.parent / f".{glob.escape(target.name)}.*.tmp")
            stale.extend(p for p in map(Path, glob.glob(pattern)) if p.is_file())
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            _log(f"{job.stage}: removed leftover temporary files " + ", ".join(map(str, stale)))

    def _discard_state(self, why: str) -> None:
        path = self.job.state_path
        _log(f"{self.job.stage}: not resuming from {path}: {why}; starting fresh")
        if self.ctx.is_main:
            path.unlink(missing_ok=True)

    def _read_state(self) -> dict | None:
        """The saved state if it is readable and its fingerprint matches, else None (logged why).

        Loaded with ``weights_only=True``; the fingerprint is checked before any other field.
        """
        path = self.job.state_path
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, corrupt or not a plain-data pickle
            self._discard_state(f"cannot read it ({type(exc).__name__}: {_first_line(exc)})")
            return None
        saved = state.get("fingerprint") if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            self._discard_state("it has no per-part fingerprint (older dwnas or not a state file)")
            return None
        differ = sorted(k for k in self._fingerprint.keys() | saved.keys()
                        if saved.get(k) != self._fingerprint.get(k))
        if differ:
            what = ", ".join(_DESCRIBE.get(k, k) for k in differ)
            self._discard_state(f"it was saved with other settings (differs: {what})")
            return None
        try:
            step, history = state["step"], state["history"]
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"bad step {step!r}")
            if not isinstance(history, list):
                raise ValueError("history is not a list")
            state["rng"] = decode_rng(state["rng"])
            partial = state.get("epoch_partial", [0.0, 0, 0.0])  # absent in older state files
            if (not isinstance(partial, list | tuple) or len(partial) != 3
                    or not all(isinstance(v, int | float) for v in partial)):
                raise ValueError(f"bad epoch_partial {partial!r}")
            state["epoch_partial"] = (float(partial[0]), int(partial[1]), float(partial[2]))
            for key in ("model", "optimizer", "scheduler"):
                if not isinstance(state[key], dict):
                    raise ValueError(f"{key} is not a state dict")
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            self._discard_state(f"it is incomplete ({type(exc).__name__}: {_first_line(exc)})")
            return None
        return state

    def _finish(self, model, space, history: list, n_classes: int, images_seen: int) -> dict:
        from dwnas.nn.checkpoint import save_supernet

        job = self.job
        last = history[-1] if history else {}
        summary = {
            "stage": job.stage,
            "epochs": job.recipe.epochs,
            # every subnet of a step sees the batch (drop_last: full batches only)
            "images_seen": images_seen,
            "images_seen_total": images_seen + getattr(self, "_init_images_seen", 0),
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
