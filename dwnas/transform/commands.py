"""``dwnas transform``: a searched architecture -> verified deep and shallow deploy networks.

Writes into ``--out`` atomically (all files or none):

* ``deep.pt`` / ``shallow.pt``: TorchScript archives (``torch.jit.load``, no dwnas needed) of the
  deep network with BN folded and of the shallow one (linear blocks merged);
* ``deep.onnx`` / ``shallow.onnx``: the same in ONNX (dynamic batch / height / width);
* ``transform.json``: errors, counts, the arch.

Nothing is written when any check exceeds ``--tolerance`` (relative to the output scale): the
shallow net against the deep one with the checkpoint's weights and with randomised BN statistics,
the folded deep net, and each exported file reloaded (TorchScript, onnxruntime).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _gate(name: str, report, tolerance: float) -> None:
    from dwnas.errors import DwnasError

    if not report.within(tolerance):
        worst = max(report.per_resolution,
                    key=lambda r: (math.isnan(r["max_rel_err"]), r["max_rel_err"]))
        raise DwnasError(
            f"transform: {name} differs from the deep network by {report.max_rel_err:.3g} "
            f"(relative to the output scale; abs {report.max_abs_err:.3g}) at resolution "
            f"{worst['resolution']}, above --tolerance {tolerance:g}; nothing written")


def _transform(args: argparse.Namespace) -> int:
    import torch

    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, write_json
    from dwnas.nn.checkpoint import load_supernet
    from dwnas.nn.counters import count
    from dwnas.space import Arch
    from dwnas.transform.export import export_onnx, export_torchscript, verify_onnx
    from dwnas.transform.network import fold_deep, transform
    from dwnas.transform.verification import verify, verify_transform

    if not args.tolerance > 0:
        raise DwnasError(f"--tolerance must be > 0 (got {args.tolerance})")
    if args.batch < 1:
        raise DwnasError(f"--batch must be >= 1 (got {args.batch})")
    expect_space = None
    if args.params is not None:
        from dwnas.config import load_params
        from dwnas.space import Space

        expect_space = Space.from_params(load_params(args.params)["space"])
    arch = Arch.load(args.arch)
    supernet, ckpt = load_supernet(args.checkpoint, expect_space)
    supernet.space.validate(arch, source=f"{args.arch}")
    resolutions = args.resolutions or [arch.resolution, arch.resolution + 1]
    if min(resolutions) < 8:
        raise DwnasError(f"--resolutions must be >= 8 (got {resolutions})")

    deep = supernet.subnet(arch).eval()
    deep_folded = fold_deep(deep)
    shallow = transform(deep)
    checks = {
        "shallow": verify(deep, shallow, resolutions, args.batch, args.seed),
        "shallow_randomized_bn": verify_transform(deep, resolutions, args.batch, args.seed),
        "deep_folded": verify(deep, deep_folded, resolutions, args.batch, args.seed),
    }
    for name, report in checks.items():
        _gate(name, report, args.tolerance)

    counts_deep, counts_shallow = count(deep_folded, arch.resolution), count(shallow, arch.resolution)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        exports = {
            "deep.pt": export_torchscript(deep_folded, tmp / "deep.pt", arch.resolution, resolutions),
            "shallow.pt": export_torchscript(shallow, tmp / "shallow.pt", arch.resolution, resolutions),
        }
        for name, model in (("deep.onnx", deep_folded), ("shallow.onnx", shallow)):
            export_onnx(model, tmp / name, arch.resolution)
            exports[name] = verify_onnx(tmp / name, model, resolutions, args.batch)
        for name, report in exports.items():
            _gate(f"exported {name}", report, args.tolerance)
        worst = max(checks["shallow"], checks["shallow_randomized_bn"], key=lambda r: r.max_rel_err)
        summary = {
            "arch": arch.to_dict(),
            "resolution": arch.resolution,
            "blocks": len(arch.blocks),
            "linear_blocks": arch.num_linear,
            "max_abs_err": max(checks["shallow"].max_abs_err,
                               checks["shallow_randomized_bn"].max_abs_err),
            "max_rel_err": worst.max_rel_err,
            "tolerance": args.tolerance,
            "verify_resolutions": [int(r) for r in resolutions],
            "layers_deep": counts_deep.depth,
            "layers_shallow": counts_shallow.depth,
            "params_deep": counts_deep.params,
            "params_shallow": counts_shallow.params,
            "params_deep_with_bn": count(deep, arch.resolution).params,
            "macs_deep": counts_deep.macs,
            "macs_shallow": counts_shallow.macs,
            "verify": {name: report.to_dict() for name, report in checks.items()},
            "exports": {name: report.to_dict() for name, report in exports.items()},
            "checkpoint": str(args.checkpoint),
            "space_fingerprint": ckpt["fingerprint"],
            "torch": torch.__version__,
        }
        write_json(tmp / "transform.json", summary)
    track.log_stage(
        "transform",
        {"arch": arch.to_json(), "checkpoint": str(args.checkpoint), "tolerance": args.tolerance,
         "resolutions": [int(r) for r in resolutions]},
        {k: v for k, v in summary.items() if k not in ("arch", "verify", "exports")},
        [out / "transform.json"],
    )
    print(f"{out}: {len(arch.blocks)} blocks ({arch.num_linear} linear) -> depth "
          f"{counts_deep.depth} -> {counts_shallow.depth}, MACs {counts_deep.macs / 1e6:.1f} M -> "
          f"{counts_shallow.macs / 1e6:.1f} M, max rel err {summary['max_rel_err']:.2e}")
    return 0


def register(sub) -> None:
    parser = sub.add_parser(
        "transform", help="deep -> shallow: merge, verify, export")
    parser.add_argument("--arch", required=True, help="architecture JSON file")
    parser.add_argument("--checkpoint", required=True, help="supernet checkpoint (dwnas supernet)")
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    parser.add_argument("--params", default=None,
                        help="params YAML file: refuse a checkpoint of another space than its own")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="max error relative to the output scale (default 1e-5)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None,
                        help="verification resolutions (default: the arch's and the next, odd or "
                        "even, size)")
    parser.add_argument("--batch", type=int, default=2, help="verification batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of inputs and random BN stats")
    parser.set_defaults(func=_transform)
