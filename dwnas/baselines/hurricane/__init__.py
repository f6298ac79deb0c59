"""HURRICANE-style hardware-aware NAS (Zhang et al., 2019; arXiv 1910.11609).

What the paper states: a much larger candidate-operator space than hand-designed ones, from which
the operators efficient *on the target device* are pre-selected, a single-path one-shot (SPOS)
supernet, and a two-stage search. The details below are this project's reading (docs/methods.md):

* **Operators** (:func:`.ops.candidate_ops`): inverted-residual MBConv and fused-MBConv (a dense
  kxk expansion instead of 1x1 + depthwise), each with several kernels and expand ratios and with
  squeeze-excitation on or off; ``skip`` (identity) in every layer but a stage's first.
* **Pre-selection** (:func:`.profiling.preselect`): every operator is timed at every layer
  position on the device (BN folded, the measurement backend of ``dwnas measure``); per position
  the ``keep_ops`` operators that run fastest there are kept, as the paper pre-selects the
  operators that are fast on the target device (by MACs per millisecond, as until issue 12, every
  pick was a heavy fused block that does much work quickly but is slow in absolute terms).
* **Supernet** (:class:`.supernet.OpSupernet`): the project's macro structure (stem, fixed first
  block, stages, head) with one independent module per kept operator and layer, trained one
  uniformly sampled path per step (SPOS).
* **Two-stage search**: the layers of the last ``late_stages`` stages are trained and searched
  first, the earlier layers fixed to their fastest choice (``skip`` where allowed); then the earlier
  layers are trained and searched with the later ones fixed to the first stage's result. Each stage
  runs the project's evolutionary search (:class:`.search.PathSearch`) under the latency budget,
  accuracy by BN-recalibrated evaluation of the path.

Modules: ``ops`` (operators, blocks, layers), ``profiling`` (the operator latency table,
pre-selection), ``supernet`` (the SPOS supernet), ``search`` (per-layer paths, their evolution),
``stages`` (``run_supernet``, ``run_search``). Names are imported lazily, so that importing the
package does not import torch.
"""

from dwnas.lazy import lazy_attributes

_EXPORTS = {
    "KINDS": "dwnas.baselines.hurricane.ops",
    "SKIP": "dwnas.baselines.hurricane.ops",
    "Op": "dwnas.baselines.hurricane.ops",
    "candidate_ops": "dwnas.baselines.hurricane.ops",
    "SqueezeExcite": "dwnas.baselines.hurricane.ops",
    "OpBlock": "dwnas.baselines.hurricane.ops",
    "Layer": "dwnas.baselines.hurricane.ops",
    "layers_of": "dwnas.baselines.hurricane.ops",
    "fixed_parts": "dwnas.baselines.hurricane.ops",
    "profile_ops": "dwnas.baselines.hurricane.profiling",
    "preselect": "dwnas.baselines.hurricane.profiling",
    "layer_choices": "dwnas.baselines.hurricane.profiling",
    "fastest_op": "dwnas.baselines.hurricane.profiling",
    "path_latency": "dwnas.baselines.hurricane.profiling",
    "FORMAT": "dwnas.baselines.hurricane.supernet",
    "OpSupernet": "dwnas.baselines.hurricane.supernet",
    "OpPath": "dwnas.baselines.hurricane.search",
    "PathSpace": "dwnas.baselines.hurricane.search",
    "PathSearch": "dwnas.baselines.hurricane.search",
    "split_layers": "dwnas.baselines.hurricane.search",
    "sampler": "dwnas.baselines.hurricane.search",
    "SUPERNET_KEYS": "dwnas.baselines.hurricane.stages",
    "SEARCH_KEYS": "dwnas.baselines.hurricane.stages",
    "settings_for": "dwnas.baselines.hurricane.stages",
    "run_supernet": "dwnas.baselines.hurricane.stages",
    "run_search": "dwnas.baselines.hurricane.stages",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
