"""A lean ASGI path for the scheduler's hot endpoints, `POST /v1/rank` and `POST /v1/rank/batch`.

FastAPI's per-request machinery (route matching over every router, dependency resolution, body
parsing with `json.loads` then model validation) costs as much CPU as the ranking itself. This
middleware answers the common case directly: a JSON body with a valid scheduler or admin token
that validates in one `model_validate_json` pass. Everything else (no or wrong token, a missing
scope, another content type, a body that does not validate) is handed on, body replayed, to the
FastAPI routes, which stay declared for the OpenAPI schema and answer exactly as they always did.
Domain errors raised while ranking go through the app's own exception handlers, so the status
codes and messages are the same on both paths.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import RANK, identify
from serving.ranker import rank_many
from serving.responses import encode_answers
from serving.schemas import BatchRankRequest, RankRequest
from serving.state import ServingState

MAX_COALESCED = 64
# Under load, a group waits up to this long for the requests the worker has recently been
# answering together; a lone request (no recent concurrency) never waits.
LINGER_SECONDS = 0.002  # 1 ms left one group in eight short of its requests under load
RECENT_GROUPS = 32  # groups whose sizes set how many requests a group waits for


class Coalescer:
    """Single rank requests that arrive together are ranked in one `rank_many` call.

    A worker answers one request at a time (Redis is called synchronously), so under load several
    requests wait in the event loop; ranking them together decides their caps in one pipelined round
    trip (and reads any records the worker does not hold in one MGET). Every request
    still gets exactly its own answer; a cardholder asked for twice goes into a later group, so the
    second request sees the first one's reservation.

    Requests arrive a few hundred microseconds apart even when the clients send them at once (the
    worker answers the previous group one response at a time), so ranking as soon as the loop is
    free made groups of one or two. A group therefore waits, at most `linger` seconds, until it
    has as many requests as the largest of the last `RECENT_GROUPS` groups; while groups are of one
    request (a single client, light load) nothing waits.
    """

    def __init__(self, state: ServingState, linger: float = LINGER_SECONDS) -> None:
        self.state = state
        self.linger = linger
        self.pending: list[tuple[RankRequest, asyncio.Future[Any]]] = []
        self.requests = 0  # requests ranked and `rank_many` calls made: how much was coalesced
        self.groups = 0
        self.recent: deque[int] = deque([1], maxlen=RECENT_GROUPS)
        self.expected = 1
        self._timer: asyncio.TimerHandle | None = None

    async def rank(self, request: RankRequest) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((request, future))
        waiting = len(self.pending)
        if waiting == 1:
            if self.expected > 1:
                self._timer = loop.call_later(self.linger, self.flush)
            else:
                # After the requests already in the ready queue have joined.
                loop.call_soon(self.flush)
        elif waiting == self.expected and self._timer is not None:
            self._timer.cancel()
            self._timer = None
            loop.call_soon(self.flush)
        return await future

    def flush(self) -> None:
        self._timer = None
        pending, self.pending = self.pending, []
        if not pending:
            return
        self.recent.append(len(pending))
        self.expected = max(self.recent)
        while pending:
            group, later, users = [], [], set()
            for item in pending:
                if item[0].user_id in users or len(group) >= MAX_COALESCED:
                    later.append(item)
                else:
                    users.add(item[0].user_id)
                    group.append(item)
            self._run(group)
            pending = later

    def _run(self, group: list[tuple[RankRequest, asyncio.Future[Any]]]) -> None:
        self.requests += len(group)
        self.groups += 1
        try:
            _, bodies = rank_many(self.state, [request for request, _ in group])
        except Exception as error:  # noqa: BLE001 - each request's task maps or re-raises it
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), body in zip(group, bodies, strict=True):
            if not future.done():
                future.set_result(body)


def _rank_batch(state: ServingState, body: BatchRankRequest) -> bytes:
    snapshot, bodies = rank_many(state, body.requests)
    return encode_answers({"results": bodies, "model_version": snapshot.model.version}, bodies)


# path -> request model; each path is also a declared FastAPI route giving the same answers.
LEAN_ROUTES: dict[str, type[BaseModel]] = {"/v1/rank": RankRequest, "/v1/rank/batch": BatchRankRequest}
JSON_HEADERS = [(b"content-type", b"application/json")]


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


class LeanRankMiddleware:
    """Answers valid, authorised JSON requests to `LEAN_ROUTES`; hands everything else to the app."""

    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        from serving.routers.rank import router

        self.app = app
        self.fastapi_app = fastapi_app
        self.coalescer: Coalescer | None = None
        # The declared routes, so metrics label lean requests with the template the router would.
        self._routes = {route.path: route for route in router.routes if route.path in LEAN_ROUTES}
        missing = set(LEAN_ROUTES) - set(self._routes)
        if missing:
            raise RuntimeError(f"lean paths without a declared route: {sorted(missing)}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in LEAN_ROUTES \
                or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        model = LEAN_ROUTES[scope["path"]]
        state: ServingState = self.fastapi_app.state.serving
        authorization = content_type = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        principal = None
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and token:
            try:
                principal = identify(token.decode("latin-1"), state.settings)
            except UnicodeError:
                principal = None
        request = None
        if principal is not None and RANK in principal.scopes and _is_json(content_type):
            try:
                request = model.model_validate_json(body)
            except ValidationError:
                request = None
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = self._routes[scope["path"]]
        try:
            if isinstance(request, RankRequest):
                if self.coalescer is None or self.coalescer.state is not state:
                    self.coalescer = Coalescer(state)
                answer = await self.coalescer.rank(request)
                payload = encode_answers(answer, (answer,))
            else:
                payload = _rank_batch(state, request)
        except Exception as error:  # noqa: BLE001 - mapped by the app's handlers, else re-raised
            handler_for = self._handler_for(error)
            if handler_for is None:
                raise
            response = await handler_for(Request(scope, receive), error)
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _handler_for(self, error: Exception) -> Any:
        handlers = self.fastapi_app.exception_handlers
        for kind in type(error).__mro__:
            if kind in handlers:
                return handlers[kind]
        return None


async def _read_body(receive: Receive) -> bytes | None:
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
