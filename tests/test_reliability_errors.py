"""Errors that used to be tracebacks (issue 13, finding 6): an output folder that cannot be
written, a disk that fills during a save, an absurd ``--resolution``. Each is one ``error:`` line
naming the path or option, exit status 2, no traceback and nothing half-written.

The suite runs as root in CI, where a chmod'ed folder is writable: unwritable outputs are a path
under sysfs (no file can be created there, root or not) and a path whose parent is a regular file.
A real full disk is a small tmpfs mounted in a private mount namespace (``unshare -m``, skipped
where that is not allowed); a kernel-refused write mid-save is also provoked without privileges
through ``RLIMIT_FSIZE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from training_args import SMOKE, recipe, supernet_args

from dwnas.cli import main

REPO = Path(__file__).resolve().parents[1]
SMOKE_FILE = str(REPO / "params/smoke.yaml")
J = json.dumps

# Every stage that writes an output, with inputs that need not exist: the writability check comes
# before any input is read, so a bad output is reported before any work.
STAGES = {
    "data synth": ["data", "synth", "--out", "{out}"],
    "data mnist": ["data", "mnist", "--out", "{out}"],
    "data prepare": ["data", "prepare", "--root", "raw", "--subset", "all", "--out", "{out}"],
    "supernet init": ["supernet", "init", "--params", SMOKE_FILE, "--num-classes", "4",
                      "--out", "{out}"],
    "train supernet": ["train", "supernet", "--prepared", "p", "--space", J(SMOKE["space"]),
                       "--recipe", J(recipe()), "--resolution", "32", "--out", "{out}",
                       "--summary", "{summary}"],
    "train elastic": ["train", "elastic", "--prepared", "p", "--init", "s.pt", "--recipe",
                      J(recipe()), "--resolution-min", "32", "--resolution-max", "40",
                      "--out", "{out}", "--summary", "{summary}"],
    "train sweep": ["train", "sweep", "--checkpoint", "e.pt", "--prepared", "p", "--resolutions",
                    "32:40:8", "--label", "elastic", "--out", "{out}"],
    "profile": ["profile", "--space", J(SMOKE["space"]), "--grid", "32,40", "--num-classes", "4",
                "--out", "{out}"],
    "search": ["search", "--checkpoint", "e.pt", "--prepared", "p", "--lut", "lut.json",
               "--budgets", J(SMOKE["search"]["budgets"]), "--settings", "{}", "--out", "{out}"],
    "transform": ["transform", "--arch", "a.json", "--checkpoint", "e.pt", "--prepared", "p",
                  "--out", "{out}"],
    "measure": ["measure", "--model", "m.onnx", "--resolution", "32", "--out", "{out}"],
    "compare": ["compare", "--model", "deep=m.onnx", "--resolution", "32", "--out", "{out}"],
    "baseline mobilenetv2": ["baseline", "mobilenetv2", "--prepared", "p", "--width", "1.0",
                             "--resolution", "32", "--recipe", "{}", "--out", "{out}"],
    "baseline depthshrinker": ["baseline", "depthshrinker", "--prepared", "p", "--checkpoint",
                               "e.pt", "--arch", "a.json", "--budget", "60pct",
                               "--linear-fraction", "0.5", "--recipe", "{}", "--out", "{out}"],
    "baseline hurricane supernet": ["baseline", "hurricane", "supernet", "--prepared", "p",
                                    "--space", J(SMOKE["space"]), "--settings", "{}",
                                    "--out", "{out}"],
    "baseline hurricane search": ["baseline", "hurricane", "search", "--prepared", "p",
                                  "--supernet", "h.pt", "--lut", "lut.json", "--budgets",
                                  J(SMOKE["search"]["budgets"]), "--budget", "60pct",
                                  "--settings", "{}", "--search-settings", "{}",
                                  "--out", "{out}"],
    "baseline odn": ["baseline", "odn", "--prepared", "p", "--backbone", "resnet18",
                     "--resolution", "32", "--criterion", "{}", "--recipe", "{}",
                     "--out", "{out}"],
    "report": ["report", "--measured", "m.json", "--out", "{out}"],
}


def _spy_on_the_stages_work(monkeypatch) -> list:
    """Replace the command function a parsed command line would run (the stage's work) by one that
    records the call: the list stays empty when the error comes before any work."""
    import dwnas.cli as cli

    calls: list = []
    build = cli.build_parser

    def build_spied():
        parser = build()
        parse = parser.parse_args

        def parse_args(argv=None, namespace=None):
            args = parse(argv, namespace)
            args.func = lambda args: calls.append(args) or 0
            return args

        parser.parse_args = parse_args
        return parser

    monkeypatch.setattr(cli, "build_parser", build_spied)
    return calls


def _sysfs() -> Path:
    if not os.path.ismount("/sys"):
        pytest.skip("no sysfs at /sys")
    return Path("/sys")


@pytest.mark.parametrize("where", ["sysfs-folder", "sysfs-new-folder", "file-as-folder"])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_refuses_an_unwritable_output_before_any_work(tmp_path, monkeypatch, capsys,
                                                                  stage, where):
    monkeypatch.chdir(tmp_path)
    if where == "file-as-folder":
        (tmp_path / "results").write_text("a file where the output folder should be")
        folder = tmp_path / "results" / "stage"
    elif where == "sysfs-new-folder":
        folder = _sysfs() / f"dwnas-test-{os.getpid()}"  # mkdir: EPERM even for root
    else:
        folder = _sysfs()  # creating a file there: EACCES even for root
    out, summary = folder / "out", folder / "summary.json"
    argv = [a.replace("{out}", str(out)).replace("{summary}", str(summary)) for a in STAGES[stage]]
    worked = _spy_on_the_stages_work(monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: cannot write ("), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert worked == [], "the stage's work ran before the output was found unwritable"
    assert not folder.exists() or where == "sysfs-folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["results"] if where == "file-as-folder" else [])


def test_training_into_an_unwritable_folder_fails_before_its_first_step(prepared, tmp_path,
                                                                        capsys):
    """The issue's case: training used to run until its first state save, then a traceback."""
    (tmp_path / "out").write_text("")
    assert main(supernet_args(prepared, tmp_path / "out" / "train", epochs=1)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'out/train/supernet.pt'}: cannot write (")
    assert err.endswith(": Not a directory)\n") and len(err.splitlines()) == 1
    assert "epoch" not in err


# -- a disk that fills during a save ----------------------------------------------------------------
@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes that would grow a file past ``limit`` bytes fail in the kernel (EFBIG)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_write_refused_during_the_state_save_is_an_error_line(prepared, tmp_path, capsys):
    """torch.save reported a failed write as ``enforce fail at inline_container.cc`` (no path,
    no reason): the save now names the file and the reason, and leaves nothing behind."""
    out = tmp_path / "out"
    with file_size_limit(64 * 1024):  # the state (weights and optimizer) is larger
        rc = main(supernet_args(prepared, out, epochs=1, checkpoint_every=2))
    assert rc == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out / 'supernet.state.pt'}: cannot write (file too large)"], err
    assert "inline_container" not in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []


def _private_tmpfs_available() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _private_tmpfs_available(),
                                 reason="cannot mount a tmpfs in a private mount namespace")


