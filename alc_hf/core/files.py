"""Files written whole: a reader never sees half a file, and new files get the modes the umask gives (what a
published model folder needs). Standard library only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["umask_mode", "write_atomically"]


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place, with the mode ``open`` gives a new
    file (``mkstemp`` makes it readable by its owner only, unlike the model files beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, umask_mode())
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def umask_mode(directory: bool = False) -> int:
    """The mode the process's umask gives a new file (0644 with the usual umask 022) or folder (0755)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask
