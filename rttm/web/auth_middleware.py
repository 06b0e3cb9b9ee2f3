"""The ASGI middleware that asks :class:`~rttm.web.auth.Authenticator` about every request.

Everything but the probes needs credentials: a load balancer or kubelet checks
``/healthz`` and ``/readyz`` without any, and they tell nothing but "ok" or what failed.
The check runs on a worker thread, since a bcrypt check holds the CPU for up to a quarter
of a second and would stall every other request on the event loop.
"""

from __future__ import annotations

from collections.abc import Collection

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from rttm.web.auth import Authenticator, Verdict

#: Paths answered without credentials.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class AuthMiddleware:
    """Answers 401 (or 429) to requests the authenticator refuses; the rest go on."""

    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, open_paths: Collection[str] = OPEN_PATHS
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.open_paths = open_paths
        self._proxy_header = authenticator.proxy_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer it here."""
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        authorization = proxy_user = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == self._proxy_header:
                proxy_user = value.decode("latin-1")
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        check = self.authenticator.check
        if authorization is None and proxy_user is None:
            verdict = check(None, address)  # nothing to verify: no thread needed
        else:
            verdict = await anyio.to_thread.run_sync(check, authorization, address, proxy_user)
        if verdict.allowed:
            scope.setdefault("state", {})["user"] = verdict.user
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
        else:
            await self._refuse(verdict, send)

    async def _refuse(self, verdict: Verdict, send: Send) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
        if verdict.status == 429:
            body = f"too many failed sign-ins: try again in {verdict.retry_after_s} s\n"
            headers.append((b"retry-after", str(verdict.retry_after_s).encode()))
        else:
            body = "authentication required\n"
            headers += [
                (b"www-authenticate", challenge.encode("utf-8"))
                for challenge in self.authenticator.challenges()
            ]
        data = body.encode()
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": verdict.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
