"""What every baseline shares, so that its row of the report is produced like Double-Win's.

* :func:`fit`: a small static-network training loop with the project's recipe (optimiser,
  warm-up + cosine schedule, label smoothing, gradient clipping), optionally distilling from a
  teacher and calling a hook per step (progressive linearisation, single-path sampling). Used where
  the supernet :class:`~dwnas.train.engine.Trainer` does not fit: DepthShrinker's fine-tuning, ODN's
  growing networks, HURRICANE's single-path supernet. Single process.
* :class:`EvalData`: accuracy with BN recalibration (:mod:`dwnas.train.evaluate`), in place.
* :func:`export_deployed`: the deep (BN folded) and shallow (linear blocks merged; the folded deep
  net when nothing merges) forms, verified against the training form with the checkpoint's and
  with randomised BN statistics, written as TorchScript and ONNX beside a ``transform.json`` with
  the same keys as ``dwnas transform``'s.
* :func:`log_row`: the one MLflow run (stage ``baseline_<method>``, tags method and budget) that
  carries what the report's main table reads: ``results.<variant>.top1`` and the transform figures.
"""

from __future__ import annotations

import copy
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dwnas.errors import DwnasError

ROW_KEYS = ("macs_deep", "macs_shallow", "params_deep", "params_shallow", "layers_deep",
            "layers_shallow", "max_rel_err")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# -- evaluation -------------------------------------------------------------------------------------
@dataclass
class EvalData:
    """Calibration and validation images of a prepared dataset, decoded once at ``resolution``."""

    calib: object
    val: object
    batch_size: int

    @classmethod
    def load(cls, prepared: str | Path, resolution: int, calib_images: int,
             val_images: int | None, seed: int, batch_size: int) -> EvalData:
        from dwnas.train.evaluate import ImageBank

        return cls(ImageBank.load(prepared, "train", resolution, calib_images, seed),
                   ImageBank.load(prepared, "val", resolution, val_images, seed), batch_size)

    def calibrate(self, model: nn.Module, resolution: int) -> nn.Module:
        """Re-estimate ``model``'s BN statistics at ``resolution`` in place (momenta kept)."""
        from dwnas.train.evaluate import recalibrate_bn

        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [bn.momentum for bn in bns]
        recalibrate_bn(model.to(device()), self.calib, resolution, self.batch_size, device())
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        return model

    def accuracy(self, model: nn.Module, resolution: int) -> dict:
        """Top-1/top-5 of ``model`` after :meth:`calibrate`: the statistics it is evaluated with
        are the ones it keeps, so an exported network is the evaluated one."""
        from dwnas.train.evaluate import accuracy

        self.calibrate(model, resolution)
        return accuracy(model, self.val, resolution, self.batch_size, device())


# -- training ---------------------------------------------------------------------------------------
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
                                workers=workers, seed=seed, crop_scale=recipe.crop_scale)
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
        history.append({"epoch": epoch + 1, "loss": total / max(images, 1),
                        "lr": optimizer.param_groups[0]["lr"],
                        "images_per_s": images / max(seconds, 1e-9)})
        log(f"{desc} epoch {epoch + 1}/{recipe.epochs}: loss {history[-1]['loss']:.4g}, "
            f"{history[-1]['images_per_s']:.0f} img/s")
    return history


# -- deploy forms -----------------------------------------------------------------------------------
@torch.no_grad()
def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    from dwnas.transform.fuse import fuse_conv_bn

    weight, bias = fuse_conv_bn(conv.weight, bn)
    if conv.bias is not None:  # BN(Wx + b) = g W x + (beta - mean g) + g b
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = bias + conv.bias.double() * scale
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    out.weight.copy_(weight.float())
    out.bias.copy_(bias.float())
    return out.eval()


