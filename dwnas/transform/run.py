"""The transform stage as a library function: :func:`run` turns one searched architecture into
verified, evaluated deep and shallow deploy files.

Data flow: the elastic supernet checkpoint gives the deep subnet of ``arch``; the prepared images
(the search's own evaluation: decoded at the space's largest resolution, resized per arch)
recalibrate its BN and evaluate the exported files; :func:`dwnas.transform.deploy.export_network`
folds, merges, verifies and exports both forms. ``out`` is written atomically (all files or none).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def run(*, checkpoint: str | Path, arch: str | Path, prepared: str | Path, out: str | Path,
        runtimes: Sequence[str], params: str | Path | None = None, tolerance: float = 1e-5,
        seed: int = 0, calib_images: int = 500, val_images: int | None = None,
        eval_batch: int = 128) -> dict:
    """Export ``arch`` (an architecture JSON file) of the supernet ``checkpoint`` for each of
    ``runtimes`` into ``out`` with ``transform.json``; log the stage and return the summary.
    ``params`` (a params YAML) refuses a checkpoint of another space than its own; nothing is
    written when a check exceeds ``tolerance`` (relative to the output scale)."""
    from dwnas import track
    from dwnas.errors import DwnasError
    from dwnas.io import atomic_dir, write_json
    from dwnas.nn.checkpoint import checkpoint_images_seen, load_supernet
    from dwnas.space import Arch
    from dwnas.train.evaluate import EvalData, file_digest
    from dwnas.transform.deploy import export_network

    if not tolerance > 0:
        raise DwnasError(f"--tolerance must be > 0 (got {tolerance})")
    expect_space = None
    if params is not None:
        from dwnas.config import load_params
        from dwnas.space import Space

        expect_space = Space.from_params(load_params(params)["space"])
    searched = Arch.load(arch)
    supernet, ckpt = load_supernet(checkpoint, expect_space)
    supernet.space.validate(searched, source=f"{arch}")
    evaluation = EvalData.load(prepared, max(supernet.space.resolutions()), calib_images,
                               val_images, seed, eval_batch)
    deep = supernet.subnet(searched)
    out = Path(out)
    with atomic_dir(out) as tmp:
        figures = export_network(deep, tmp, searched.resolution, evaluation, runtimes, tolerance,
                                 seed)
        summary = {"arch": searched.to_dict(), **figures, "blocks": len(searched.blocks),
                   "linear_blocks": searched.num_linear, "checkpoint": str(checkpoint),
                   "checkpoint_sha256": file_digest(checkpoint),
                   "space_fingerprint": ckpt["fingerprint"],
                   "images_seen": checkpoint_images_seen(ckpt)}
        write_json(tmp / "transform.json", summary)
    metrics = {k: v for k, v in summary.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    metrics.update({f"top1.{k}": v for k, v in (figures["top1"] or {}).items()})
    track.log_stage("transform",
                    {"arch": searched.to_json(), "checkpoint": str(checkpoint),
                     "tolerance": tolerance, "runtimes": runtimes},
                    metrics, [out / "transform.json"])
    files = ", ".join(f"{k} {v:.4f}" for k, v in figures["top1"].items() if k != "evaluated")
    print(f"{out}: {len(searched.blocks)} blocks ({searched.num_linear} linear) -> depth "
          f"{figures['layers_deep']} -> {figures['layers_shallow']}, MACs "
          f"{figures['macs_deep'] / 1e6:.1f} M -> {figures['macs_shallow'] / 1e6:.1f} M, max rel "
          f"err {figures['max_rel_err']:.2e}; top-1 {figures['top1']['evaluated']:.4f} "
          f"(files: {files})")
    return summary
