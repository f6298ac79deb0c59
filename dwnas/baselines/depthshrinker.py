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