def on_full_disk(tmp_path: Path, size: str, argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``dwnas argv`` with ``tmp_path/full`` a ``size`` tmpfs only it sees (a full disk)."""
    full = tmp_path / "full"
    full.mkdir()
    cmd = [sys.executable, "-m", "dwnas", *argv]
    script = (f'mount -t tmpfs -o size={size} tmpfs "{full}" && "$@"; rc=$?; '
              f'ls -A "{full}"; exit $rc')
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *cmd], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "DWNAS_TRACKING": "0"})


@needs_tmpfs
def test_training_on_a_full_disk_names_the_file(prepared, tmp_path):
    out = tmp_path / "full" / "train"
    done = on_full_disk(tmp_path, "64k", supernet_args(prepared, out, epochs=1,
                                                        checkpoint_every=2))
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    # known before the first step: the checkpoint and its resume state do not fit (a write
    # refused mid-save is the RLIMIT_FSIZE test below)
    assert len(errors) == 1 and errors[0].startswith(
        f"error: {out / 'supernet.pt'}: not enough free space for the checkpoint and its resume "
        "state: needs "), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "step 1/" not in done.stderr
    assert done.stdout.split() == ["train"]  # the (empty) output folder, nothing in it


@needs_tmpfs
def test_transform_on_a_full_disk_is_an_error_line_and_leaves_nothing(prepared, tmp_path):
    """Was SIGABRT (rc 134) with partial hidden files."""
    from dwnas.space import Arch, BlockArch

    checkpoint = tmp_path / "supernet.pt"
    assert main(["supernet", "init", "--params", SMOKE_FILE, "--num-classes", "4",
                 "--out", str(checkpoint)]) == 0
    arch = tmp_path / "arch.json"
    arch.write_text(Arch(((BlockArch(3, 6, True), BlockArch(5, 3, False)),
                          (BlockArch(5, 6, True),)), 36).to_json())
    out = tmp_path / "full" / "transform"
    for size in ("300k",):  # full at a later file (.onnx), the .pt2 files already written
        done = on_full_disk(tmp_path, size, [
            "transform", "--arch", str(arch), "--checkpoint", str(checkpoint), "--prepared",
            str(prepared), "--calib-images", "24", "--eval-batch", "16", "--out", str(out)])
        assert done.returncode == 2, done.stderr[-3000:]
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {out}: cannot write ("), errors
        assert errors[0].endswith(": disk full)"), errors
        assert "Traceback" not in done.stderr
        assert done.stdout.split() == [], done.stdout  # no partial hidden files
        (tmp_path / "full").rmdir()


# -- absurd resolutions ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["measure", "--model", "m.onnx", "--resolution", "100000", "--out", "x.json"],
    ["compare", "--model", "deep=m.onnx", "--resolution", "100000", "--out", "x.json"],
])
def test_measure_resolution_100000_is_an_error_line(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"not loaded: the resolution is checked first")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "error: --resolution must be between 1 and 1024 px, got 100000\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("option", ["--resolution", "--resolution-min", "--resolution-max",
                                    "--resolutions"])
def test_training_resolution_100000_is_refused_by_the_parser(tmp_path, capsys, option):
    """Was a MemoryError (or hours of swapping) once the first batch was resized."""
    argv = {"--resolution": STAGES["train supernet"], "--resolutions": STAGES["train sweep"]}.get(
        option, STAGES["train elastic"])
    argv = [a.replace("{out}", str(tmp_path / "o")).replace("{summary}", str(tmp_path / "s"))
            for a in argv]
    argv[argv.index(option) + 1] = "32:100000:8" if option == "--resolutions" else "100000"
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and "between 8 and 1024 px" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_free_space_is_checked_against_a_known_output_size(tmp_path):
    """More than the file system has free is refused before work, naming the path and sizes."""
    import shutil

    from dwnas.errors import DwnasError
    from dwnas.io import check_free_space

    target = tmp_path / "not/yet/made/supernet.pt"
    free = shutil.disk_usage(tmp_path).free
    check_free_space(target, 1024, "a small file")
    with pytest.raises(DwnasError, match=r"supernet\.pt: not enough free space for the checkpoint:"
                       r" needs [\d,.]+ MiB, [\d,.]+ MiB free on "):
        check_free_space(target, free + 2**30, "the checkpoint")
    assert not (tmp_path / "not").exists()
