"""Export of deploy networks: TorchScript archives (``torch.jit.load`` without dwnas) and ONNX.

ONNX uses the TorchScript-based exporter (``dynamo=False``): the networks are plain convolutions,
clamps and a linear layer, which it maps one to one; batch, height and width are dynamic axes.
Both exports are checked numerically against the eager module before they count as written.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from dwnas.errors import DwnasError
from dwnas.io import atomic_path
from dwnas.transform.verification import VerifyReport, _errors

ONNX_OPSET = 17


def export_torchscript(model: nn.Module, path: str | os.PathLike, resolution: int,
                       check_resolutions: Sequence[int] = ()) -> VerifyReport:
    """Trace ``model`` (eval) at ``resolution``, save it atomically to ``path`` and compare the
    reloaded archive with the eager model at ``resolution`` and ``check_resolutions``."""
    model.eval()
    example = torch.randn(1, 3, resolution, resolution)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))
        loaded = torch.jit.load(str(path), map_location="cpu")
    return _compare(lambda x: loaded(x), model, [resolution, *check_resolutions])


def export_onnx(model: nn.Module, path: str | os.PathLike, resolution: int,
                opset: int = ONNX_OPSET) -> None:
    """Export ``model`` (eval) to ONNX with dynamic batch/height/width; checked by onnx.checker."""
    import onnx

    model.eval()
    example = torch.randn(1, 3, resolution, resolution)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
        )
        try:
            onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise DwnasError(f"{path}: exported ONNX model is invalid ({exc})") from exc


def verify_onnx(path: str | os.PathLike, model: nn.Module, resolutions: Sequence[int],
                batch: int = 2) -> VerifyReport:
    """Run the ONNX file with onnxruntime on the CPU and compare with the eager ``model``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _compare(lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]),
                    model, resolutions, batch)


@torch.no_grad()
def _compare(run, model: nn.Module, resolutions: Sequence[int], batch: int = 2) -> VerifyReport:
    model.eval()
    gen = torch.Generator().manual_seed(0)
    report = VerifyReport()
    for res in dict.fromkeys(int(r) for r in resolutions):
        x = torch.randn(batch, 3, res, res, generator=gen)
        abs_err, rel_err, _ = _errors(model(x), run(x))
        report.per_resolution.append({"resolution": res, "max_abs_err": abs_err,
                                      "max_rel_err": rel_err})
    return report
