"""Where RTTM's servers listen unless told otherwise: this machine only."""

from __future__ import annotations

from typing import Final

#: The loopback address every server binds by default (the dashboard, the metrics ports,
#: the local stack); another address is an explicit choice, checked where it is made.
LOCALHOST: Final = "127.0.0.1"
