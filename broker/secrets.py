"""Secret files: written whole (never half a file for a reader) and owner-only."""

from __future__ import annotations

import grp
import os
import stat
import tempfile
from pathlib import Path

BROKER_GROUP = "mosquitto"


def broker_group() -> int | None:
    """The gid of the broker's group when we may hand files to it (root, or a member)."""
    try:
        group = grp.getgrnam(BROKER_GROUP)
    except KeyError:
        return None
    if os.geteuid() == 0 or group.gr_gid in os.getgroups():
        return group.gr_gid
    return None


def private_folder(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700: only its owner lists or enters it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_secret(path: Path, data: str | bytes, *, broker_reads: bool = False) -> Path:
    """Write `path` atomically, mode 0600 (0640 for the broker's group when `broker_reads`).

    The broker drops to its own user before reading its password file, ACL and TLS key, so those
    are group-readable by the broker's group (and no one else). An unchanged file is left alone,
    so that whatever watches it (a systemd path unit reloading the broker) sees only changes.
    """
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o640 if broker_reads and broker_group() is not None else 0o600
    try:
        if path.read_bytes() == data and stat.S_IMODE(path.stat().st_mode) == mode:
            return path
    except OSError:
        pass  # absent or unreadable: write it
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        gid = broker_group() if broker_reads else None
        if gid is not None:
            os.chown(temporary, -1, gid)
            Path(temporary).chmod(0o640)
        else:
            Path(temporary).chmod(0o600)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
