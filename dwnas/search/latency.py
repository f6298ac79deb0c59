"""Device latency tables: per-block latency over a grid of input resolutions, and a predictor.

``dwnas profile`` times every block configuration of a space in each deployed form a network can
hold it in (the forms ``dwnas transform`` exports, BN folded in both):

* ``folded`` - a non-linear MBConv with its three convolutions and ReLU6s, BN folded (in both
  forms);
* ``merged`` - the single dense kxk convolution a linear block becomes in the shallow network;
* ``unmerged`` - a linear block in the deep network (three convolutions, no activation);

plus the fixed parts (stem + first block, head + pool + classifier). Each part is exported to the
table's runtime (``torch``: a ``torch.export`` program; ``onnxruntime``: an ONNX file) and the
file is timed as ``dwnas measure`` times a whole network's file, so the table predicts what the
pipeline measures. One calibration scale, fitted over both forms, maps the sum of the parts to an
end-to-end network: two identical graphs always predict the same latency.
Each configuration is keyed by (stage, position: the stage's first block or a later one, kernel,
expand) and timed at every network resolution of the grid; the predictor sums the parts of an
architecture and interpolates linearly in pixel count between the two nearest grid resolutions.
A table records the device and the space it was made for, and refuses to predict for others.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from dwnas.errors import DwnasError
from dwnas.io import read_json, write_json

FORMS = ("deep", "shallow")
FORMAT = "dwnas-latency-table"


def spatial_sizes(space, resolution: int) -> list[tuple[int, int]]:
    """(input, output) feature-map side of each stage at a network ``resolution``."""
    side = -(-resolution // 2)  # the stem has stride 2
    sizes = []
    for st in space.stages:
        out = -(-side // st.stride)
        sizes.append((side, out))
        side = out
    return sizes


def block_key(stage: int, first: bool, kernel: int, expand: int, form: str) -> str:
    return f"s{stage}.{'first' if first else 'rest'}.k{kernel}.e{expand}.{form}"


@dataclass
class LatencyTable:
    device: str
    space_fingerprint: str
    grid: list[int]
    entries: dict[str, dict[str, float]]
    device_description: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    runtime: str = "torch"

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "device": self.device, "runtime": self.runtime,
                "space_fingerprint": self.space_fingerprint, "grid": self.grid, "entries": self.entries,
                "device_description": self.device_description, "settings": self.settings}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, space=None, device: str | None = None,
             runtime: str | None = None) -> LatencyTable:
        """Read a table; refuse one made for another space, device or runtime, naming both."""
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DwnasError(f"{path}: not a dwnas latency table")
        table = cls(data["device"], data["space_fingerprint"], [int(r) for r in data["grid"]],
                    data["entries"], data.get("device_description", {}), data.get("settings", {}),
                    data.get("runtime", "torch"))
        if space is not None and space.fingerprint() != table.space_fingerprint:
            raise DwnasError(f"{path}: latency table of another search space (table "
                             f"{table.space_fingerprint}, space {space.fingerprint()}); re-run "
                             "`dwnas profile` for this space")
        if device is not None and device != table.device:
            raise DwnasError(f"{path}: latency table made on device {table.device!r}, not "
                             f"{device!r}; profile the target device")
        if runtime is not None and runtime != table.runtime:
            raise DwnasError(f"{path}: latency table of runtime {table.runtime!r}, not {runtime!r};"
                             " profile that runtime")
        return table

    # -- prediction -----------------------------------------------------------------------------
    def _at(self, key: str, resolution: int) -> float:
        grid = self.grid
        if not grid[0] <= resolution <= grid[-1]:
            raise DwnasError(f"resolution {resolution} is outside the latency table's grid "
                             f"[{grid[0]}, {grid[-1]}]")
        try:
            if resolution in grid:
                return self.entries[str(resolution)][key]
            hi = bisect.bisect_left(grid, resolution)
            r0, r1 = grid[hi - 1], grid[hi]
            t = (resolution**2 - r0**2) / (r1**2 - r0**2)
            v0, v1 = self.entries[str(r0)][key], self.entries[str(r1)][key]
        except KeyError as exc:
            raise DwnasError(f"latency table has no entry {exc.args[0]!r} at {resolution} px: it "
                             "does not cover this architecture's space") from None
        return v0 + t * (v1 - v0)

    def predict(self, arch, form: str = "shallow") -> float:
        """Predicted end-to-end latency (ms) of ``arch`` in ``form`` (deep or shallow)."""
        if form not in FORMS:
            raise DwnasError(f"latency form {form!r}: use one of {FORMS}")
        r = arch.resolution
        overhead = float(self.settings.get("call_overhead_ms", 0.0))
        parts = [self._at("stem", r), self._at("head", r)]
        for s, stage in enumerate(arch.stages):
            for b, block in enumerate(stage):
                kind = ("folded" if not block.linear else
                        "merged" if form == "shallow" else "unmerged")
                parts.append(self._at(block_key(s, b == 0, block.kernel, block.expand, kind), r))
        # every entry was timed as its own call; the network pays the call overhead only once
        raw = sum(parts) - overhead * (len(parts) - 1)
        return raw * self.scale

    @property
    def scale(self) -> float:
        """The one end-to-end calibration scale (the same for every form and graph)."""
        return float((self.settings.get("calibration") or {}).get("scale", 1.0))


# -- profiling -------------------------------------------------------------------------------------
def _fixed_modules(space, num_classes: int):
    """(stem + first block, head + pool + classifier), deployed (BN folded) as the exports are."""
    from torch import nn

    from dwnas.nn.static import ConvBNReLU6, StaticMBConv, init_weights
    from dwnas.transform.fuse import deploy_block, deploy_conv_bn_relu6

    fb = space.first_block
    stem_conv = ConvBNReLU6(3, space.stem_out, 3, stride=2)
    first = StaticMBConv(space.stem_out, space.first_out, fb.kernel, 1, fb.expand)
    head_conv = ConvBNReLU6(space.stage_out(len(space.stages) - 1), space.head_out, 1)
    classifier = nn.Linear(space.head_out, num_classes)
    for module in (stem_conv, first, head_conv, classifier):
        init_weights(module)
        module.eval()
    stem = nn.Sequential(deploy_conv_bn_relu6(stem_conv), deploy_block(first)).eval()
    head = nn.Sequential(deploy_conv_bn_relu6(head_conv), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         classifier).eval()
    return stem, head


def profile_space(space, device: str, measure, grid: list[int], num_classes: int,
                  progress_desc: str = "profile", runtime: str = "torch") -> LatencyTable:
    """Time every block configuration of ``space`` at every grid resolution.

    ``measure(module, input_shape) -> median ms`` does the timing (the measurement backend).
    """
    from dwnas.nn.static import StaticMBConv, init_weights
    from dwnas.progress import progress
    from dwnas.transform.fuse import deploy_block, merge_block

    stem, head = _fixed_modules(space, num_classes)
    jobs = []
    for r in grid:
        sizes = spatial_sizes(space, r)
        last = space.stage_out(len(space.stages) - 1)
        jobs.append((r, "stem", stem, (3, r, r)))
        jobs.append((r, "head", head, (last, sizes[-1][1], sizes[-1][1])))
        for s, st in enumerate(space.stages):
            for first in (True, False):
                if not first and max(st.depths) < 2:
                    continue
                cin = space.stage_in(s) if first else space.stage_out(s)
                side = sizes[s][0] if first else sizes[s][1]
                stride = st.stride if first else 1
                for k in st.kernels:
                    for e in st.expands:
                        deep = StaticMBConv(cin, space.stage_out(s), k, stride, e, linear=False)
                        linear = StaticMBConv(cin, space.stage_out(s), k, stride, e, linear=True)
                        for block in (deep, linear):
                            init_weights(block)
                            block.eval()
                        shape = (cin, side, side)
                        jobs.append((r, block_key(s, first, k, e, "folded"), deploy_block(deep), shape))
                        jobs.append((r, block_key(s, first, k, e, "merged"), merge_block(linear), shape))
                        jobs.append((r, block_key(s, first, k, e, "unmerged"), deploy_block(linear),
                                     shape))
    from torch import nn

    entries: dict[str, dict[str, float]] = {str(r): {} for r in grid}
    overhead = float(measure(nn.Identity(), (1, 1, 1)))
    for r, key, module, shape in progress(jobs, desc=progress_desc):
        entries[str(r)][key] = float(measure(module, shape))
    return LatencyTable(device, space.fingerprint(), sorted(grid), entries,
                        settings={"call_overhead_ms": overhead}, runtime=runtime)


def _end_to_end(table: LatencyTable, space, measure, num_classes: int, n_archs: int, salt: str,
                progress_desc: str):
    """(arch index, arch, form, measured ms, predicted ms) for ``n_archs`` random archs."""
    import random

    from dwnas.nn.static import build_static
    from dwnas.progress import progress
    from dwnas.transform.network import fold_deep, transform

    rng = random.Random(salt)
    lo, hi = table.grid[0], table.grid[-1]
    resolutions = [r for r in space.resolutions() if lo <= r <= hi]
    for i in progress(range(n_archs), desc=progress_desc):
        arch = space.sample(rng).with_resolution(rng.choice(resolutions))
        deep = build_static(space, arch, num_classes).eval()
        nets = {"deep": fold_deep(deep), "shallow": transform(deep)}
        for form, net in nets.items():
            measured = float(measure(net, (3, arch.resolution, arch.resolution)))
            yield i, arch, form, measured, table.predict(arch, form)


def canary_network(space, num_classes: int, seed: int):
    """(arch, deployed deep network) of the machine-drift reference: the space's largest arch at
    its middle resolution, BN folded, weights from ``seed``. ``dwnas profile`` times its file
    beside the table; ``dwnas compare`` times the same file inside its interleaved rounds, so
    measured / profiled is how much faster or slower the machine runs now than when the table was
    made (a VM's speed drifts by several percent between minutes)."""
    import torch

    from dwnas.nn.static import build_static
    from dwnas.transform.network import fold_deep

    resolutions = space.resolutions()
    arch = space.largest().with_resolution(resolutions[len(resolutions) // 2])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = fold_deep(build_static(space, arch, num_classes).eval())
    return arch, net


def calibrate(table: LatencyTable, space, measure, num_classes: int, n_archs: int, seed: int) -> dict:
    """Fit ONE scale: the median of measured / summed latency over ``n_archs`` random archs timed
    end to end in both forms (a network runs at another speed than its parts timed alone:
    caches, allocation, the runtime's per-call cost). One scale for every form keeps two
    identical graphs predicting the same latency (a scale per form made a graph predict 8% higher
    as Double-Win's shallow form than as deep-only's deep form, biasing the search against
    Double-Win).
    The median keeps a run disturbed by another process from skewing the fit."""
    import statistics

    table.settings.pop("calibration", None)
    ratios = [measured / predicted for _, _, _, measured, predicted in _end_to_end(
        table, space, measure, num_classes, n_archs, f"calibration:{seed}", "calibration")]
    table.settings["calibration"] = {"scale": statistics.median(ratios), "archs": n_archs}
    return table.settings["calibration"]


def fidelity(table: LatencyTable, space, measure, num_classes: int, n_archs: int, seed: int,
             progress_desc: str = "fidelity") -> dict:
    """Predicted vs measured end-to-end latency of ``n_archs`` random archs, deep and shallow
    (other archs than :func:`calibrate` saw)."""
    rows = []
    for i, arch, form, measured, predicted in _end_to_end(
            table, space, measure, num_classes, n_archs, f"fidelity:{seed}", progress_desc):
        rows.append({"arch_index": i, "form": form, "resolution": arch.resolution,
                     "num_linear": arch.num_linear, "predicted_ms": predicted,
                     "measured_ms": measured,
                     "error": (predicted - measured) / measured, "arch": arch.to_dict()})
    summary = {}
    for form in ("deep", "shallow", "all"):
        errs = [abs(r["error"]) for r in rows if form == "all" or r["form"] == form]
        summary[form] = {"mape": sum(errs) / len(errs), "within_10pct": sum(e <= 0.10 for e in errs) / len(errs),
                         "n": len(errs)}
    return {"device": table.device, "runtime": table.runtime, "archs": n_archs, "summary": summary,
            "calibration": table.settings.get("calibration"), "rows": rows}
