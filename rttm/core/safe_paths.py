"""Refuse directories another local user could write: RTTM trusts what it finds in them.

The state directory holds ``stack.json`` (pids ``rttm down`` signals) and the local
PostgreSQL's password; a recovery directory holds Bytewax snapshots, which are pickles:
whoever can write there runs code as the flow's user. So such a directory must belong to
this user (or to root) and be writable by nobody else.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from rttm.core.errors import RttmError

#: Write bits for group and others: any of them lets another user plant files.
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def check_private_dir(path: Path, what: str, files: str | None = None) -> None:
    """Refuse ``path`` (and its entries matching glob ``files``) if others could write it.

    A directory that does not exist yet passes: RTTM creates it itself. ``what`` names it
    in the one-line error, e.g. ``"state directory (RTTM_STATE_DIR)"``.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        msg = f"{what} {path}: {exc.strerror}"
        raise RttmError(msg) from None
    if not stat.S_ISDIR(info.st_mode):
        msg = f"{what} {path} is not a directory"
        raise RttmError(msg)
    _check_owner_and_mode(path, info, what)
    for entry in sorted(path.glob(files)) if files else []:
        _check_owner_and_mode(entry, entry.stat(), f"{what} entry")


def _check_owner_and_mode(path: Path, info: os.stat_result, what: str) -> None:
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        msg = (
            f"{what} {path} belongs to uid {info.st_uid}, not to you (uid {me}): "
            "use a directory of your own"
        )
        raise RttmError(msg)
    # Group write is fine when the group is one of this process's own: Kubernetes' fsGroup
    # makes every volume group-writable for the pod's group. Anyone else may not write.
    shared = info.st_mode & stat.S_IWGRP and info.st_gid not in {os.getegid(), *os.getgroups()}
    if info.st_mode & stat.S_IWOTH or shared:
        msg = f"{what} {path} is writable by group or others: chmod go-w {path}"
        raise RttmError(msg)


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symlink at ``path`` (O_NOFOLLOW), in one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if path.is_symlink():
            msg = f"refusing {path}: it is a symlink (remove it; rttm writes the file itself)"
            raise RttmError(msg) from None
        msg = f"cannot open {path}: {exc.strerror}"
        raise RttmError(msg) from None


def check_bytewax_recovery(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> None:
    """Under ``python -m bytewax.run … -r DIR`` (or BYTEWAX_RECOVERY_DIRECTORY), check DIR.

    The dataflows in ``dataflows/`` call this on import, before Bytewax opens the store.
    """
    if not argv or not argv[0].endswith(os.path.join("bytewax", "run.py")):
        return
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-r", "--recovery-directory", type=Path)
    known, _ = parser.parse_known_args(argv[1:])
    directory = known.recovery_directory or env.get("BYTEWAX_RECOVERY_DIRECTORY")
    if directory:
        check_private_dir(Path(directory), "recovery directory (-r)", files="part-*")
