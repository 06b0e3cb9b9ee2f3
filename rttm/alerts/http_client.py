"""Small JSON-over-HTTP calls to receivers, each answer sorted into sent, refused or failed.

The standard library's ``urllib`` is enough for a few POSTs a minute and adds no
dependency. HTTPS uses the system's CA store (``SSL_CERT_FILE`` points elsewhere).
Redirects are not followed: urllib would turn the POST into a bodiless GET and carry the
credentials and the signature to another address; a 3xx is reported as refused, with
where it pointed.
"""

from __future__ import annotations

import enum
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

#: Longest wait for one call: a hung receiver must not hold the sender for long.
TIMEOUT_S: Final = 5.0
#: 4xx answers that mean "not now" rather than "never": retried like an outage.
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})
_ANSWER_CHARS: Final = 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


class Outcome(enum.Enum):
    """How a call went."""

    SENT = "sent"  # 2xx
    REFUSED = "refused"  # 4xx: the receiver will never take this payload
    FAILED = "failed"  # no answer, 5xx, 408/425/429: try again later


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome, and the status and body (cut to one short line) or the error."""

    outcome: Outcome
    detail: str
    body: bytes = b""


def call(
    method: str,
    url: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    *,
    body: bytes | None = None,
    timeout: float = TIMEOUT_S,
) -> Answer:
    """``method url`` with ``payload`` as JSON (or ``body`` as is); never raises for I/O."""
    data = body if body is not None else None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only, checked at start-up
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "rttm")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(Outcome.SENT, f"HTTP {response.status}", response.read())
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            where = exc.headers.get("Location", "nowhere")
            return Answer(Outcome.REFUSED, f"HTTP {exc.code}: redirect to {where} not followed")
        text = _one_line(exc.read())
        detail = f"HTTP {exc.code}" + (f": {text}" if text else "")
        refused = 400 <= exc.code < 500 and exc.code not in _RETRYABLE_4XX
        return Answer(Outcome.REFUSED if refused else Outcome.FAILED, detail)
    except urllib.error.URLError as exc:
        return Answer(Outcome.FAILED, str(getattr(exc.reason, "strerror", None) or exc.reason))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # timeouts, resets, an answer that is not HTTP or is cut short
        return Answer(Outcome.FAILED, str(exc) or type(exc).__name__)


def _one_line(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= _ANSWER_CHARS else text[: _ANSWER_CHARS - 1] + "…"
