"""HURRICANE's per-layer path space: the paths the supernet trains on (some layers searched, the
others fixed) and the evolutionary search over them under a latency budget."""

from __future__ import annotations

import json
from dataclasses import dataclass

from dwnas.baselines.hurricane.ops import layers_of
from dwnas.errors import DwnasError
from dwnas.search.evolution import EvolutionarySearch


@dataclass(frozen=True)
class OpPath:
    """One operator name per layer; JSON is the list of names."""

    ops: tuple[str, ...]

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(list(self.ops), indent=indent)


class PathSpace:
    """The layers ``searched`` take any of their choices; the others stay at ``fixed``."""

    def __init__(self, choices: list[list[str]], searched: set[int], fixed: list[str]):
        self.choices, self.searched, self.fixed = choices, set(searched), list(fixed)

    def _choose(self, i: int, rng) -> str:
        return rng.choice(self.choices[i]) if i in self.searched else self.fixed[i]

    def sample(self, rng) -> OpPath:
        return OpPath(tuple(self._choose(i, rng) for i in range(len(self.choices))))

    def mutate(self, path: OpPath, rng, p: float = 0.1, p_res: float = 0.0) -> OpPath:
        return OpPath(tuple(self._choose(i, rng) if i in self.searched and rng.random() < p else op
                            for i, op in enumerate(path.ops)))

    def crossover(self, a: OpPath, b: OpPath, rng) -> OpPath:
        return OpPath(tuple(x if rng.random() < 0.5 else y for x, y in zip(a.ops, b.ops, strict=True)))

    def fastest(self, op_ms) -> OpPath:
        """Per searched layer the operator with the least ``op_ms(layer, name)``."""
        return OpPath(tuple(min(self.choices[i], key=lambda n, i=i: (op_ms(i, n), n))
                            if i in self.searched else self.fixed[i]
                            for i in range(len(self.choices))))


class PathSearch(EvolutionarySearch):
    """The project's evolutionary search (population, top parents, half mutation and half
    crossover, latency-feasible children) over a :class:`PathSpace`."""

    def __init__(self, space: PathSpace, accuracy, latency, settings, op_ms):
        super().__init__(space, accuracy, latency, settings, mode="double-win")
        self.mode = "hurricane"  # labels and seeds only: no deep-only rewriting of candidates
        self._op_ms = op_ms

    def fastest(self) -> OpPath:
        return self.space.fastest(self._op_ms)

    def check_feasible(self, budget: float) -> None:
        fastest = self.fastest()
        best = self._latency(fastest)
        if best > budget:
            raise DwnasError(f"latency budget {budget:g} ms is infeasible for HURRICANE: the fastest "
                             f"pre-selected path is predicted at {best:.4g} ms")


def split_layers(space, late_stages: int) -> tuple[set[int], set[int]]:
    """(early, late) layer indices: late = the layers of the last ``late_stages`` stages."""
    n = len(space.stages)
    if not 1 <= late_stages < n:
        raise DwnasError(f"hurricane.late_stages: must be in [1, {n - 1}] for a space of {n} stages "
                         f"(got {late_stages})")
    late = {i for i, layer in enumerate(layers_of(space)) if layer.stage >= n - late_stages}
    return set(range(len(layers_of(space)))) - late, late


def sampler(choices: list[list[str]], searched: set[int], fixed: list[str], seed: int, salt: int):
    """``step -> path``: searched layers uniform over their choices, a pure function of the step
    (``salt`` tells the two training stages apart)."""
    from dwnas.train.sampling import step_rng

    space = PathSpace(choices, searched, fixed)
    return lambda step: space.sample(step_rng(seed, step, salt=salt)).ops
