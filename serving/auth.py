"""Bearer-token authentication with two roles: the push scheduler and administrators.

The scheduler may rank, post events and read; an administrator may do everything, including
changing the policy and reloading. Each administrator of `RECSYS_ADMIN_TOKENS` has a name, which
the policy audit trail records (`RECSYS_ADMIN_TOKEN` is the administrator named "admin").
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recsys.config import Settings

READ = "read"
RANK = "rank"
EVENTS = "events"
ADMIN = "admin"

_SCOPES = {
    "scheduler": frozenset({READ, RANK, EVENTS}),
    "admin": frozenset({READ, RANK, EVENTS, ADMIN}),
}

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`: scheduler or admin token")


class AuthenticationError(Exception):
    """No token, or a token that matches no principal (HTTP 401)."""


class ForbiddenError(Exception):
    """A valid token without the scope an operation needs (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    name: str  # who: "scheduler", or the administrator's name
    role: str
    scopes: frozenset[str]


def identities(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, role, token) of every configured token."""
    found = [("scheduler", "scheduler", settings.scheduler_token.get_secret_value()),
             ("admin", "admin", settings.admin_token.get_secret_value())]
    found += [(name, "admin", token.get_secret_value()) for name, token in settings.admin_tokens.items()]
    return found


def identify(token: str, settings: Settings) -> Principal | None:
    """The principal owning `token`; every configured token is compared, in constant time."""
    given = token.encode()
    found = None
    for name, role, secret in identities(settings):
        if hmac.compare_digest(given, secret.encode()):
            found = Principal(name, role, _SCOPES[role])
    return found


def requires(scope: str):
    """A dependency returning the caller's principal, refusing callers without `scope`.

    It is `async` (it never blocks) so FastAPI does not run it in its thread pool.
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise AuthenticationError("missing bearer token: send `Authorization: Bearer <token>`")
        principal = identify(credentials.credentials, request.app.state.serving.settings)
        if principal is None:
            raise AuthenticationError("invalid bearer token: use the scheduler or admin token")
        if scope not in principal.scopes:
            raise ForbiddenError(f"the {principal.role} token may not do this: it needs the {scope} scope")
        return principal

    return dependency


ReadAccess = Annotated[Principal, Depends(requires(READ))]
RankAccess = Annotated[Principal, Depends(requires(RANK))]
EventsAccess = Annotated[Principal, Depends(requires(EVENTS))]
AdminAccess = Annotated[Principal, Depends(requires(ADMIN))]
