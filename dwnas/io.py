"""Atomic file and directory writes: a stage killed half-way leaves nothing that looks finished.

An output that cannot be written (permission denied, disk full, read-only file system) raises a
DwnasError naming the output path, which the CLI prints as one ``error:`` line (exit status 2);
:func:`check_writable` lets a stage find that out before its work starts.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dwnas.errors import DwnasError
from dwnas.procs import owner_alive, owner_tag

# OSErrors that mean "this path cannot be written here" rather than a bug.
WRITE_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large",
}


def _is_temporary(filename: Any, path: Path, tmp: Path | None) -> bool:
    """Whether an OSError's filename is one of our temporary names for ``path`` (or inside one)."""
    if not isinstance(filename, str | bytes | os.PathLike):
        return True  # no name (a failed write()), or a file descriptor
    name = Path(os.fsdecode(filename))
    if tmp is not None and (name == tmp or tmp in name.parents):
        return True
    return name.parent == path.parent and name.name.startswith(f".{path.name}.")


class WriteError(DwnasError):
    """``<path>: cannot write (<reason>)``: an output that cannot be written."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: cannot write ({reason})")
        self.path, self.reason = Path(path), reason


def _write_error(exc: OSError, path: Path, tmp: Path | None = None,
                 any_errno: bool = False) -> DwnasError | None:
    """A DwnasError naming ``path`` for a write-side OSError, or None to let ``exc`` through."""
    if not (any_errno or exc.errno in WRITE_ERRNOS or isinstance(exc, PermissionError)):
        return None
    reason = WRITE_ERRNOS.get(exc.errno) or exc.strerror or str(exc)
    if _is_temporary(exc.filename, path, tmp) or Path(os.fsdecode(exc.filename)) == path:
        return WriteError(path, reason)
    return WriteError(path, f"{os.fsdecode(exc.filename)}: {reason}")


@contextlib.contextmanager
def _writing(path: Path, any_errno: bool = False) -> Iterator[None]:
    """Turn a write-side OSError in the block (creating, renaming into place) into a DwnasError."""
    try:
        yield
    except OSError as exc:
        error = _write_error(exc, path, any_errno=any_errno)
        if error is None:
            raise
        raise error from exc


@contextlib.contextmanager
def _body(path: Path, tmp: Path) -> Iterator[None]:
    """The caller's block writing into ``tmp``: its write-side OSErrors on ``tmp`` name ``path``.

    An OSError on another file (an input the block reads) passes through unchanged, and a file
    written atomically inside a temporary folder is named by the folder's final path (a hidden
    temporary name means nothing to the user).
    """
    try:
        yield
    except OSError as exc:
        if not _is_temporary(exc.filename, path, tmp):
            raise
        error = _write_error(exc, path, tmp)
        if error is None:
            raise
        raise error from exc
    except WriteError as exc:
        if tmp not in exc.path.parents:
            raise
        raise WriteError(path, f"{exc.path.relative_to(tmp)}: {exc.reason}") from exc


def check_writable(path: str | os.PathLike) -> Path:
    """Make sure ``path`` (a file or folder a stage will write atomically) can be written.

    Creates its parent folder if needed and writes a probe file there (and inside ``path`` if it
    is an existing folder), so a stage fails with a DwnasError naming ``path`` before its work
    starts rather than after it. Returns ``path`` as a Path.
    """
    path = Path(path)
    with _writing(path, any_errno=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in [path.parent, *([path] if path.is_dir() else [])]:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
            os.close(fd)
            os.unlink(probe)
    return path


def check_free_space(path: str | os.PathLike, needed: int, what: str) -> None:
    """Before work: the file system that will hold ``path`` has room for ``needed`` bytes of
    ``what`` (a known output size), else a DwnasError naming ``path`` now, not a full disk later."""
    path = Path(path).absolute()
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DwnasError(f"{path}: not enough free space for {what}: needs "
                         f"{needed / 2**20:,.1f} MiB, {free / 2**20:,.1f} MiB free on {folder}")


def _umask_mode(directory: bool) -> int:
    """The mode a plain open()/mkdir() would give (mkstemp/mkdtemp make owner-only files)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _temp_suffix(kind: str = "tmp") -> str:
    """``.p<pid>-<start>.tmp``: temporaries name their writer (see :func:`remove_stale`)."""
    return f".{owner_tag()}.{kind}"


