# The names every rule file shares, derived from the params by dwnas.workflow (tested there).
# The Snakefile includes this file first; the other rule files read only what is defined here or
# in themselves, so the order they are included in does not matter.
import os
from pathlib import Path

from dwnas.workflow import (
    SCHEDULE_PRIORITY,
    SEARCHED_BASELINES,
    STATIC_BASELINES,
    Layout,
    as_json,
    eval_flags,
    num_classes,
    side_by_side_threads,
    stage_digests,
)

NAME = config["name"]
R = f"results/{NAME}"
LAYOUT = Layout(config)

DATA = config["data"]
TRAIN = config["train"]
PROFILE = config["profile"]
SEARCH = config["search"]
MEASURE = config["measure"]
BASELINES = config["baselines"]

MODES = LAYOUT.modes  # the search modes: double-win, deep-only
BUDGETS = LAYOUT.budgets  # labels of search.budgets: 40pct, 2.5ms, ...
RUNTIMES = LAYOUT.runtimes  # measure.runtimes
DEVICES = LAYOUT.devices  # measure.devices
NUM_CLASSES = num_classes(config)
EVAL_FLAGS = eval_flags(TRAIN["eval"])
# stage -> the digest of the package sources it runs (a rule's `code` param: an edit re-runs it)
CODE = stage_digests(Path(workflow.basedir, "dwnas"))
# the compared methods' trainings: two side by side (the supernet's and every timing job take all)
SIDE_BY_SIDE = side_by_side_threads(workflow.cores)

PROFILE_DIR = LAYOUT.profile_dir  # results/<name>/profile/<device>/{runtime}
SEARCH_LUT = LAYOUT.search_lut  # profile.runtime's table: the search's and HURRICANE's
MEASURES = LAYOUT.searched_measures  # measure/<mode>/<budget>/<device>/<runtime>.json
BASELINE_MEASURES = LAYOUT.baseline_measures  # measure/<method>/<variant>/<device>/<runtime>.json
BASELINE_VARIANTS = LAYOUT.baseline_variants
