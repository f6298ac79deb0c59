"""Params that pass the schema but are wrong, one error per real problem, errors not tracebacks.

Every bad case goes through the CLI: exit status 2, one ``error:`` line per problem naming its key
path, nothing written.
"""

from __future__ import annotations

import argparse
import copy
import errno
import math
import os
import tempfile
from pathlib import Path

import pytest
import yaml

from dwnas import io
from dwnas.cli import main
from dwnas.config import (
    ParamsError,
    check_all,
    load_params,
    resolution_arg,
    section_problems,
    validate_params,
    validate_section,
)
from dwnas.errors import DwnasError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def smoke():
    return load_params(REPO / "params/smoke.yaml")


def _check(tmp_path: Path, params, capsys) -> tuple[int, list[str]]:
    """Run ``dwnas params check`` on ``params``; return (exit status, its ``error:`` lines)."""
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params) if not isinstance(params, str | bytes) else params)
    before = sorted(tmp_path.rglob("*"))
    rc = main(["params", "check", str(path)])
    captured = capsys.readouterr()
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    if rc == 2:
        assert captured.out == ""
    return rc, [line for line in captured.err.splitlines() if line.startswith("error:")]


def _one_error(tmp_path, params, capsys) -> str:
    rc, errors = _check(tmp_path, params, capsys)
    assert rc == 2
    assert len(errors) == 1, errors
    return errors[0]


# --- 1. params that pass but are wrong -------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("keys", [("train", "supernet", "lr"), ("train", "elastic", "weight_decay"),
                                  ("search", "mutate_prob"), ("measure", "threads")])
def test_nan_and_inf_are_refused(tmp_path, capsys, smoke, keys, value):
    bad = copy.deepcopy(smoke)
    node = bad
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    error = _one_error(tmp_path, bad, capsys)
    assert f"{'.'.join(keys)}: must be a finite number" in error
    assert error.startswith(f"error: {tmp_path / 'p.yaml'}: ")


def test_nan_in_a_list_is_named_by_index(tmp_path, capsys, smoke):
    bad = copy.deepcopy(smoke)
    bad["train"]["supernet"]["crop_scale"] = [0.35, math.nan]
    assert "train.supernet.crop_scale[1]: must be a finite number (got .nan)" in _one_error(
        tmp_path, bad, capsys)


def test_nan_written_in_yaml(tmp_path, capsys):
    text = (REPO / "params/smoke.yaml").read_text().replace("lr: 0.02", "lr: .nan", 1)
    assert "lr: .nan" in text
    assert "train.elastic.lr: must be a finite number (got .nan)" in _one_error(
        tmp_path, text, capsys)


@pytest.mark.parametrize("resolution, problem", [
    (24, "train.supernet.resolution: 24 is below space.resolution.min (32)"),
    (48, "train.supernet.resolution: 48 is above space.resolution.max (40)"),
])
def test_supernet_resolution_inside_the_space(tmp_path, capsys, smoke, resolution, problem):
    bad = copy.deepcopy(smoke)
    bad["train"]["supernet"]["resolution"] = resolution
    assert problem in _one_error(tmp_path, bad, capsys)


@pytest.mark.parametrize("elastic, problem", [
    ({"min": 28, "max": 40}, "train.elastic.resolution.min: 28 is below space.resolution.min (32)"),
    ({"min": 32, "max": 44}, "train.elastic.resolution.max: 44 is above space.resolution.max (40)"),
])
def test_elastic_resolutions_inside_the_space(tmp_path, capsys, smoke, elastic, problem):
    bad = copy.deepcopy(smoke)
    bad["train"]["elastic"]["resolution"] = elastic
    assert problem in _one_error(tmp_path, bad, capsys)


@pytest.mark.parametrize("grid, words", [
    ([36, 40], "lowest point 36 is above 32"),
    ([32, 36], "highest point 36 is below 40"),
])
def test_profile_grid_covers_the_space(tmp_path, capsys, smoke, grid, words):
    bad = copy.deepcopy(smoke)
    bad["profile"]["grid"] = grid
    error = _one_error(tmp_path, bad, capsys)
    assert "profile.grid: must cover space.resolution [32, 40]" in error
    assert words in error


