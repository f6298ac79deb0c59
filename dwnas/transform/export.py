"""Export of deploy networks: ``torch.export`` programs (``.pt2``) and ONNX files (``.onnx``).

TorchScript is deprecated in torch 2.14; the two deployment formats are a ``torch.export``
program (run by PyTorch, ``torch.export.load(path).module()``) and ONNX (onnxruntime on a CPU,
TensorRT on a Jetson). ONNX uses the TorchScript-based exporter (``dynamo=False``): the networks
are plain convolutions, clips and a linear layer, which it maps one to one. Batch, height and
width are dynamic in both. Every file is reloaded and checked numerically against the eager
module before it counts as written.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dwnas.errors import DwnasError
from dwnas.io import atomic_path
from dwnas.transform.verification import VerifyReport, _errors

ONNX_OPSET = 17


def export_program(model: nn.Module, path: str | os.PathLike, resolution: int,
                   channels: int = 3) -> None:
    """Export ``model`` (eval) with ``torch.export`` and save the program atomically to ``path``
    (``.pt2``; ``torch.export.load`` needs no dwnas). The batch is dynamic; height and width are
    the network's ``resolution``: with them dynamic, export adds guards such as ``size <= 32``
    for some networks, so a program is specialised to the resolution it is deployed at."""
    model.eval()
    auto = torch.export.Dim.AUTO  # dynamic where the graph allows, with the guards it needs
    example = torch.randn(2, channels, resolution, resolution)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(model, (example,),
                                          dynamic_shapes=({0: auto},))
        except Exception as exc:  # torch.export raises many types for untraceable code
            raise DwnasError(f"{path}: torch.export failed ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        for node in program.graph.nodes:  # source locations name this machine's checkout: the
            node.meta.pop("stack_trace", None)  # same network must give the same file anywhere
        buffer = io.BytesIO()  # torch.export.save wants a .pt2 name; the atomic temp has none
        torch.export.save(program, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())


def export_onnx(model: nn.Module, path: str | os.PathLike, resolution: int,
                channels: int = 3, opset: int = ONNX_OPSET) -> None:
    """Export ``model`` (eval) to ONNX with dynamic batch/height/width; checked by onnx.checker."""
    import onnx

    model.eval()
    example = torch.randn(1, channels, resolution, resolution)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        spatial_out = model(example).dim() == 4  # a block's feature map, not a network's logits
        torch.onnx.export(
            model, (example,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["output" if spatial_out else "logits"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                          ("output" if spatial_out else "logits"):
                          {0: "batch", 2: "out_height", 3: "out_width"} if spatial_out
                          else {0: "batch"}},
        )
        try:
            onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise DwnasError(f"{path}: exported ONNX model is invalid ({exc})") from exc


def verify_file(path: str | os.PathLike, model: nn.Module, resolutions: Sequence[int],
                batch: int = 2) -> VerifyReport:
    """Load an exported file as ``dwnas measure`` does (CPU) and compare it with ``model`` (the
    eager network, or its float64 copy as the exact reference)."""
    from dwnas.measure.models import load_model

    runner = load_model(path, "cpu", max(1, torch.get_num_threads()))
    with runner.context():
        return _compare(runner.as_callable(), model, resolutions, batch)


@torch.no_grad()
def _compare(run, model: nn.Module, resolutions: Sequence[int], batch: int = 2) -> VerifyReport:
    """``run`` (float32 inputs) against ``model`` in its own dtype (a float64 model is the exact
    reference) on the same random batches."""
    model.eval()
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(0)
    report = VerifyReport()
    for res in dict.fromkeys(int(r) for r in resolutions):
        x = torch.randn(batch, 3, res, res, generator=gen)
        abs_err, rel_err, _ = _errors(model(x.to(dtype)), run(x))
        report.per_resolution.append({"resolution": res, "max_abs_err": abs_err,
                                      "max_rel_err": rel_err})
    return report


def verify_eager(model: nn.Module, reference: nn.Module, resolutions: Sequence[int],
                 batch: int = 2) -> VerifyReport:
    """The float32 eager ``model`` against ``reference`` (its float64 copy): how far float32
    arithmetic itself takes this network from the exact function."""
    model.eval()
    return _compare(lambda x: model(x), reference, resolutions, batch)


def runtime_file(model: nn.Module, runtime: str, input_shape: Sequence[int], directory: str | os.PathLike) -> Path:
    """``model`` exported for ``runtime`` into ``directory`` (the latency table times each block
    in the format and runtime that ``dwnas measure`` times whole networks in)."""
    from dwnas.measure.settings import RUNTIME_FORMATS

    channels, side = int(input_shape[-3]), int(input_shape[-1])
    path = Path(directory) / f"model.{RUNTIME_FORMATS[runtime]}"
    if runtime == "onnxruntime":
        export_onnx(model, path, side, channels)
    else:
        export_program(model, path, side, channels)
    return path