def fold_bn(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (eval mode) with every BatchNorm folded into the convolution before it.

    The project's layers use their own deploy forms (:mod:`dwnas.transform.fuse`); any other
    ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential`` is folded in
    place. A BatchNorm left over (one not preceded by a convolution) is refused."""
    from dwnas.nn.static import ConvBNReLU6, StaticMBConv
    from dwnas.transform.fuse import deploy_block, deploy_conv_bn_relu6

    net = copy.deepcopy(net).eval()

    def visit(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, StaticMBConv):
                setattr(module, name, deploy_block(child))
            elif isinstance(child, ConvBNReLU6):
                setattr(module, name, deploy_conv_bn_relu6(child))
            else:
                visit(child)
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = _folded_conv(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()

    visit(net)
    left = [name for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise DwnasError(f"fold_bn: batch norms not preceded by a convolution: {left[:5]}")
    return net


def deploy_forms(net) -> tuple[nn.Module, nn.Module, Callable]:
    """``(deep, shallow, make_shallow)``: the BN-folded deep net, the shallow one (linear MBConv
    blocks merged) and the function that makes the shallow one (for the randomised-BN check)."""
    from dwnas.nn.static import ConvBNReLU6, StaticMBConv, StaticNet
    from dwnas.transform.network import fold_deep, transform

    if isinstance(net, StaticNet) and all(isinstance(f, ConvBNReLU6 | StaticMBConv)
                                          for f in net.features):
        deep = fold_deep(net)
        merges = any(isinstance(f, StaticMBConv) and f.linear for f in net.features)
        return deep, transform(net) if merges else deep, transform
    folded = fold_bn(net)
    return folded, folded, fold_bn


def _gate(name: str, report, tolerance: float) -> None:
    if report.max_rel_err > tolerance:
        raise DwnasError(f"{name} differs from the training-form network by {report.max_rel_err:.3g}"
                         f" (relative to the output scale), above the tolerance {tolerance:g}; "
                         "nothing written")


def export_deployed(net: nn.Module, out: Path, resolution: int, tolerance: float = 1e-5,
                    seed: int = 0, batch: int = 2) -> dict:
    """Write ``deep.pt``, ``shallow.pt`` (TorchScript) and ``.onnx`` copies of ``net``'s deploy
    forms into ``out``; returns the ``transform.json`` figures. Every form and export is checked
    against ``net`` (at ``resolution`` and ``resolution + 1``) before it counts as written."""
    from dwnas.nn.counters import count
    from dwnas.transform.export import export_onnx, export_torchscript, verify_onnx
    from dwnas.transform.verification import verify, verify_transform

    net = net.cpu().eval()
    deep, shallow, make_shallow = deploy_forms(net)
    resolutions = [resolution, resolution + 1]
    checks = {
        "shallow": verify(net, shallow, resolutions, batch, seed),
        "shallow_randomized_bn": verify_transform(net, resolutions, batch, seed, make_shallow),
        "deep_folded": verify(net, deep, resolutions, batch, seed),
    }
    for name, report in checks.items():
        _gate(name, report, tolerance)
    exports = {"deep.pt": export_torchscript(deep, out / "deep.pt", resolution, resolutions)}
    export_onnx(deep, out / "deep.onnx", resolution)
    exports["deep.onnx"] = verify_onnx(out / "deep.onnx", deep, resolutions, batch)
    if shallow is deep:  # nothing merged: the shallow files are the deep ones
        for suffix in ("pt", "onnx"):
            shutil.copyfile(out / f"deep.{suffix}", out / f"shallow.{suffix}")
            exports[f"shallow.{suffix}"] = exports[f"deep.{suffix}"]
    else:
        exports["shallow.pt"] = export_torchscript(shallow, out / "shallow.pt", resolution,
                                                   resolutions)
        export_onnx(shallow, out / "shallow.onnx", resolution)
        exports["shallow.onnx"] = verify_onnx(out / "shallow.onnx", shallow, resolutions, batch)
    for name, report in exports.items():
        _gate(f"exported {name}", report, tolerance)
    counts_deep, counts_shallow = count(deep, resolution), count(shallow, resolution)
    worst = max(checks["shallow"], checks["shallow_randomized_bn"], key=lambda r: r.max_rel_err)
    return {
        "resolution": int(resolution),
        "max_abs_err": max(checks["shallow"].max_abs_err, checks["shallow_randomized_bn"].max_abs_err),
        "max_rel_err": worst.max_rel_err,
        "tolerance": tolerance,
        "verify_resolutions": resolutions,
        "layers_deep": counts_deep.depth,
        "layers_shallow": counts_shallow.depth,
        "params_deep": counts_deep.params,
        "params_shallow": counts_shallow.params,
        "params_deep_with_bn": count(net, resolution).params,
        "macs_deep": counts_deep.macs,
        "macs_shallow": counts_shallow.macs,
        "verify": {name: report.to_dict() for name, report in checks.items()},
        "exports": {name: report.to_dict() for name, report in exports.items()},
        "torch": torch.__version__,
    }


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


def work_dir(out: Path) -> Path:
    """A scratch folder beside ``out`` for resumable training state (removed once ``out`` exists)."""
    return out.with_name(f".{out.name}.work")
