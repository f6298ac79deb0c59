"""Params files: load, validate against the JSON schema, report every problem by its key path.

A params file spells out every key (no hidden defaults), so that the file alone says what a run
did. The schema lives in ``dwnas/schemas/params.schema.yaml`` (``workflow/schemas/`` links to it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dwnas.errors import DwnasError

SCHEMA_RESOURCE = "schemas/params.schema.yaml"


def load_schema() -> dict:
    text = resources.files("dwnas").joinpath(SCHEMA_RESOURCE).read_text()
    return yaml.safe_load(text)


def _key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _describe(error) -> str:
    """Turn one jsonschema error into ``key.path: must ...``."""
    path = list(error.absolute_path)
    kind, arg = error.validator, error.validator_value
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return "; ".join(f"{_key_path([*path, k])}: unknown key" for k in extra)
    if kind == "unevaluatedProperties":
        import re

        extra = re.findall(r"'([^']+)'", error.message.split("(")[-1])
        return "; ".join(f"{_key_path([*path, k])}: unknown key" for k in extra)
    if kind == "required":
        missing = [k for k in arg if k not in error.instance]
        return "; ".join(f"{_key_path([*path, k])}: missing required key" for k in missing)
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
    return f"{_key_path(path)}: {phrase} (got {json.dumps(error.instance)})"


# Checks a schema cannot express; each returns a list of "key.path: problem" strings.
CrossCheck = Callable[[dict], list[str]]


def _check_ranges(params: dict) -> list[str]:
    problems = []

    def walk(node: Any, path: list) -> None:
        if isinstance(node, dict):
            lo, hi = node.get("min"), node.get("max")
            if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
                problems.append(f"{_key_path(path)}: min ({lo}) is above max ({hi})")
            for key, value in node.items():
                walk(value, [*path, key])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, [*path, i])

    walk(params, [])
    return problems


CROSS_CHECKS: list[CrossCheck] = [_check_ranges]


def validate_params(params: Any, source: str = "params") -> dict:
    """Validate a params mapping; raise DwnasError listing every problem as ``key.path: ...``."""
    from jsonschema import Draft202012Validator

    if not isinstance(params, dict):
        raise DwnasError(
            f"{source}: must be a YAML mapping of sections, got {type(params).__name__}"
        )
    validator = Draft202012Validator(load_schema())
    problems = [
        _describe(e)
        for e in sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    ]
    if not problems:
        for check in CROSS_CHECKS:
            problems.extend(check(params))
    if problems:
        raise DwnasError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return params


def load_params(path: str | Path) -> dict:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise DwnasError(f"params file {path} not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DwnasError(f"{path}: not valid YAML ({exc})") from exc
    return validate_params(params, str(path))


def params_hash(params: dict) -> str:
    """A short stable hash of a params mapping, for run tags and cache keys."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def check_paths(params: dict) -> None:
    """Inputs a run needs that a schema cannot see: the raw ImageNet root must exist."""
    data = params["data"]
    if data["source"] == "imagenet":
        root = data["root"]
        if not root:
            raise DwnasError("data.root: required when data.source is imagenet")
        if not Path(root).is_dir():
            raise DwnasError(f"data.root: {root} does not exist (point it at your ILSVRC2012 tree)")
