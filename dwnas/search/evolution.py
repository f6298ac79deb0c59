"""Evolutionary search over architecture x linear mask x resolution under a latency budget.

The Once-for-All recipe (population, generations, parents = top fraction, children half by
mutation and half by crossover), constrained by a latency predictor. In Double-Win mode the budget
applies to the *shallow* (transformed) form of a candidate; in deep-only mode every block is kept
non-linear and the budget applies to the deep form. Deterministic for a seed. A budget that even
the fastest architecture misses is reported as infeasible up front, never searched forever.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

from dwnas.config import validate_section
from dwnas.errors import DwnasError
from dwnas.progress import progress

MODES = ("double-win", "deep-only")


@dataclass(frozen=True)
class SearchSettings:
    population: int = 100
    generations: int = 500
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    mutate_resolution_prob: float = 0.5
    seed: int = 0
    max_tries: int = 2000

    def check(self) -> None:
        """Hold the fields to the schema's ``search`` rules (they may come as command-line JSON);
        ``seed`` is the params' top-level seed, checked there."""
        fields = {k: v for k, v in asdict(self).items() if k != "seed"}
        validate_section(fields, "search", "search", only_given=True)


@dataclass(frozen=True)
class Candidate:
    arch: object
    accuracy: float
    latency: float


def deep_only(arch):
    """The arch with every block non-linear (the Once-for-All way: nothing to merge)."""
    from dwnas.space import Arch, BlockArch

    return Arch(tuple(tuple(BlockArch(b.kernel, b.expand, False) for b in stage)
                      for stage in arch.stages), arch.resolution)


def fastest_candidates(space, mode: str) -> list:
    """Architectures that bound the fastest reachable latency: the smallest subnet at the lowest
    resolution, with every block deep, and (Double-Win) every block linear."""
    from dwnas.space import Arch, BlockArch

    small = space.smallest().with_resolution(min(space.resolutions()))
    out = [deep_only(small)]
    if mode == "double-win" and True in space.linear:
        out.append(Arch(tuple(tuple(BlockArch(b.kernel, b.expand, True) for b in stage)
                              for stage in small.stages), small.resolution))
    return out


class EvolutionarySearch:
    """``accuracy(arch) -> float`` (cached by the caller or here), ``latency(arch) -> ms``."""

    def __init__(self, space, accuracy: Callable, latency: Callable, settings: SearchSettings,
                 mode: str = "double-win"):
        if mode not in MODES:
            raise DwnasError(f"search mode {mode!r}: use one of {MODES}")
        settings.check()
        self.space, self.settings, self.mode = space, settings, mode
        self._accuracy, self._latency = accuracy, latency
        self.accuracy_cache: dict[str, float] = {}
        self.evaluations = 0
        self.final_population: list = []

    def prepare(self, arch):
        return deep_only(arch) if self.mode == "deep-only" else arch

    def accuracy(self, arch) -> float:
        key = arch.to_json()
        if key not in self.accuracy_cache:
            self.accuracy_cache[key] = float(self._accuracy(arch))
            self.evaluations += 1
        return self.accuracy_cache[key]

    def fastest(self):
        """The fastest architecture of the space under this search's latency (budget floor)."""
        return min(fastest_candidates(self.space, self.mode), key=self._latency)

    def check_feasible(self, budget: float) -> None:
        fastest = self.fastest()
        best = self._latency(fastest)
        if best > budget:
            raise DwnasError(
                f"latency budget {budget:g} ms is infeasible in {self.mode} mode: the fastest "
                f"architecture of the space (smallest subnet at {fastest.resolution} px"
                f"{', all blocks linear' if fastest.num_linear else ''}) is predicted at "
                f"{best:.4g} ms")

    def _random_feasible(self, rng: random.Random, budget: float):
        """A random architecture within ``budget``; when uniform samples (``max_tries`` of them)
        miss a budget that only a corner of the space meets, a random walk of mutations from
        the fastest architecture (feasible, :meth:`check_feasible`) seeds the population."""
        if not self._sampling_hopeless:
            for _ in range(self.settings.max_tries):
                arch = self.prepare(self.space.sample(rng))
                if self._latency(arch) <= budget:
                    return arch
            self._sampling_hopeless = True
            print(f"search: no uniform sample met {budget:g} ms in {self.settings.max_tries} "
                  "tries; seeding the population from the fastest architecture", flush=True)
        walk = self.prepare(self.fastest())
        for _ in range(rng.randrange(1, 8)):
            child = self._evolve_child(lambda w=walk: self.space.mutate(
                w, rng, max(self.settings.mutate_prob, 0.2), self.settings.mutate_resolution_prob),
                budget)
            walk = child if child is not None else walk
        return walk

    def _evolve_child(self, make: Callable, budget: float):
        for _ in range(self.settings.max_tries):
            child = self.prepare(make())
            if self._latency(child) <= budget:
                return child
        return None

    def run(self, budget: float, label: str = "search") -> Candidate:
        """The most accurate architecture whose constrained latency is within ``budget`` (ms)."""
        s = self.settings
        self.check_feasible(budget)
        self._sampling_hopeless = False
        rng = random.Random(f"{s.seed}:{budget}:{self.mode}")
        population = [self._random_feasible(rng, budget) for _ in range(s.population)]
        n_parents = max(1, int(round(s.parent_ratio * s.population)))
        n_mutate = int(round(s.mutation_ratio * s.population))
        best = None
        for generation in progress(range(s.generations + 1), desc=f"{label} {budget:g} ms"):
            scored = sorted(population,
                            key=lambda a: (-self.accuracy(a), self._latency(a), a.to_json()))
            parents = scored[:n_parents]
            top = parents[0]
            if best is None or self.accuracy(top) > best.accuracy:
                best = Candidate(top, self.accuracy(top), self._latency(top))
            if generation == s.generations:
                self.final_population = scored
                break
            children, seen = list(parents), {a.to_json() for a in parents}
            attempts = 0
            while len(children) < s.population and attempts < s.population * 20:
                attempts += 1
                if len(children) - n_parents < n_mutate:
                    parent = parents[rng.randrange(len(parents))]
                    child = self._evolve_child(
                        lambda p=parent: self.space.mutate(p, rng, s.mutate_prob,
                                                           s.mutate_resolution_prob), budget)
                else:
                    a, b = parents[rng.randrange(len(parents))], parents[rng.randrange(len(parents))]
                    child = self._evolve_child(lambda a=a, b=b: self.space.crossover(a, b, rng),
                                               budget)
                if child is not None and child.to_json() not in seen:
                    seen.add(child.to_json())
                    children.append(child)
            population = children
        return best
