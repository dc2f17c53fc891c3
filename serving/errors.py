"""Domain errors -> HTTP responses. Every error body is `{"message": ...}`, plus `errors` for 422."""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.caps.decisions import CapRequestError, CapStoreUnavailable
from recsys.caps.policy import PolicyError
from recsys.publication import PublicationError
from serving.auth import AuthenticationError, ForbiddenError
from serving.event_log import EventLogUnavailable
from serving.policy_store import PolicyConflictError, PolicyRevisionNotFoundError

logger = logging.getLogger(__name__)

STORE_DOWN = "caps store (Redis) unavailable: nothing may be pushed until it answers again; retry later"


class NoLiveModelError(RuntimeError):
    """No model version is published (or the live one cannot be loaded)."""


class ClockWindowError(ValueError):
    """A `now` or `ts` too far from the server clock (HTTP 422)."""


class UnknownFeaturesError(ValueError):
    """Feature names in a rank request that the published model does not have (HTTP 422)."""


class UnknownUserError(LookupError):
    """A cardholder the caps store and the publication have never seen."""


def _body(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


def _json_position(document: object, offset: int) -> str:
    """`line L, column C` of character `offset` in the request body (both counted from 1)."""
    text = document.decode("utf-8", "replace") if isinstance(document, bytes | bytearray) else str(document)
    before = text[:offset]
    line = before.count("\n") + 1
    return f"line {line}, column {offset - (before.rfind(chr(10)) + 1) + 1}"


def _not_json(request: Request) -> str | None:
    """Why a body was not read as JSON, when its Content-Type says it is something else (or nothing)."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return "the Content-Type header is missing: send the body as JSON with Content-Type: application/json"
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    return (f"the Content-Type is {media!r}, not JSON: send the body as JSON with "
            "Content-Type: application/json")


def _problem(request: Request, error: RequestValidationError, item: dict) -> dict[str, str]:
    loc = tuple(item.get("loc", ()))
    message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
    if item.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
        expected = (item.get("ctx") or {}).get("error", "valid JSON")
        return {"location": "body",
                "message": f"malformed JSON at {_json_position(error.body, loc[1])}: {expected}"}
    if loc == ("body",) and item.get("type") in ("model_attributes_type", "dict_type"):
        message = _not_json(request) or message
    return {"location": _location(loc), "message": message}


async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [_problem(request, error, item) for item in error.errors()]
    summary = "; ".join(f"{p['location']}: {p['message']}" for p in problems[:5])
    return _body(422, f"invalid request: {summary}", errors=problems)


async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
    response = _body(error.status_code, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _unauthenticated(request: Request, error: AuthenticationError) -> JSONResponse:
    response = _body(401, str(error))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _forbidden(request: Request, error: ForbiddenError) -> JSONResponse:
    return _body(403, str(error))


async def _invalid(request: Request, error: ValueError) -> JSONResponse:
    return _body(422, str(error))


async def _conflict(request: Request, error: PolicyConflictError) -> JSONResponse:
    return _body(409, str(error))


async def _not_found(request: Request, error: LookupError) -> JSONResponse:
    return _body(404, str(error.args[0]) if error.args else "not found")


async def _store_down(request: Request, error: Exception) -> JSONResponse:
    logger.warning("caps store unavailable on %s: %s", request.url.path, type(error).__name__)
    return _body(503, STORE_DOWN)


async def _store_error(request: Request, error: redis.RedisError) -> JSONResponse:
    logger.error("caps store error on %s: %s", request.url.path, error)
    return _body(503, f"caps store (Redis) error, nothing may be pushed: {type(error).__name__}: {error}")


async def _log_down(request: Request, error: EventLogUnavailable) -> JSONResponse:
    logger.error("%s", error)
    return _body(503, str(error))


async def _no_model(request: Request, error: NoLiveModelError) -> JSONResponse:
    return _body(503, str(error))


async def _publication(request: Request, error: PublicationError) -> JSONResponse:
    logger.error("publication unreadable: %s", error)
    return _body(503, f"the live publication cannot be read: {error}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(AuthenticationError, _unauthenticated)
    app.add_exception_handler(ForbiddenError, _forbidden)
    app.add_exception_handler(PolicyConflictError, _conflict)
    app.add_exception_handler(PolicyRevisionNotFoundError, _not_found)
    app.add_exception_handler(UnknownUserError, _not_found)
    app.add_exception_handler(PolicyError, _invalid)
    app.add_exception_handler(CapRequestError, _invalid)
    app.add_exception_handler(ClockWindowError, _invalid)
    app.add_exception_handler(UnknownFeaturesError, _invalid)
    app.add_exception_handler(NoLiveModelError, _no_model)
    app.add_exception_handler(EventLogUnavailable, _log_down)
    app.add_exception_handler(PublicationError, _publication)
    app.add_exception_handler(redis.RedisError, _store_error)
    for error in (CapStoreUnavailable, redis.ConnectionError, redis.TimeoutError):
        app.add_exception_handler(error, _store_down)