@pytest.mark.parametrize("keys", [("train", "elastic"), ("baselines", "odn", "recipe")])
def test_crop_scale_min_above_max(tmp_path, capsys, smoke, keys):
    bad = copy.deepcopy(smoke)
    section = bad
    for key in keys:
        section = section[key]
    section["crop_scale"] = [0.6, 0.3]
    where = ".".join(keys)
    assert f"{where}.crop_scale: min (0.6) is above max (0.3)" in _one_error(tmp_path, bad, capsys)


def test_a_section_from_the_command_line_gets_the_files_rules_and_words(tmp_path, capsys, smoke):
    """``dwnas`` sub-commands take sections as JSON: every problem by key path, as in the file."""
    bad = copy.deepcopy(smoke)
    bad["search"].update(population=1, mutate_prob=2)
    rc, errors = _check(tmp_path, bad, capsys)
    assert rc == 2
    in_file = [line.split(": ", 2)[2] for line in errors]  # error: <file>: <key path>: ...
    assert in_file == ["search.mutate_prob: must be <= 1 (got 2)",
                       "search.population: must be >= 2 (got 1)"]
    assert section_problems(bad["search"], "search", "search") == in_file
    with pytest.raises(ParamsError) as refused:
        validate_section({"population": 1, "mutate_prob": 2}, "search", "search", only_given=True)
    assert refused.value.error_lines() == in_file
    assert section_problems([1], "$defs/recipe", "train.supernet") == [
        "train.supernet: must be of type object (got [1])"]
    assert section_problems({"seed": -1}, "data.mnist", flags=True, only_given=True) == [
        "--seed: must be >= 0 (got -1)"]


def test_grid_wider_than_the_space_is_fine(smoke):
    ok = copy.deepcopy(smoke)
    ok["profile"]["grid"] = [16, 64]
    assert validate_params(ok) is ok


@pytest.mark.parametrize("budgets, words", [
    ({"unit": "fraction", "values": [0.75, 0.9, 0.9001]}, "0.9 and 0.9001 both get the label 90pct"),
    ({"unit": "ms", "values": [2.5, 2.5000001]}, "2.5 and 2.5000001 both get the label 2.5ms"),
])
def test_budget_labels_must_not_collide(tmp_path, capsys, smoke, budgets, words):
    bad = copy.deepcopy(smoke)
    bad["search"]["budgets"] = budgets
    error = _one_error(tmp_path, bad, capsys)
    assert "search.budgets.values: " in error
    assert words in error


@pytest.mark.parametrize("keys, value, problem", [
    (("baselines", "mobilenetv2", "resolutions"), [32, 100000],
     "baselines.mobilenetv2.resolutions[1]: must be <= 1024 (got 100000)"),
    (("baselines", "hurricane", "resolution"), 4,
     "baselines.hurricane.resolution: must be >= 16 (got 4)"),
    (("baselines", "odn", "resolution"), 2048, "baselines.odn.resolution: must be <= 1024 (got 2048)"),
    (("space", "resolution", "max"), 100000, "space.resolution.max: must be <= 1024 (got 100000)"),
    (("profile", "grid"), [32, 40, 5000], "profile.grid[2]: must be <= 1024 (got 5000)"),
])
def test_resolutions_must_be_sensible(tmp_path, capsys, smoke, keys, value, problem):
    bad = copy.deepcopy(smoke)
    node = bad
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    assert problem in _one_error(tmp_path, bad, capsys)


def test_resolution_argument_type():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=resolution_arg)
    assert parser.parse_args(["--resolution", "224"]).resolution == 224
    for bad in ("100000", "4", "0", "-32", "abc"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["--resolution", bad])
        assert info.value.code == 2


# --- 2. one error per real problem -----------------------------------------------------------


def test_readme_bad_lr_is_one_error(tmp_path, capsys, smoke):
    bad = copy.deepcopy(smoke)
    bad["train"]["supernet"]["lr"] = -1
    error = _one_error(tmp_path, bad, capsys)
    assert error == f"error: {tmp_path / 'p.yaml'}: train.supernet.lr: must be > 0 (got -1)"
    with pytest.raises(ParamsError) as info:
        validate_params(bad, "p.yaml")
    assert info.value.problems == ["train.supernet.lr: must be > 0 (got -1)"]
    assert str(info.value) == "p.yaml is invalid:\n  train.supernet.lr: must be > 0 (got -1)"


