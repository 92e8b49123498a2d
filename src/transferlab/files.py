"""Writing files so that nothing half-written is ever left behind.

Every file a run folder holds is written here: to a temporary file in the same folder, flushed to
disk, then renamed over the target (a crash leaves the old file or the new one, never a mix). New
files get the permissions the process umask allows, like any other file the user creates. Text is
UTF-8 with ``surrogateescape``: a file name that is not valid UTF-8 is written back as its own bytes.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "write_text", "write_bytes", "clean_temporaries", "OutputError", "check_writable"]


EMPTY_PATH = "an empty path (an unset variable?)"  # Path("") is the current folder: never take it silently


class OutputError(OSError):
    """An output path that cannot be written; the message names the path, the reason and the fix."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _explain(path: Path, e: OSError) -> OutputError:
    why = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EEXIST: "a file is in the way where a folder is needed",
        errno.ENOTDIR: "a file is in the way where a folder is needed",
        errno.EISDIR: "it is a folder, not a file",
    }.get(e.errno, e.strerror)
    space = e.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free some space or choose another output path" if space else "choose another output path"
    err = OutputError(f"cannot write '{path}': {why}; {fix}")
    err.errno = e.errno
    return err


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``.
    Raises :class:`OutputError` (and leaves nothing behind) when the folder cannot be written."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a run folder's files are the user's files
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _explain(path, e) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, surrogateescape) atomically."""
    data = text.encode("utf-8", "surrogateescape")
    return atomic_write(path, lambda f: f.write(data))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def clean_temporaries(folder: str | Path) -> list[Path]:
    """Remove the ``.name.*.tmp`` files an interrupted :func:`atomic_write` left in ``folder``."""
    folder = Path(folder)
    gone = []
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def check_writable(folder: str | Path) -> None:
    """Raise :class:`OutputError` unless files can be created in ``folder`` (made if missing)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _explain(folder, e) from None


def check_writable_file(path: str | Path) -> None:
    """Raise :class:`OutputError` unless a file can be written at ``path`` (its folder is made if
    missing): before the work whose result goes there, not after."""
    path = Path(path)
    if path.is_dir():
        raise _explain(path, IsADirectoryError(errno.EISDIR, "is a directory"))
    check_writable(path.parent)
