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

from dwnas.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "dwnas.baselines.hurricane.ops": (
        "KINDS", "SKIP", "Op", "candidate_ops", "SqueezeExcite", "OpBlock", "Layer", "layers_of",
        "fixed_parts",
    ),
    "dwnas.baselines.hurricane.profiling": (
        "profile_ops", "preselect", "layer_choices", "fastest_op", "path_latency",
    ),
    "dwnas.baselines.hurricane.supernet": ("FORMAT", "OpSupernet"),
    "dwnas.baselines.hurricane.search": (
        "OpPath", "PathSpace", "PathSearch", "split_layers", "sampler",
    ),
    "dwnas.baselines.hurricane.stages": (
        "SUPERNET_KEYS", "SEARCH_KEYS", "settings_for", "run_supernet", "run_search",
    ),
})
