"""``dwnas transform``: a searched architecture -> verified, evaluated deep and shallow deploy files.

Writes into ``--out`` atomically (all files or none), through the one export path of every
method (:func:`dwnas.transform.deploy.export_network`):

* ``deep.<ext>`` / ``shallow.<ext>`` for each ``--runtimes`` entry: ``.pt2`` (a ``torch.export``
  program, ``torch.export.load``) and ``.onnx`` (onnxruntime, TensorRT); the deep network with BN
  folded and the shallow one with its linear blocks merged, both after BN recalibration at the
  arch's resolution with the search's own images and code (``--prepared`` and the evaluation
  flags), so the files are the networks the search evaluated;
* ``transform.json``: errors, counts, the arch, and top-1 of every exported file, evaluated from
  the file on the validation split.

Nothing is written when any check exceeds ``--tolerance`` (relative to the output scale).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dwnas.cli import add_eval_flags, add_runtimes_flag


def _transform(args: argparse.Namespace) -> int:
    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, write_json
    from dwnas.nn.checkpoint import checkpoint_images_seen, load_supernet
    from dwnas.space import Arch
    from dwnas.train.evaluate import EvalData, file_digest
    from dwnas.transform.deploy import export_network

    if not args.tolerance > 0:
        raise DwnasError(f"--tolerance must be > 0 (got {args.tolerance})")
    expect_space = None
    if args.params is not None:
        from dwnas.config import load_params
        from dwnas.space import Space

        expect_space = Space.from_params(load_params(args.params)["space"])
    arch = Arch.load(args.arch)
    supernet, ckpt = load_supernet(args.checkpoint, expect_space)
    supernet.space.validate(arch, source=f"{args.arch}")
    # the search's evaluation: images decoded at the space's largest resolution, resized per arch
    evaluation = EvalData.load(args.prepared, max(supernet.space.resolutions()), args.calib_images,
                               args.val_images, args.seed, args.eval_batch)
    deep = supernet.subnet(arch)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        figures = export_network(deep, tmp, arch.resolution, evaluation, args.runtimes,
                                 args.tolerance, args.seed)
        summary = {"arch": arch.to_dict(), **figures, "blocks": len(arch.blocks),
                   "linear_blocks": arch.num_linear, "checkpoint": str(args.checkpoint),
                   "checkpoint_sha256": file_digest(args.checkpoint),
                   "space_fingerprint": ckpt["fingerprint"],
                   "images_seen": checkpoint_images_seen(ckpt)}
        write_json(tmp / "transform.json", summary)
    metrics = {k: v for k, v in summary.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    metrics.update({f"top1.{k}": v for k, v in (figures["top1"] or {}).items()})
    track.log_stage("transform",
                    {"arch": arch.to_json(), "checkpoint": str(args.checkpoint),
                     "tolerance": args.tolerance, "runtimes": args.runtimes},
                    metrics, [out / "transform.json"])
    files = ", ".join(f"{k} {v:.4f}" for k, v in figures["top1"].items() if k != "evaluated")
    print(f"{out}: {len(arch.blocks)} blocks ({arch.num_linear} linear) -> depth "
          f"{figures['layers_deep']} -> {figures['layers_shallow']}, MACs "
          f"{figures['macs_deep'] / 1e6:.1f} M -> {figures['macs_shallow'] / 1e6:.1f} M, max rel "
          f"err {figures['max_rel_err']:.2e}; top-1 {figures['top1']['evaluated']:.4f} "
          f"(files: {files})")
    return 0


def register(sub) -> None:
    parser = sub.add_parser(
        "transform", help="deep -> shallow: recalibrate, merge, verify, export, evaluate the files")
    parser.add_argument("--arch", required=True, help="architecture JSON file")
    parser.add_argument("--checkpoint", required=True, help="supernet checkpoint (dwnas supernet)")
    parser.add_argument("--prepared", required=True,
                        help="prepared dataset: BN recalibration and the files' top-1")
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    parser.add_argument("--params", default=None,
                        help="params YAML file: refuse a checkpoint of another space than its own")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="max error relative to the output scale (default 1e-5)")
    add_eval_flags(parser, calib_help="training images to recalibrate BN (the search's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of images, inputs, random BN")
    add_runtimes_flag(parser)
    parser.set_defaults(func=_transform)
