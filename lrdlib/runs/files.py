"""Files written so that a kill at any moment leaves the old file or the complete new one.

A temporary file names its host and process; ``remove_stale_temporaries`` deletes those left by a
process of this host that no longer runs (a kill during a write).
"""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

HOST = socket.gethostname().replace(".", "-")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path``; the file gets mode 0666 & ~umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files left in ``folder`` and its subfolders by writers on this host that
    are no longer running (a kill during a write); returns them. Temporaries of live processes and of other hosts are kept."""
    gone = []
    for p in folder.rglob(f".*.{HOST}.*.tmp") if folder.is_dir() else ():
        parts = p.name.split(".")
        pid = parts[-3] if len(parts) >= 4 else ""
        if pid.isdigit() and not alive(int(pid)):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone
