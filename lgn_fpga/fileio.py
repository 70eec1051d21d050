"""Atomic file writes: a temporary file in the same folder, fsync, then a rename.

An interrupted or failed write never leaves a half-written artifact and never
destroys the previous version.  Used for every artifact the toolkit writes
(checkpoints, netlists, HDL, reports, downloads).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "remove_stale_temporaries"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return "." + path.name + "."


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating parent folders); returns the path.

    An ``OSError`` names ``path``, never the temporary file the user did not ask for.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    except OSError as e:
        raise _naming(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise
    return path


def _naming(e: OSError, path: Path) -> OSError:
    """``e`` with ``path`` as its file name when it named our temporary file (or nothing)."""
    name = str(e.filename) if e.filename is not None else None
    if name is None or Path(name).name.startswith(_temp_prefix(path)):
        return type(e)(e.errno, e.strerror or str(e), str(path)) if e.errno else OSError(f"{path}: {e}")
    return e


def remove_stale_temporaries(folder, names) -> list[Path]:
    """Delete the temporaries that an atomic write of ``folder/NAME`` left when its process was killed.

    (A write that fails or is interrupted cleans up after itself; only SIGKILL or a power cut leaves
    ``.NAME.*.tmp`` behind.)  Returns the removed paths.
    """
    folder, gone = Path(folder), []
    for name in names:
        for p in folder.glob(_temp_prefix(Path(name)) + "*.tmp"):
            try:
                p.unlink()
                gone.append(p)
            except OSError:
                pass
    return gone


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())
