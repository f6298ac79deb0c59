"""Search speed: latency predictions per second, and a whole evolutionary search's wall time.

Prints one JSON object. The latency table is profiled here on the smoke space with a fast timer
(the measurement backend, few iterations); accuracy is served from a cache (a fitted predictor
stands in for the cache hits), so the wall time is the search's own cost.

    python benchmarks/search_speed.py [--population 100] [--generations 100]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import yaml

from dwnas.measure.api import measure_module
from dwnas.search.accuracy import RidgePredictor
from dwnas.search.evolution import EvolutionarySearch, SearchSettings
from dwnas.search.latency import profile_space
from dwnas.space import Space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--predictions", type=int, default=20000)
    args = parser.parse_args()
    params = yaml.safe_load(Path(args.params).read_text())
    space = Space.from_params(params["space"])
    grid = params["profile"]["grid"]

    def timer(module, shape):
        settings = {"warmup": 1, "iters": 3, "threads": 1, "trt": False}
        return measure_module(module, shape, settings)["latency_ms"]["median"]

    t0 = time.perf_counter()
    table = profile_space(space, "host", timer, grid, num_classes=10)
    profile_s = time.perf_counter() - t0

    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(1000)]
    t0 = time.perf_counter()
    for i in range(args.predictions):
        table.predict(archs[i % len(archs)], "shallow")
    predictions_per_s = args.predictions / (time.perf_counter() - t0)

    predictor = RidgePredictor.fit(space, archs[:200], [sum(b.expand for b in a.blocks) for a in archs[:200]])
    settings = SearchSettings(population=args.population, generations=args.generations, seed=0)
    search = EvolutionarySearch(space, lambda a: predictor.predict(space, a),
                                lambda a: table.predict(a, "shallow"), settings)
    budget = 0.6 * table.predict(space.largest(), "deep")
    t0 = time.perf_counter()
    best = search.run(budget)
    search_s = time.perf_counter() - t0
    print(json.dumps({
        "benchmark": "search_speed", "params": args.params,
        "table_entries": sum(len(v) for v in table.entries.values()), "profile_s": profile_s,
        "latency_predictions_per_s": predictions_per_s,
        "search": {"population": args.population, "generations": args.generations,
                   "wall_s": search_s, "accuracy_evaluations": search.evaluations,
                   "budget_ms": budget, "best_latency_ms": best.latency},
    }, indent=2))


if __name__ == "__main__":
    main()
