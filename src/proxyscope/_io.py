"""Small I/O helpers shared by every layer: atomic writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(
    path: str | os.PathLike[str], writer: Callable[[str], object], suffix: str = ""
) -> Path:
    """Call ``writer(tmp_path)`` then move the file into place atomically.

    The temporary file sits next to the target, so ``os.replace`` is a rename
    on one file system: a crash mid-write leaves any earlier file at ``path``
    untouched and never a half-written one. The file gets the permissions a
    plain ``open(path, "w")`` would give it: those of the file it replaces, or
    0666 less the process's umask for a new one (the temporary file is created
    0600, which others could not read).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def _mode_for(target: Path) -> int:
    """The permission bits a file written at ``target`` should have."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
