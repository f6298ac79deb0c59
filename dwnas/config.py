"""Params files: load, validate against the JSON schema, report every problem by its key path.

A params file spells out every key (no hidden defaults), so that the file alone says what a run
did. The schema lives in ``dwnas/schemas/params.schema.yaml`` (``workflow/schemas/`` links to it).

:func:`check_all` is the one check both the pipeline (the Snakefile) and ``dwnas params check``
run: the schema, the cross-field checks a schema cannot express, and the input paths.
:func:`validate_section` holds one section that a ``dwnas`` sub-command takes as JSON or flags to
the same schema (and words), so there is one set of rules, not one per command.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dwnas.errors import DwnasError

SCHEMA_RESOURCE = "schemas/params.schema.yaml"

# Input resolutions (px) anything in dwnas accepts: below, a network's strides leave nothing; above,
# one image's activations alone exhaust memory. The schema keeps its own (stricter) minimum of 16.
RESOLUTION_MIN = 8
RESOLUTION_MAX = 1024


class ParamsError(DwnasError):
    """Invalid params: ``problems`` holds one ``key.path: problem`` string per real problem.

    ``source`` names the file; None for a section that came another way (command-line JSON or
    flags), whose key paths alone say where each problem is.
    """

    def __init__(self, source: str | None, problems: Iterable[str]):
        self.source = source
        self.problems = list(problems)
        if source is None:
            super().__init__("\n".join(self.problems))
        else:
            super().__init__(f"{source} is invalid:\n  " + "\n  ".join(self.problems))

    def error_lines(self) -> list[str]:
        """One self-contained line per problem (the CLI prints each as ``error: ...``)."""
        if self.source is None:
            return list(self.problems)
        return [f"{self.source}: {problem}" for problem in self.problems]


def load_schema() -> dict:
    text = resources.files("dwnas").joinpath(SCHEMA_RESOURCE).read_text()
    return yaml.safe_load(text)


def _key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _sort_key(parts) -> list:
    """Orders key paths whose parts mix list indices and mapping keys without a TypeError."""
    return [(0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in parts]


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value, default=str)


# --- schema errors -> one (key path, problem) per real problem --------------------------------

Problem = tuple[tuple, str]  # (key path parts, what is wrong there)


def _resolve(node: Any, root: dict) -> Any:
    """Follow a local ``$ref`` (``#/$defs/...``) inside the schema."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#/"):
            break
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _declared_keys(node: Any, root: dict) -> set[str]:
    """Every property name a schema node (with its allOf/anyOf/oneOf/$ref parts) declares."""
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return set()
    keys = set(node.get("properties", {}))
    for combinator in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(combinator, []):
            keys |= _declared_keys(sub, root)
    if "$ref" in node:
        keys |= _declared_keys({"$ref": node["$ref"]}, root)
    return keys


def _describe(error, root: dict) -> list[Problem]:
    """Turn one jsonschema error into ``(path, "must ...")`` problems (none if it is only noise)."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        # Report the branch of the value's own type (a mapping's keys), else the closest branch,
        # not every branch's complaints.
        from jsonschema.exceptions import best_match

        typed = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        if typed:
            return [problem for e in typed for problem in _describe(e, root)]
        return _describe(best_match(error.context), root)
    path = tuple(error.absolute_path)
    kind, arg = error.validator, error.validator_value
    if kind in ("additionalProperties", "unevaluatedProperties"):
        # unevaluatedProperties also lists the keys of an allOf branch that failed for another
        # reason (``lr: -1`` made every recipe key "unevaluated"); only undeclared keys are unknown.
        declared = _declared_keys(error.schema, root)
        extra = sorted((k for k in error.instance if k not in declared), key=str)
        return [((*path, k), "unknown key") for k in extra]
    if kind == "required":
        return [((*path, k), "missing required key") for k in arg if k not in error.instance]
    phrases = {
        "minimum": f"must be >= {arg}",
        "exclusiveMinimum": f"must be > {arg}",
        "maximum": f"must be <= {arg}",
        "exclusiveMaximum": f"must be < {arg}",
        "enum": f"must be one of {arg}",
        "type": f"must be of type {arg}",
        "minItems": f"must have at least {arg} item(s)",
        "maxItems": f"must have at most {arg} item(s)",
        "uniqueItems": "must not repeat items",
        "pattern": f"must match {arg!r}",
        "const": f"must be {arg!r}",
    }
    phrase = phrases.get(kind, error.message)
    return [(path, f"{phrase} (got {_show(error.instance)})")]


def _non_finite(node: Any, path: tuple = ()) -> list[Problem]:
    """NaN and infinities (YAML ``.nan``, ``.inf``) pass most bounds silently: refuse them all."""
    if isinstance(node, float) and not math.isfinite(node):
        return [(path, f"must be a finite number (got {_show(node)})")]
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _non_finite(value, (*path, key))]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _non_finite(value, (*path, i))]
    return []


def _definition(schema: dict, definition: str) -> dict:
    """The schema node of ``definition``: ``$defs/NAME``, or a params key path (``data.mnist``)."""
    if definition.startswith("$defs/"):
        return schema["$defs"][definition.removeprefix("$defs/")]
    node = schema
    for key in definition.split(".") if definition else ():
        node = _resolve(node, schema)["properties"][key]
    return node


def _schema_problems(instance: Any, definition: str = "", prefix: tuple = (),
                     only_given: bool = False) -> list[Problem]:
    """Every schema problem of ``instance`` against ``definition`` (the whole file by default),
    each once, at its key path below ``prefix``, sorted; ``only_given``: check only the keys
    ``instance`` has (the fields of a settings object), not the ones it lacks."""
    from jsonschema import Draft202012Validator

    schema = load_schema()
    node = _definition(schema, definition)
    if only_given and isinstance(instance, dict):
        declared = _resolve(node, schema).get("properties", {})
        node = {"properties": {k: declared[k] for k in instance if k in declared}}
    validator = Draft202012Validator(schema).evolve(schema=node)  # $refs resolve in the root
    found: dict[tuple, str] = {}
    candidates = _non_finite(instance) + [
        problem for error in validator.iter_errors(instance) for problem in _describe(error, schema)
    ]
    for path, problem in candidates:  # the first problem named at a key path is the real one
        found.setdefault((*prefix, *path), problem)
    return [(path, found[path]) for path in sorted(found, key=_sort_key)]


def _as_flag(path: tuple) -> tuple:
    """A section key as the command-line flag that sets it (``val_per_class`` -> ``--val-per-class``)."""
    return (f"--{str(path[0]).replace('_', '-')}", *path[1:]) if path else path


def section_problems(section: Any, definition: str, where: str = "", *, only_given: bool = False,
                     flags: bool = False) -> list[str]:
    """The schema's problems of one section as ``key.path: problem``, the key path below ``where``.

    The ``dwnas`` sub-commands take sections as JSON or flags, not as a params file: this holds
    them to the very rules (and wording) of ``dwnas params check``. ``definition``: ``$defs/NAME``
    or the section's params key path; ``flags``: name top-level keys as command-line flags.
    """
    prefix = tuple(where.split(".")) if where else ()
    problems = _schema_problems(section, definition, prefix, only_given)
    if flags:
        problems = [(_as_flag(path), problem) for path, problem in problems]
    return [f"{_key_path(path)}: {problem}" for path, problem in problems]


def validate_section(section: Any, definition: str, where: str = "", *, only_given: bool = False,
                     flags: bool = False) -> Any:
    """Raise ParamsError naming every problem of ``section`` (see :func:`section_problems`)."""
    problems = section_problems(section, definition, where, only_given=only_given, flags=flags)
    if problems:
        raise ParamsError(None, problems)
    return section


# --- checks a schema cannot express; each returns a list of "key.path: problem" strings ------

CrossCheck = Callable[[dict], list[str]]


def range_problems(key: str, lo: Any, hi: Any) -> list[str]:
    """A [min, max] pair whose min is above its max (a rule JSON schema cannot state)."""
    if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
        return [f"{key}: min ({lo}) is above max ({hi})"]
    return []


def recipe_problems(recipe: dict, where: str) -> list[str]:
    """A training recipe's rules beyond the schema's ``$defs/recipe``: crop_scale min <= max."""
    scale = recipe.get("crop_scale")
    if isinstance(scale, list | tuple) and len(scale) == 2:
        return range_problems(f"{where}.crop_scale", *scale)
    return []


def _check_ranges(params: dict) -> list[str]:
    problems = []

    def walk(node: Any, path: list) -> None:
        if isinstance(node, dict):
            problems.extend(range_problems(_key_path(path), node.get("min"), node.get("max")))
            for key, value in node.items():
                walk(value, [*path, key])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, [*path, i])

    walk(params, [])
    return problems


def _check_training_resolutions(params: dict) -> list[str]:
    """Training outside the space's resolutions trains subnets the search can never pick."""
    space = params["space"]["resolution"]
    lo, hi = space["min"], space["max"]
    if lo > hi:
        return []  # _check_ranges names it
    problems = []

    def inside(key: str, value: int) -> None:
        if value < lo:
            problems.append(f"{key}: {value} is below space.resolution.min ({lo})")
        elif value > hi:
            problems.append(f"{key}: {value} is above space.resolution.max ({hi})")

    inside("train.supernet.resolution", params["train"]["supernet"]["resolution"])
    elastic = params["train"]["elastic"]["resolution"]
    inside("train.elastic.resolution.min", elastic["min"])
    inside("train.elastic.resolution.max", elastic["max"])
    return problems


def _check_profile_grid(params: dict) -> list[str]:
    """The latency table interpolates between grid points: the grid must span the space."""
    space = params["space"]["resolution"]
    grid = params["profile"]["grid"]
    problems = []
    if min(grid) > space["min"]:
        problems.append(f"profile.grid: must cover space.resolution [{space['min']}, "
                        f"{space['max']}], but its lowest point {min(grid)} is above "
                        f"{space['min']} (the latency table interpolates between grid points)")
    if max(grid) < space["max"]:
        problems.append(f"profile.grid: must cover space.resolution [{space['min']}, "
                        f"{space['max']}], but its highest point {max(grid)} is below "
                        f"{space['max']} (the latency table interpolates between grid points)")
    return problems


def _check_profile_runtime(params: dict) -> list[str]:
    """The search's latency table must predict a runtime the pipeline measures."""
    runtime, measured = params["profile"]["runtime"], params["measure"]["runtimes"]
    if runtime not in measured:
        return [f"profile.runtime: {runtime!r} is not one of measure.runtimes {measured} (the "
                "latency table must predict what the pipeline measures)"]
    return []


def _check_budget_labels(params: dict) -> list[str]:
    """Budgets name their output files: two values with one label would overwrite each other."""
    from dwnas.search.budgets import budget_labels

    budgets = params["search"]["budgets"]
    by_label: dict[str, list] = {}
    for label, value in zip(budget_labels(budgets), budgets["values"], strict=True):
        by_label.setdefault(label, []).append(value)
    problems = []
    for label, values in by_label.items():
        if len(values) > 1:
            named = f"{', '.join(map(str, values[:-1]))} and {values[-1]}"
            problems.append(f"search.budgets.values: {named} {'both' if len(values) == 2 else 'all'}"
                            f" get the label {label} (their outputs would collide); make them "
                            "differ in that label")
    return problems


def _check_odn_start_depth(params: dict) -> list[str]:
    """A per-backbone ``start_depth`` must name every backbone ODN grows."""
    odn = params["baselines"]["odn"]
    start = odn["start_depth"]
    if not isinstance(start, dict):
        return []
    return [f"baselines.odn.start_depth: names no start depth for backbone {name!r}"
            for name in odn["backbones"] if name not in start]


def _check_data_source(params: dict) -> list[str]:
    """A source's settings must be there when it is the source."""
    data = params["data"]
    if data["source"] == "mnist" and "mnist" not in data:
        return ["data.mnist: required when data.source is mnist (val_per_class, image_size, seed)"]
    return []


RECIPES = ("train.supernet", "train.elastic", "baselines.mobilenetv2.recipe",
           "baselines.depthshrinker.recipe", "baselines.hurricane.recipe", "baselines.odn.recipe")


def _check_recipes(params: dict) -> list[str]:
    """Every recipe of the file, by the rules ``dwnas train`` and the baselines apply to it."""
    problems = []
    for where in RECIPES:
        section: Any = params
        for key in where.split("."):
            section = section[key]
        problems.extend(recipe_problems(section, where))
    return problems


CROSS_CHECKS: list[CrossCheck] = [
    _check_data_source,
    _check_ranges,
    _check_recipes,
    _check_training_resolutions,
    _check_profile_grid,
    _check_profile_runtime,
    _check_budget_labels,
    _check_odn_start_depth,
]


def params_problems(params: Any) -> list[str]:
    """Every problem of a params mapping as ``key.path: problem`` (empty if it is valid)."""
    if not isinstance(params, dict):
        return [f"<root>: must be a YAML mapping of sections, got {type(params).__name__}"]
    problems = [f"{_key_path(path)}: {problem}" for path, problem in _schema_problems(params)]
    if not problems:  # the cross checks assume the schema's shape
        for check in CROSS_CHECKS:
            problems.extend(check(params))
    return problems


def validate_params(params: Any, source: str = "params") -> dict:
    """Validate a params mapping; raise ParamsError listing every problem as ``key.path: ...``."""
    if not isinstance(params, dict):
        raise DwnasError(
            f"{source}: must be a YAML mapping of sections, got {type(params).__name__}"
        )
    problems = params_problems(params)
    if problems:
        raise ParamsError(source, problems)
    return params


def read_params(path: str | Path) -> Any:
    """Read a params YAML file without validating it (a clear DwnasError if it cannot be read)."""
    path = Path(path)
    if not path.is_file():
        raise DwnasError(f"params file {path} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DwnasError(f"{path}: not a UTF-8 YAML file") from exc
    except yaml.YAMLError as exc:
        raise DwnasError(f"{path}: not valid YAML ({exc})") from exc


def load_params(path: str | Path) -> dict:
    """Read and validate a params YAML file (schema and cross checks; not the input paths)."""
    return validate_params(read_params(path), str(path))


def params_hash(params: dict) -> str:
    """A short stable hash of a params mapping, for run tags and cache keys."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def path_problems(params: dict) -> list[str]:
    """Inputs a run needs that a schema cannot see: the raw ImageNet root must exist."""
    data = params["data"]
    if data["source"] == "imagenet":
        root = data["root"]
        if not root:
            return ["data.root: required when data.source is imagenet"]
        if not Path(root).is_dir():
            return [f"data.root: {root} does not exist (point it at your ILSVRC2012 tree)"]
    return []


def check_paths(params: dict) -> None:
    """Raise DwnasError naming the first input path a run needs that is missing."""
    problems = path_problems(params)
    if problems:
        raise DwnasError(problems[0])


def check_all(params: Any, source: str = "params") -> dict:
    """Everything a run checks before any work: schema, cross checks and input paths.

    The Snakefile and ``dwnas params check`` both call this, so a file that passes the one passes
    the other. Raises ParamsError listing every problem by key path.
    """
    if not isinstance(params, dict):
        validate_params(params, source)  # raises: not a mapping
    problems = params_problems(params)
    # a malformed data section is already named by the schema problems
    with contextlib.suppress(KeyError, TypeError, AttributeError):
        problems.extend(p for p in path_problems(params) if p not in problems)
    if problems:
        raise ParamsError(source, problems)
    return params


def resolution_arg(text: str) -> int:
    """argparse ``type=`` for a ``--resolution``: an integer in [RESOLUTION_MIN, RESOLUTION_MAX]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not RESOLUTION_MIN <= value <= RESOLUTION_MAX:
        raise argparse.ArgumentTypeError(
            f"must be between {RESOLUTION_MIN} and {RESOLUTION_MAX} px (got {value})"
        )
    return value