def test_unknown_key_beside_a_failing_recipe_value(tmp_path, capsys, smoke):
    bad = copy.deepcopy(smoke)
    bad["train"]["supernet"]["lr"] = -1
    bad["train"]["supernet"]["lrr"] = 0.1
    bad["train"]["elastic"]["momentun"] = 0.9
    rc, errors = _check(tmp_path, bad, capsys)
    assert rc == 2
    assert [e.split(": ", 2)[2] for e in errors] == [
        "train.elastic.momentun: unknown key",
        "train.supernet.lr: must be > 0 (got -1)",
        "train.supernet.lrr: unknown key",
    ]


def test_one_line_per_problem(tmp_path, capsys, smoke):
    bad = copy.deepcopy(smoke)
    del bad["data"]["workers"]
    del bad["data"]["root"]
    bad["data"]["workers_"] = 1
    bad["seed"] = -1.5
    rc, errors = _check(tmp_path, bad, capsys)
    assert rc == 2
    assert [e.split(": ", 2)[2] for e in errors] == [
        "data.root: missing required key",
        "data.workers: missing required key",
        "data.workers_: unknown key",
        "seed: must be of type integer (got -1.5)",
    ]


def test_non_json_yaml_values_do_not_crash(tmp_path, capsys):
    text = (REPO / "params/smoke.yaml").read_text().replace("seed: 0\n", "seed: 2020-01-01\n", 1)
    assert 'seed: must be of type integer (got "2020-01-01")' in _one_error(tmp_path, text, capsys)


# --- 3. errors, not tracebacks ---------------------------------------------------------------


def test_random_bytes_params_file(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81\xc3\x28" * 8)
    rc = main(["params", "check", str(path)])
    assert rc == 2
    assert capsys.readouterr().err == f"error: {path}: not a UTF-8 YAML file\n"


def test_random_bytes_json_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DwnasError, match="not a UTF-8 JSON file"):
        io.read_json(path)


def _refuse(errno_: int, text: str):
    def fail(suffix=None, prefix=None, dir=None, **kwargs):  # as mkstemp/mkdtemp name theirs
        raise OSError(errno_, text, os.path.join(dir or ".", f"{prefix}a1b2c3{suffix}"))

    return fail


@pytest.mark.parametrize("errno_, reason", [
    (errno.EACCES, "permission denied"),
    (errno.EROFS, "read-only file system"),
    (errno.ENOSPC, "disk full"),
])
@pytest.mark.parametrize("writer", ["write_json", "atomic_path", "atomic_dir"])
def test_unwritable_folder_is_a_clean_error(tmp_path, monkeypatch, errno_, reason, writer):
    monkeypatch.setattr(tempfile, "mkstemp", _refuse(errno_, os.strerror(errno_)))
    monkeypatch.setattr(tempfile, "mkdtemp", _refuse(errno_, os.strerror(errno_)))
    out = tmp_path / "out" / "result.json"
    with pytest.raises(DwnasError) as info:
        if writer == "write_json":
            io.write_json(out, {"a": 1})
        else:
            with getattr(io, writer)(out):
                raise AssertionError("the block must not run")
    assert str(info.value) == f"{out}: cannot write ({reason})"
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("errno_, reason", [
    (errno.ENOSPC, "disk full"),
    (errno.EDQUOT, "disk quota exceeded"),
])
def test_disk_full_while_writing(tmp_path, monkeypatch, errno_, reason):
    def full(self, *args, **kwargs):
        raise OSError(errno_, os.strerror(errno_))  # a failed write() names no file

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "result.json"
    with pytest.raises(DwnasError, match=f"^{out}: cannot write \\({reason}\\)$"):
        io.write_json(out, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_disk_full_inside_an_atomic_dir(tmp_path):
    out = tmp_path / "stage"
    with pytest.raises(DwnasError, match=f"^{out}: cannot write \\(disk full\\)$"), \
            io.atomic_dir(out) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "weights.pt"))
    assert list(tmp_path.iterdir()) == []


def test_other_files_errors_pass_through_atomic_dir(tmp_path):
    """A PermissionError on an input the block reads is not the output's fault."""
    with pytest.raises(PermissionError, match="/data/imagenet/train"), io.atomic_dir(tmp_path / "stage"):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/imagenet/train")
    assert list(tmp_path.iterdir()) == []


