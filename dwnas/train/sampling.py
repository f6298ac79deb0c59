"""Which subnets and which resolution a training step uses: a pure function of (seed, step).

Deriving them from the global step (not from a stateful RNG) is what lets every distributed rank
pick the same subnets without communication and a resumed run pick the ones it would have picked.
"""

from __future__ import annotations

import random


def step_rng(seed: int, step: int, salt: int = 0) -> random.Random:
    return random.Random(f"dwnas:{seed}:{step}:{salt}")


def step_resolution(seed: int, step: int, lo: int, hi: int) -> int:
    """Any integer in [lo, hi] (a continuum, not a short list): arbitrary-resolution training."""
    if lo == hi:
        return hi
    return step_rng(seed, step, salt=1).randint(lo, hi)


def randomize_linear(space, arch, rng: random.Random):
    """``arch`` with each block's ``linear`` flag drawn from the space's allowed values."""
    from dwnas.space import Arch, BlockArch

    stages = tuple(
        tuple(BlockArch(b.kernel, b.expand, rng.choice(space.linear)) for b in stage)
        for stage in arch.stages
    )
    return Arch(stages, arch.resolution)


def sample_step_archs(space, seed: int, step: int, n: int) -> list:
    """The sandwich rule: the largest deep subnet first (the teacher), then the smallest, then
    random subnets; every subnet but the teacher carries a random ``linear`` mask."""
    rng = step_rng(seed, step)
    archs = [space.largest()]
    if n >= 2:
        archs.append(randomize_linear(space, space.smallest(), rng))
    while len(archs) < n:
        archs.append(space.sample(rng))
    return archs
