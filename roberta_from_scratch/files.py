"""Writing files so that nothing a user made is ever half-written: one helper for the whole package.

A file is written under a unique temporary name in its own folder (two writers never share one), flushed to disk
(``fsync``), then renamed over the target (``os.replace`` is atomic on POSIX and Windows), and the folder's entry is
flushed too. A crash leaves either the old file or the new one, never a mixture; a stale temporary file is the
only trace, and it never has the target's name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is), where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(directory: str | os.PathLike) -> None:
    """Flush every file under ``directory`` and the folders themselves (before renaming the folder into place)."""
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(root)


def _new_temporary(path: Path) -> tuple[int, Path]:
    """An open, new, uniquely named file beside ``path``, created as ``open()`` creates any file: mode 0666 less the
    umask, applied by the system (no reading or changing of the process's umask, which other threads share)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}{TMP_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # another writer's name: draw again
            continue


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` (text, bytes, or a function that writes the file at the path it is given) to ``path``
    atomically. Folders are created. The file gets the mode any new file gets (0666 less the umask: readable by
    others where the umask allows, as a model meant to be shared should be). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temporary(path)
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if callable(data):
            os.close(fd)
            data(tmp)
            os.chmod(tmp, mode)  # the writer may have replaced the file (safetensors creates a new one, mode 0600)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def writable_dir(output_dir: str | os.PathLike, option: str = "--output-dir") -> Path:
    """Create the folder if needed and prove that a file can be written in it; a ValueError says why not."""
    if not str(output_dir).strip():
        raise ValueError(f"{option} is empty: name a folder for what the run writes")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out} is a file: name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"{option} {out} cannot be written ({error.strerror}): choose another folder") from None
    return out
