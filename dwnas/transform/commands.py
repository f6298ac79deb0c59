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
The work is :func:`dwnas.transform.run.run`; this module only parses the flags.
"""

from __future__ import annotations

import argparse

from dwnas.cli import add_eval_flags, add_runtimes_flag


def _transform(args: argparse.Namespace) -> int:
    from dwnas.transform.run import run

    run(checkpoint=args.checkpoint, arch=args.arch, prepared=args.prepared, out=args.out,
        runtimes=args.runtimes, params=args.params, tolerance=args.tolerance, seed=args.seed,
        calib_images=args.calib_images, val_images=args.val_images, eval_batch=args.eval_batch)
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
