"""The one export path of every method: recalibrate, fold, merge, verify, export, evaluate the files.

Double-Win's and deep-only's searched networks (``dwnas transform``) and every baseline
(``dwnas baseline ...``) go through :func:`export_network`, so what the main table reports is
what was exported:

1. BN statistics are re-estimated at the network's own resolution with the images and code of
   its reported evaluation (:class:`~dwnas.train.evaluate.EvalData`), and top-1 is taken;
2. the deep form (BN folded) and the shallow form (linear blocks merged) are built and verified
   against the training-form network, with its statistics and with randomised ones;
3. each form is exported for each deployment runtime (:data:`RUNTIME_FORMATS`: ``torch`` a
   ``torch.export`` program, ``onnxruntime`` an ONNX file), reloaded and compared;
4. the exported files themselves are evaluated on the validation split.

A network with nothing to merge is one graph: its shallow files are copies of the deep ones.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from dwnas.errors import DwnasError
from dwnas.measure.settings import RUNTIME_FORMATS

FLOAT32_SLACK = 4.0
ROW_KEYS = ("macs_deep", "macs_shallow", "params_deep", "params_shallow", "layers_deep",
            "layers_shallow", "max_rel_err")


@torch.no_grad()
def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    from dwnas.transform.fuse import fuse_conv_bn

    weight, bias = fuse_conv_bn(conv.weight, bn)
    if conv.bias is not None:  # BN(Wx + b) = g W x + (beta - mean g) + g b
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = bias + conv.bias.double() * scale
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, bias=True,
                    padding_mode=conv.padding_mode, dtype=conv.weight.dtype)
    out.weight.copy_(weight.to(conv.weight.dtype))
    out.bias.copy_(bias.to(conv.weight.dtype))
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
    blocks merged; the deep one itself when nothing merges) and the function that makes the
    shallow one (for the randomised-BN check)."""
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
    if not report.within(tolerance):
        worst = max(report.per_resolution, key=lambda r: (r["max_rel_err"] != r["max_rel_err"],
                                                          r["max_rel_err"]))
        raise DwnasError(
            f"transform: {name} differs from the training-form network by {report.max_rel_err:.3g}"
            f" (relative to the output scale; abs {report.max_abs_err:.3g}) at resolution "
            f"{worst['resolution']}, above the tolerance {tolerance:g}; nothing written")


def export_file(model: nn.Module, path: Path, runtime: str, resolution: int,
                check_resolutions: Sequence[int], batch: int = 2,
                reference: nn.Module | None = None):
    """Export ``model`` for ``runtime`` to ``path``, reload it and compare it with ``reference``
    (default: ``model`` itself); the VerifyReport."""
    from dwnas.transform.export import export_onnx, export_program, verify_file

    if runtime == "onnxruntime":
        export_onnx(model, path, resolution)
    elif runtime == "torch":
        export_program(model, path, resolution)
    else:
        raise DwnasError(f"unknown runtime {runtime!r}; use one of {sorted(RUNTIME_FORMATS)}")
    if runtime == "torch":  # a torch.export program is specialised to its resolution
        check_resolutions = ()
    return verify_file(path, model if reference is None else reference,
                       [resolution, *check_resolutions], batch)


def file_accuracy(path: Path, evaluation, resolution: int) -> dict:
    """Top-1 / top-5 of an exported file itself (loaded as ``dwnas measure`` loads it)."""
    from dwnas.measure.models import load_model
    from dwnas.train.evaluate import accuracy

    runner = load_model(path, "cpu", max(1, torch.get_num_threads()))
    with runner.context():
        return accuracy(runner.as_callable(), evaluation.val, resolution, evaluation.batch_size)


def export_network(net: nn.Module, out: Path, resolution: int, evaluation,
                   runtimes: Sequence[str] = ("torch", "onnxruntime"), tolerance: float = 1e-5,
                   seed: int = 0, batch: int = 2) -> dict:
    """Recalibrate ``net`` (in place) with ``evaluation``, export its deep and shallow forms for
    each runtime into ``out`` and evaluate the files; returns the ``transform.json`` figures.

    ``evaluation`` is an :class:`~dwnas.train.evaluate.EvalData` (or None to export the
    statistics ``net`` has, without accuracies: tests and verification-only uses)."""
    from dwnas.nn.counters import count
    from dwnas.transform.export import verify_eager
    from dwnas.transform.verification import verify, verify_transform

    for runtime in runtimes:
        if runtime not in RUNTIME_FORMATS:
            raise DwnasError(f"unknown runtime {runtime!r}; use one of {sorted(RUNTIME_FORMATS)}")
    net = net.cpu().eval()
    top1 = {}
    if evaluation is not None:
        evaluated = evaluation.accuracy(net, resolution)
        top1["evaluated"] = evaluated["top1"]
    deep, shallow, make_shallow = deploy_forms(net)
    merged = shallow is not deep
    resolutions = [resolution, resolution + 1]
    # The algebra is checked in float64 on float64 copies (folded without float32 rounding): a
    # recalibrated BN whose channel is nearly constant (variance ~1e-10) makes the folded float32
    # network cancel two large terms, a storage-precision effect, not a transform error. What
    # float32 does to the deployed network is recorded (not gated) and shown by the files' top-1.
    f64 = torch.float64
    net64 = copy.deepcopy(net).to(f64)
    deep64, shallow64, _ = deploy_forms(net64)
    checks = {
        "shallow": verify(net64, shallow64, resolutions, batch, seed, f64),
        "shallow_randomized_bn": verify_transform(net64, resolutions, batch, seed, make_shallow, f64),
        "deep_folded": verify(net64, deep64, resolutions, batch, seed, f64),
    }
    for name, report in checks.items():
        _gate(name, report, tolerance)
    # Each exported (float32) file is compared with the exact float64 deploy network; it passes
    # within the tolerance, or no more than FLOAT32_SLACK times as far from the exact function as
    # float32 eager PyTorch itself is (a runtime's other kernels round differently).
    references = {"deep": deep64, "shallow": shallow64}
    float32_deviation = {form: verify_eager(model, references[form], resolutions, batch)
                         for form, model in (("deep", deep), ("shallow", shallow))}
    exports = {}
    for runtime in runtimes:
        suffix = RUNTIME_FORMATS[runtime]
        for form, model in (("deep", deep), ("shallow", shallow)):
            name = f"{form}.{suffix}"
            if form == "shallow" and not merged:
                shutil.copyfile(out / f"deep.{suffix}", out / name)
                exports[name] = exports[f"deep.{suffix}"]
                continue
            exports[name] = export_file(model, out / name, runtime, resolution, resolutions[1:],
                                        batch, references[form])
            allowed = max(tolerance, FLOAT32_SLACK * float32_deviation[form].max_rel_err)
            _gate(f"exported {name}", exports[name], allowed)
    if evaluation is not None:
        for name in exports:
            top1[name] = file_accuracy(out / name, evaluation, resolution)["top1"]
    counts_deep, counts_shallow = count(deep, resolution), count(shallow, resolution)
    worst = max(checks["shallow"], checks["shallow_randomized_bn"], key=lambda r: r.max_rel_err)
    return {
        "resolution": int(resolution),
        "top1": top1 or None,
        "top5": evaluated["top5"] if evaluation is not None else None,
        "val_images": evaluated["n"] if evaluation is not None else None,
        "runtimes": list(runtimes),
        "merged": merged,
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
        "float32_deviation": {form: r.max_rel_err for form, r in float32_deviation.items()},
        "exports": {name: report.to_dict() for name, report in exports.items()},
        "torch": torch.__version__,
    }
