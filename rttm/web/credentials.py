"""Read the files of who may sign in: bcrypt htpasswd users, and SHA-256 hashed tokens.

Both files are refused at start-up, in one line naming the file (and line), when anyone
but their owner may read or write them (as ssh refuses a private key others can read: a
leaked bcrypt hash can be attacked offline), or when a line is not what it should be: a
password file line whose hash is not bcrypt (Apache's MD5 ``$apr1$``, ``{SHA}``, crypt,
plain text) would be a weak hash, so it is refused rather than skipped or accepted.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from rttm.core.config import ConfigError

#: A bcrypt hash as ``htpasswd -B`` ($2y$), pyca bcrypt and crypt ($2b$) or older tools
#: ($2a$) write it: cost, then 22 characters of salt and 31 of hash.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_OTHER_SCHEMES = (
    ("$apr1$", "Apache MD5"),
    ("{SHA}", "SHA-1"),
    ("$1$", "MD5-crypt"),
    ("$5$", "SHA-256-crypt"),
    ("$6$", "SHA-512-crypt"),
)
#: The largest file either may be: thousands of users, not a mistaken path to a big file.
MAX_FILE_BYTES = 1 << 20


def _lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Numbered non-blank, non-comment lines of ``path``, once it is checked private."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            msg = f"{what} {path}: not a regular file"
            raise ConfigError(msg)
        # As ssh: the mode matters for a file of one's own. A root-owned file this process
        # can read (a Kubernetes Secret, 0440 with fsGroup) was made readable on purpose.
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            msg = (
                f"{what} {path} is open to others (mode {stat.S_IMODE(info.st_mode):04o}):"
                f" run chmod 600 {path}"
            )
            raise ConfigError(msg)
        if info.st_size > MAX_FILE_BYTES:
            msg = f"{what} {path}: larger than {MAX_FILE_BYTES:,} bytes"
            raise ConfigError(msg)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read {what} {path}: {exc.strerror or exc}"
        raise ConfigError(msg) from None
    except UnicodeDecodeError:
        msg = f"{what} {path}: not UTF-8 text"
        raise ConfigError(msg) from None
    numbered = enumerate(text.splitlines(), start=1)
    return [(n, line.strip()) for n, line in numbered if line.strip() and line[0] != "#"]


def _split(path: Path, number: int, line: str, what: str) -> tuple[str, str]:
    name, colon, secret = line.partition(":")
    if not colon or not name or not secret:
        msg = f"{path}:{number}: expected NAME:{what}"
        raise ConfigError(msg)
    return name, secret


def read_users(path: Path) -> dict[str, bytes]:
    """User name → bcrypt hash, from an htpasswd file whose every entry is bcrypt."""
    users: dict[str, bytes] = {}
    for number, line in _lines(path, "password file"):
        name, hashed = _split(path, number, line, "BCRYPT-HASH")
        if not _BCRYPT.fullmatch(hashed):
            scheme = next(
                (label for prefix, label in _OTHER_SCHEMES if hashed.startswith(prefix)),
                "not a recognised hash",
            )
            msg = (
                f"{path}:{number}: user {name!r} has no bcrypt hash ({scheme}):"
                f" make it with htpasswd -B"
            )
            raise ConfigError(msg)
        if name in users:
            msg = f"{path}:{number}: user {name!r} is listed twice"
            raise ConfigError(msg)
        users[name] = hashed.encode("ascii")
    if not users:
        msg = f"password file {path} lists no user"
        raise ConfigError(msg)
    return users


def read_tokens(path: Path) -> dict[str, bytes]:
    """Token name → SHA-256 digest of the token, from ``NAME:SHA256-HEX`` lines."""
    tokens: dict[str, bytes] = {}
    for number, line in _lines(path, "token file"):
        name, digest = _split(path, number, line, "SHA256-HEX")
        if not _SHA256_HEX.fullmatch(digest.lower()):
            msg = f"{path}:{number}: token {name!r}: expected 64 hex digits (a SHA-256 digest)"
            raise ConfigError(msg)
        if name in tokens:
            msg = f"{path}:{number}: token {name!r} is listed twice"
            raise ConfigError(msg)
        tokens[name] = bytes.fromhex(digest)
    if not tokens:
        msg = f"token file {path} lists no token"
        raise ConfigError(msg)
    return tokens


def cost(hashed: bytes) -> int:
    """The cost (log2 rounds) of a bcrypt hash that :func:`read_users` accepted."""
    return int(hashed[4:6])