def remove_stale(path: str | os.PathLike, quiet: bool = False) -> list[Path]:
    """Remove what killed writers of ``path`` left beside it: ``.<name>.*.tmp`` / ``.*.old``
    files and folders whose writing process is gone (or that do not name one: older dwnas).

    A stage calls this as it starts (``dwnas`` does for ``--out`` / ``--summary``), so a killed
    stage's temporary copy (a whole packed dataset mid-``data prepare``) is gone at the next start.
    """
    path = Path(path)
    stale = []
    for kind in ("tmp", "old"):
        pattern = str(path.parent / f".{glob.escape(path.name)}.*.{kind}")
        for found in map(Path, glob.glob(pattern)):
            if owner_alive(found.name):
                continue  # another live process is writing it right now
            with contextlib.suppress(OSError):
                if found.is_dir() and not found.is_symlink():
                    shutil.rmtree(found)
                else:
                    found.unlink()
                stale.append(found)
    if stale and not quiet:
        print(f"removed what a killed run left: {', '.join(map(str, stale))}", file=sys.stderr)
    return stale


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_temp_suffix(), dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _body(path, tmp_path):
            yield tmp_path
        with _writing(path):
            os.chmod(tmp_path, _umask_mode(directory=False))
            os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(OSError):
            if tmp_path.exists():
                tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory; it replaces ``path`` only if the block succeeds.

    Temporary folders that killed writers of ``path`` left are removed first."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=_temp_suffix(),
                                         dir=path.parent))
    try:
        with _body(path, tmp_path):
            yield tmp_path
        with _writing(path):
            os.chmod(tmp_path, _umask_mode(directory=True))
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=_temp_suffix("old"),
                                            dir=path.parent))
                os.replace(path, old / "x")
                os.replace(tmp_path, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically; NaN/inf are refused (use null)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, turning a missing or malformed file into a clear DwnasError."""
    path = Path(path)
    if not path.is_file():
        raise DwnasError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DwnasError(f"{path}: not a UTF-8 JSON file") from exc
    except json.JSONDecodeError as exc:
        raise DwnasError(f"{path}: not valid JSON ({exc})") from exc


def _anonymous_file(folder: Path) -> int | None:
    """An unnamed file in ``folder`` (``O_TMPFILE``, Linux), or None where unsupported."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):  # naming it needs /proc
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, _umask_mode(directory=False))
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise
        return None  # a file system without O_TMPFILE


class _RecordingWriter:
    """A file's ``write`` that remembers the OSError it raised: torch.save turns a failed write
    (disk full) into ``RuntimeError: enforce fail at inline_container.cc``, naming neither."""

    def __init__(self, handle: Any):
        self.handle, self.error = handle, None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _torch_save_to(obj: Any, handle: Any) -> None:
    """``torch.save(obj, handle)`` and flush; a failed write raises its OSError, not torch's."""
    import torch

    writer = _RecordingWriter(handle)
    try:
        torch.save(obj, writer)
    except RuntimeError:
        if writer.error is not None:
            raise writer.error from None
        raise
    handle.flush()


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` so that an interrupted save leaves neither a checkpoint nor a temporary.

    The bytes go to an unnamed file (``O_TMPFILE``) that gets a name only once complete: a kill
    during the save leaves nothing behind (no 0-byte ``.<name>.*.tmp``). Elsewhere it writes
    through a temporary name, which the next start removes."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _anonymous_file(path.parent)
    if fd is None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            _torch_save_to(obj, handle)
        return
    tmp = path.parent / f".{path.name}.{os.urandom(4).hex()}{_temp_suffix()}"
    try:
        with _body(path, tmp), os.fdopen(fd, "wb", closefd=False) as handle:
            _torch_save_to(obj, handle)
        with _writing(path):
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:  # linkat(AT_SYMLINK_FOLLOW): a name for the file, now that it is complete
                os.link(f"/proc/self/fd/{fd}", tmp.name, dst_dir_fd=folder)
            finally:
                os.close(folder)
            os.replace(tmp, path)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
