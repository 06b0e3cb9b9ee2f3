"""Configuration files in TOML, decoded strictly into msgspec Structs.

An unknown key, a missing one, a wrong type, or a failed cross-check in the Struct's
``__post_init__`` is an error naming the file (or "the default …") and the key.
"""

from __future__ import annotations

from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

import msgspec

from rttm.core.errors import RttmError

T = TypeVar("T")


def load_toml(kind: type[T], path: Path | None, default: Traversable, what: str) -> T:
    """The ``what`` file at ``path`` (or the shipped ``default``) decoded as ``kind``."""
    if path is None:
        text, where = default.read_bytes(), f"the default {what}"
    else:
        try:
            text = path.read_bytes()
        except OSError as exc:
            msg = f"cannot read {what} {path}: {exc.strerror}"
            raise RttmError(msg) from None
        where = str(path)
    try:
        return msgspec.toml.decode(text, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        msg = f"{where}: {exc}"
        raise RttmError(msg) from None
