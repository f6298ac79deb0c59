"""DepthShrinker-style shrinking (Fu et al., ICML 2022) of a deep-only search result.

The deep-only network (every block keeps its activations, weights from the elastic supernet) is
shrunk after the fact:

1. **Rank** the searchable blocks by the top-1 lost when that block alone drops its activations
   (BN recalibrated each time); the ``round(linear_fraction * blocks)`` cheapest blocks are chosen.
   DepthShrinker learns a mask over activations under a sparsity target; a one-shot ranking is this
   project's simpler choice.
2. **Fine-tune** with the chosen blocks' activations blended towards the identity over the first
   ``recipe.linearize_epochs`` epochs (progressive linearisation), distilling from the deep
   network when ``recipe.distill`` is set.
3. **Merge** the now linear blocks into single convolutions (:func:`dwnas.transform.transform`,
   verified), exactly as Double-Win's shallow form is made.

The difference to Double-Win is that the linear mask is chosen after the search, not searched
jointly with the architecture.
"""

from __future__ import annotations

import math
from pathlib import Path

from dwnas.errors import DwnasError
from dwnas.space import Arch, BlockArch


def with_linear(arch: Arch, flat_indices: set[int]) -> Arch:
    """``arch`` with the blocks at ``flat_indices`` (over all stages, in order) made linear."""
    stages, i = [], 0
    for stage in arch.stages:
        blocks = []
        for block in stage:
            blocks.append(BlockArch(block.kernel, block.expand, i in flat_indices))
            i += 1
        stages.append(tuple(blocks))
    return Arch(tuple(stages), arch.resolution)


def count_to_linearise(blocks: int, fraction: float) -> int:
    if not 0 <= fraction <= 1:
        raise DwnasError(f"depthshrinker.linear_fraction: must be in [0, 1] (got {fraction})")
    return min(blocks, int(math.floor(fraction * blocks + 0.5)))


def rank_blocks(arch: Arch, accuracy) -> list[dict]:
    """Per searchable block, the top-1 with only that block linear (``accuracy(arch) -> top1``),
    sorted from the cheapest removal to the dearest (ties: earlier block first)."""
    base = accuracy(arch)
    rows = []
    for i in range(len(arch.blocks)):
        top1 = accuracy(with_linear(arch, {i}))
        rows.append({"block": i, "top1": top1, "drop": base - top1})
    return sorted(rows, key=lambda r: (r["drop"], r["block"]))


def set_alpha(net, alpha: float) -> None:
    """Set the activation blend of every linear block of a static network (1 = fully linear)."""
    from dwnas.nn.static import StaticMBConv

    for module in net.modules():
        if isinstance(module, StaticMBConv) and module.linear:
            module.alpha = float(alpha)


def run(setup, *, checkpoint: str | Path, arch_file: str | Path, budget: str,
        linear_fraction: float, recipe: dict) -> dict:
    """Shrink the deep-only search result ``arch_file`` (weights from the elastic supernet
    ``checkpoint``): rank the blocks, linearise ``linear_fraction`` of them, fine-tune with
    ``recipe`` (the params section ``baselines.depthshrinker.recipe``), keep the fine-tuned network
    only when it is no worse on training images, and write ``setup.out``
    (:func:`~dwnas.baselines.common.finish`); ``budget`` labels the row. Returns the summary."""
    from dwnas import track
    from dwnas.baselines.common import finish, fit, images_seen, log, recipe_of
    from dwnas.nn.checkpoint import checkpoint_images_seen, load_supernet
    from dwnas.search.evolution import deep_only
    from dwnas.train.recipe import linear_alpha

    training = recipe_of(recipe, "baselines.depthshrinker.recipe")
    supernet, ckpt = load_supernet(checkpoint)
    found = supernet.space.validate(Arch.load(arch_file), source=str(arch_file))
    deep = deep_only(found)
    n_linear = count_to_linearise(len(deep.blocks), linear_fraction)
    resolution = deep.resolution
    data = setup.eval_data(resolution)
    cache: dict[str, float] = {}

    def top1(candidate) -> float:
        key = candidate.to_json()
        if key not in cache:
            cache[key] = data.accuracy(supernet.subnet(candidate), resolution)["top1"]
        return cache[key]

    ranking = rank_blocks(deep, top1)
    chosen = sorted(r["block"] for r in ranking[:n_linear])
    shrunk = with_linear(deep, set(chosen))
    log(f"depthshrinker {budget}: activations removed in blocks {chosen} of "
        f"{len(deep.blocks)} (top-1 deep {top1(deep):.4f}, abruptly linearised {top1(shrunk):.4f})")
    teacher = data.calibrate(supernet.subnet(deep), resolution).eval()
    student = supernet.subnet(shrunk, linear_alpha=0.0)
    params = {"arch": deep.to_json(), "checkpoint": str(checkpoint),
              "linear_fraction": linear_fraction, "recipe": recipe, "seed": setup.seed}
    with track.stage_run("baseline_depthshrinker", params) as stage:
        history = fit(student, setup.prepared, training, resolution, setup.seed,
                      workers=setup.workers, teacher=teacher,
                      on_step=lambda e: set_alpha(student, linear_alpha(training, e)),
                      desc=f"depthshrinker {budget}")
        for epoch in history:
            stage.log_metrics(epoch, step=epoch["epoch"])
        set_alpha(student, 1.0)
        # fine-tuning must not make the network worse than abruptly linearised: judged on
        # training images (the calibration sample), never on the validation split
        train_top1 = {"before": data.train_accuracy(supernet.subnet(shrunk), resolution)["top1"],
                      "after": data.train_accuracy(student, resolution)["top1"]}
        kept = train_top1["after"] >= train_top1["before"]
        if not kept:
            student.load_state_dict(supernet.subnet(shrunk).state_dict())
            log(f"depthshrinker {budget}: fine-tuning lowered training-image top-1 "
                f"{train_top1['before']:.4f} -> {train_top1['after']:.4f}; kept the network as "
                "linearised")
        return finish("depthshrinker", budget, student, setup, resolution,
                      evaluation=data, description=shrunk.to_dict(), extra_files={},
                      summary_extra={"source_arch": str(arch_file), "linear_blocks": chosen,
                                     "num_linear": len(chosen), "blocks": len(deep.blocks),
                                     "top1_deep": top1(deep), "top1_before_finetune": top1(shrunk),
                                     "ranking": ranking, "finetune": history,
                                     "finetune_kept": kept, "finetune_train_top1": train_top1,
                                     "epochs": training.epochs,
                                     "images_seen": checkpoint_images_seen(ckpt)
                                     + images_seen(history)},
                      params=params, run=stage, space_fingerprint=ckpt["fingerprint"])