def test_read_only_rename_is_a_clean_error(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(src), str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    out = tmp_path / "result.json"
    with pytest.raises(DwnasError, match=f"^{out}: cannot write \\(read-only file system\\)$"):
        io.write_text(out, "x")
    assert list(tmp_path.iterdir()) == []


def test_check_writable(tmp_path, monkeypatch):
    out = tmp_path / "a" / "b" / "result.json"
    assert io.check_writable(out) == out
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the parent made, no probe left
    (tmp_path / "file").write_text("x")
    with pytest.raises(DwnasError, match=f"^{tmp_path / 'file' / 'out'}: cannot write"):
        io.check_writable(tmp_path / "file" / "out")
    monkeypatch.setattr(tempfile, "mkstemp", _refuse(errno.EACCES, "Permission denied"))
    with pytest.raises(DwnasError, match=f"^{out}: cannot write \\(permission denied\\)$"):
        io.check_writable(out)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_check_writable_real_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DwnasError, match="permission denied"):
            io.check_writable(folder / "out.json")
        with pytest.raises(DwnasError, match="permission denied"):
            io.write_json(folder / "out.json", {})
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("exc, message", [
    (PermissionError(errno.EACCES, "Permission denied", "/results/x/y.json"),
     "error: /results/x/y.json: permission denied\n"),
    (OSError(errno.ENOSPC, "No space left on device", "/results/x"),
     "error: /results/x: disk full\n"),
    (OSError(errno.EROFS, "Read-only file system", "/results"),
     "error: /results: read-only file system\n"),
])
def test_cli_turns_write_oserrors_into_error_lines(monkeypatch, capsys, exc, message):
    def fail(path):
        raise exc

    monkeypatch.setattr("dwnas.config.read_params", fail)
    assert main(["params", "check", "params/smoke.yaml"]) == 2
    assert capsys.readouterr().err == message


@pytest.mark.parametrize("exc", [
    OSError(errno.EIO, "Input/output error", "/x"),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"),
    ValueError("a bug"),
])
def test_cli_lets_other_exceptions_through(monkeypatch, exc):
    def fail(path):
        raise exc

    monkeypatch.setattr("dwnas.config.read_params", fail)
    with pytest.raises(type(exc)) as info:
        main(["params", "check", "params/smoke.yaml"])
    assert info.value is exc  # the very exception, not one raised in its place


# --- 4. ``dwnas params check`` runs the pipeline's checks ------------------------------------


@pytest.fixture
def imagenet100():
    return yaml.safe_load((REPO / "params/imagenet100.yaml").read_text())


@pytest.mark.parametrize("root, problem", [
    (None, "data.root: required when data.source is imagenet"),
    ("", "data.root: required when data.source is imagenet"),
    ("/nonexistent/imagenet", "data.root: /nonexistent/imagenet does not exist"),
])
def test_params_check_needs_the_imagenet_root(tmp_path, capsys, imagenet100, root, problem):
    imagenet100["data"]["root"] = root
    assert problem in _one_error(tmp_path, imagenet100, capsys)
    with pytest.raises(DwnasError, match=problem):
        check_all(imagenet100, "p.yaml")


def test_params_check_passes_an_existing_imagenet_root(tmp_path, capsys, imagenet100):
    (tmp_path / "imagenet").mkdir()
    imagenet100["data"]["root"] = str(tmp_path / "imagenet")
    rc, errors = _check(tmp_path, imagenet100, capsys)
    assert (rc, errors) == (0, [])
    assert check_all(imagenet100, "p.yaml") is imagenet100


def test_check_all_reports_schema_and_path_problems_together(imagenet100):
    imagenet100["data"]["root"] = None
    imagenet100["train"]["supernet"]["lr"] = -1
    with pytest.raises(ParamsError) as info:
        check_all(imagenet100, "p.yaml")
    assert info.value.problems == [
        "train.supernet.lr: must be > 0 (got -1)",
        "data.root: required when data.source is imagenet",
    ]
    with pytest.raises(DwnasError, match="must be a YAML mapping"):
        check_all([1, 2], "p.yaml")


def test_snakefile_runs_the_same_check():
    snakefile = (REPO / "Snakefile").read_text()
    assert "check_all(config, PARAMS_FILE)" in snakefile
    assert "validate_params(config" not in snakefile
