"""Loading what is measured: TorchScript archives, ONNX files, or an in-process ``nn.Module``.

Each becomes a :class:`Runner` that makes its own input and runs one forward pass, so that the
backends time them the same way. The transform stage writes ``torch.export`` programs (``.pt2``)
and ONNX (``.onnx``); both load without dwnas code. TorchScript (``.pt``, deprecated in torch
2.14) is still accepted for files users bring.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from dwnas.errors import DwnasError

MODEL_FORMATS = {".pt2": "torch-export", ".onnx": "onnx", ".pt": "torchscript"}


def model_format(path: str | Path) -> str:
    """The format implied by a file's extension; DwnasError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in MODEL_FORMATS:
        raise DwnasError(
            f"{path}: unknown model format {suffix or '(no extension)'!r}; "
            f"expected one of {', '.join(MODEL_FORMATS)}"
        )
    return MODEL_FORMATS[suffix]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def file_info(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


class Runner(ABC):
    """One loaded model on one device: builds inputs and runs forward passes."""

    format: str = ""
    fixed_batch: int | None = None  # a batch size baked into the model (static ONNX shape)
    notes: tuple[str, ...] | list[str] = ()  # what measure.json should say about how it ran

    @abstractmethod
    def make_input(self, shape: tuple[int, ...], seed: int) -> Any: ...

    @abstractmethod
    def __call__(self, inputs: Any) -> Any: ...

    def context(self) -> contextlib.AbstractContextManager:
        """Entered around warm-up and timed loops (torch: inference_mode)."""
        return contextlib.nullcontext()

    @abstractmethod
    def describe(self) -> dict: ...

    @abstractmethod
    def as_callable(self):
        """``f(tensor) -> tensor`` on CPU torch tensors (evaluation and verification of files)."""


class TorchRunner(Runner):
    """Eager or TorchScript module on a torch device, in eval mode, optionally channels_last.

    An in-process module is changed in place: moved to the device, put in eval mode and, with
    ``channels_last``, converted to that memory format.
    """

    def __init__(self, module, device: str, channels_last: bool, fmt: str, info: dict):
        import torch

        self.format = fmt
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.info = info
        if fmt != "torch-export":  # an exported program is in eval mode and refuses .eval()
            module.eval()
        module.to(self.device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
        self.module = module

    def make_input(self, shape: tuple[int, ...], seed: int):
        import torch

        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=generator).to(self.device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, inputs):
        return self.module(inputs)

    def context(self):
        import torch

        return torch.inference_mode()

    def describe(self) -> dict:
        return {"format": self.format, **self.info}

    def as_callable(self):
        return lambda x: self.module(x.to(self.device)).cpu()


class OnnxRunner(Runner):
    """An onnxruntime session (CPU provider, or CUDA provider for GPU backends).

    With the CUDA provider each run copies input and output between host and device, as an
    application calling ``session.run`` with numpy arrays would.
    """

    format = "onnx"

    def __init__(
        self, path: Path, device: str, threads: int, info: dict, cpu_fallback: bool = False
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.notes: list[str] = []
        has_cuda_provider = "CUDAExecutionProvider" in ort.get_available_providers()
        if device.startswith("cuda") and cpu_fallback and not has_cuda_provider:
            self.notes.append(
                "onnxruntime has no CUDAExecutionProvider here: the ONNX model ran on the CPU"
            )
            device = "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DwnasError(
                    f"{path}: CUDA requested but this onnxruntime has no CUDAExecutionProvider "
                    f"(providers: {', '.join(ort.get_available_providers())})"
                )
            index = int(device.partition(":")[2] or 0)
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise DwnasError(f"{path}: cannot load as ONNX ({_first_line(exc)})") from exc
        if device.startswith("cuda") and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise DwnasError(f"{path}: onnxruntime fell back to {self.session.get_providers()}")
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DwnasError(f"{path}: expected one model input, found {len(inputs)}")
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        first = self.input_shape[0] if self.input_shape else None
        self.fixed_batch = first if isinstance(first, int) else None
        self.path = path
        self.info = info

    @property
    def dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.input_shape)

    def make_input(self, shape: tuple[int, ...], seed: int):
        import numpy as np

        if len(shape) != len(self.input_shape):
            raise DwnasError(
                f"{self.path}: model input has shape {self.input_shape}, asked {list(shape)}"
            )
        for axis, (want, have) in enumerate(zip(shape, self.input_shape, strict=True)):
            if isinstance(have, int) and have != want:
                raise DwnasError(
                    f"{self.path}: model input {self.input_name!r} has fixed size {have} on axis "
                    f"{axis}, asked {want} (input shape {self.input_shape})"
                )
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)

    def __call__(self, inputs):
        return self.session.run(None, {self.input_name: inputs})

    def as_callable(self):
        import torch

        return lambda x: torch.from_numpy(self(x.contiguous().numpy())[0])

    def describe(self) -> dict:
        return {
            "format": self.format,
            **self.info,
            "input_name": self.input_name,
            "input_shape": [d if isinstance(d, int) else str(d) for d in self.input_shape],
            "providers": self.session.get_providers(),
        }


def load_model(
    path: str | Path,
    device: str,
    threads: int,
    channels_last: bool = False,
    onnx_cpu_fallback: bool = False,
) -> Runner:
    """Load a ``.pt2`` torch.export program, an ``.onnx`` file or a ``.pt`` TorchScript archive
    (files users bring; the pipeline exports the first two); DwnasError naming the file if not.

    ``onnx_cpu_fallback`` lets an ONNX model run on onnxruntime's CPU provider (with a note)
    when a GPU device was asked for but the installed onnxruntime has no CUDA provider.
    """
    path = Path(path)
    fmt = model_format(path)
    if not path.is_file():
        raise DwnasError(f"{path}: model file not found")
    info = file_info(path)
    if fmt == "onnx":
        return OnnxRunner(path, device, threads, info, cpu_fallback=onnx_cpu_fallback)
    import torch

    if fmt == "torch-export":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.export.load(str(path)).module()
        except Exception as exc:  # torch raises many types for bad archives
            raise DwnasError(f"{path}: cannot load as a torch.export program "
                             f"({_first_line(exc)})") from exc
        return TorchRunner(module, device, channels_last, fmt, info)
    try:
        with warnings.catch_warnings():
            # torch 2.14 deprecates TorchScript; it is still accepted for files users bring.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises RuntimeError, ValueError, zip errors... for bad files
        raise DwnasError(f"{path}: cannot load as TorchScript ({_first_line(exc)})") from exc
    return TorchRunner(module, device, channels_last, "torchscript", info)


def module_runner(module, device: str, channels_last: bool = False) -> Runner:
    """Wrap an in-process ``nn.Module`` (changed in place, see :class:`TorchRunner`)."""
    info = {
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "parameters": sum(p.numel() for p in module.parameters()),
    }
    return TorchRunner(module, device, channels_last, "module", info)
