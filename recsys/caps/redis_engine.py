"""`RedisCapEngine`: the cap rules enforced atomically in Redis (single server or Redis Cluster).

Key layout (prefix `qm` by default; `{...}` is the cluster hash tag):

- `{qm:u:<user_id>}`  one hash per cardholder: `o` opted-out time, `m` muted time, `u` unopened
  streak, `l` last sent time, `P` the push records (reserved / confirmed / released, packed into
  one field), `c:<content_id>` last time each content was sent. Expires after `policy.retention`
  without activity, except while the cardholder is opted out or muted forever.
- `{qm:t:<campaign>}:<window>`  reservations of a campaign in one throttle window (expires).

Every operation on a cardholder is one Lua script call on that cardholder's key (check-and-reserve
is atomic: two schedulers can never both take the last slot). Batches are pipelined, grouped by
cluster node. The caller's clock is passed in (never Redis TIME); local day/month boundaries and
quiet hours are computed in Python with zoneinfo and passed as epoch milliseconds. The policy is
compiled into the script source, so a policy change loads a new script (SHA) once.

When Redis cannot be reached every call raises `CapStoreUnavailable`: nothing is allowed.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster

from recsys.caps import rules
from recsys.caps.decisions import (
    Candidate,
    CapRequest,
    CapStoreUnavailable,
    PushStatus,
    Reservation,
    ReservationStatus,
    UserDecision,
    from_ms,
    now_utc,
    to_ms,
)
from recsys.caps.engine import CapEngine, check_id, new_push_id
from recsys.caps.policy import Policy, default_policy

logger = logging.getLogger(__name__)

_STATUS = {"r": ReservationStatus.RESERVED, "c": ReservationStatus.CONFIRMED, "x": ReservationStatus.RELEASED}
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError, OSError)

_CLAIM_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local room = tonumber(ARGV[2]) - current
if room < 0 then room = 0 end
local granted = math.min(tonumber(ARGV[1]), room)
if granted > 0 then
  redis.call('INCRBY', KEYS[1], granted)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {granted, current + granted}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _lua_str(value: str) -> str:
    # Policy names are validated to [A-Za-z0-9_.:-], so single quotes are safe.
    return "'" + value + "'"


def compile_policy(policy: Policy) -> str:
    """The Lua table `P` the cap script reads its rules from."""
    limits = []
    for limit in policy.limits:
        window = {"calendar_day": 1, "calendar_month": 2, "rolling": 3}[limit.window]
        kinds = (
            "{" + ", ".join(f"[{_lua_str(k)}] = true" for k in limit.kinds) + "}" if limit.kinds else "nil"
        )
        tags = "{" + ", ".join(f"[{_lua_str(t)}] = true" for t in limit.tags) + "}" if limit.tags else "nil"
        limits.append(
            f"{{name = {_lua_str(limit.name)}, window = {window}, dur = {(limit.duration or 0) * 1000}, "
            f"max = {limit.max}, filtered = {str(limit.filtered).lower()}, kinds = {kinds}, tags = {tags}}}"
        )
    fatigue = policy.fatigue
    no_repeat = policy.no_repeat
    values = {
        "ttl": policy.reservation_ttl * 1000,
        "horizon": policy.history_horizon * 1000,
        "retention": policy.retention * 1000,
        "tx_counts": str(policy.transactional.counts_toward_limits).lower(),
        "min_gap": (policy.min_gap or 0) * 1000,
        "fatigue_n": fatigue.after_unopened if fatigue else 0,
        "fatigue_pause": fatigue.pause * 1000 if fatigue else 0,
        "mute_pause": policy.mute.pause * 1000 if policy.mute.pause else -1,
        "no_repeat": str(no_repeat is not None).lower(),
        "no_repeat_window": no_repeat.window * 1000 if no_repeat and no_repeat.window else -1,
        "any_tag_filter": str(any(limit.tags for limit in policy.limits)).lower(),
    }
    body = ",\n  ".join(f"{name} = {value}" for name, value in values.items())
    return (
        f"-- policy {policy.version}\nlocal P = {{\n  {body},\n  limits = {{\n    "
        + ",\n    ".join(limits)
        + "\n  }\n}\n"
    )


def script_source(policy: Policy) -> str:
    body = resources.files(__package__).joinpath("lua/caps.lua").read_text(encoding="utf-8")
    return compile_policy(policy) + body


class RedisCapEngine(CapEngine):
    """Cap engine on Redis; same semantics as `ReferenceCapEngine`.

    `client` is a `redis.Redis` or `redis.cluster.RedisCluster`; build one with `from_url`.
    Within one `decide_batch`, campaign-throttle counts seen by decide-only requests are those at
    the start of the batch (reserving requests always claim throttle slots atomically).
    """

    def __init__(
        self, client: redis.Redis | RedisCluster, policy: Policy | None = None, *, prefix: str = "qm"
    ) -> None:
        super().__init__(policy or default_policy())
        check_id(prefix, "prefix")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._prefix = prefix
        self._claim_sha = hashlib.sha1(_CLAIM_SCRIPT.encode()).hexdigest()
        self._compile()

    @classmethod
    def from_url(
        cls,
        url: str,
        policy: Policy | None = None,
        *,
        prefix: str = "qm",
        cluster: bool = False,
        timeout: float = 2.0,
    ) -> RedisCapEngine:
        """Connect to `redis://host:port/db` (or a cluster seed node with `cluster=True`)."""
        options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
        client: redis.Redis | RedisCluster
        if cluster:
            client = RedisCluster.from_url(url, **options)
        else:
            client = redis.Redis.from_url(url, health_check_interval=30, **options)
        return cls(client, policy, prefix=prefix)

    # -- plumbing ---------------------------------------------------------------------------
    def _compile(self) -> None:
        self._source = script_source(self._policy)
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()
        self._loaded = False

    def set_policy(self, policy: Policy) -> None:
        super().set_policy(policy)
        self._compile()

    def user_key(self, user_id: str) -> str:
        return f"{{{self._prefix}:u:{user_id}}}"

    def throttle_key(self, campaign: str, bucket: int) -> str:
        return f"{{{self._prefix}:t:{campaign}}}:{bucket}"

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as error:
            raise CapStoreUnavailable(
                f"cap store (Redis) unreachable: {error}; nothing may be pushed until it answers"
            ) from error

    def _load_scripts(self) -> None:
        with self._guard():
            # On a cluster SCRIPT LOAD goes to every primary.
            self._client.script_load(self._source)
            self._client.script_load(_CLAIM_SCRIPT)
        self._loaded = True
        logger.debug("loaded cap script %s for policy %s", self._sha, self._policy.version)

    def _pipeline(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Run commands whose key is argument 3 (EVALSHA) or 1 (GET), pipelined per node."""
        if not calls:
            return []
        if not self._loaded:
            self._load_scripts()
        with self._guard():
            results = self._execute(calls)
            retry = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
            if retry:
                self._load_scripts()
                for i, value in zip(retry, self._execute([calls[i] for i in retry]), strict=True):
                    results[i] = value
            for i, value in enumerate(results):
                if isinstance(value, redis.ResponseError) and self._cluster and _redirected(value):
                    # Slots moved: the cluster client follows the redirect and refreshes its map.
                    results[i] = self._client.execute_command(*calls[i])
                elif isinstance(value, Exception):
                    raise value
        return results

    def _execute(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        if not self._cluster:
            pipe = self._client.pipeline(transaction=False)
            for call in calls:
                pipe.execute_command(*call)
            return pipe.execute(raise_on_error=False)
        groups: dict[str, list[int]] = defaultdict(list)
        nodes = {}
        for index, call in enumerate(calls):
            key = call[3] if call[0] == "EVALSHA" else call[1]
            node = self._client.get_node_from_key(key)
            groups[node.name].append(index)
            nodes[node.name] = node
        results: list[Any] = [None] * len(calls)
        for name, indices in groups.items():
            connection = self._client.get_redis_connection(nodes[name])
            pipe = connection.pipeline(transaction=False)
            for index in indices:
                pipe.execute_command(*calls[index])
            for index, value in zip(indices, pipe.execute(raise_on_error=False), strict=True):
                results[index] = value
        return results

    def _call(self, user_id: str, *args: Any) -> Any:
        return self._pipeline([("EVALSHA", self._sha, 1, self.user_key(user_id), *args)])[0]

    # -- decisions --------------------------------------------------------------------------
    def _decide_call(
        self,
        request: CapRequest,
        cal: rules.Calendar,
        push_id: str,
        exhausted: dict[str, tuple[int, int, int]],
    ) -> tuple[Any, ...]:
        args: list[Any] = [
            "EVALSHA",
            self._sha,
            1,
            self.user_key(request.user_id),
            "d",
            cal.now,
            1 if request.reserve else 0,
            push_id,
            cal.day_start,
            cal.day_end,
            cal.month_start,
            cal.month_end,
            cal.quiet_until or 0,
            len(request.candidates),
        ]
        for candidate in request.candidates:
            args += [
                candidate.content_id,
                candidate.kind,
                "|".join(candidate.tags),
                1 if candidate.transactional else 0,
                1 if candidate.campaign in exhausted else 0,
                candidate.campaign or "",
            ]
        return tuple(args)

    def decide_batch(
        self, requests: Sequence[CapRequest], *, now: datetime | None = None
    ) -> list[UserDecision]:
        self._check_requests(requests)
        now_ms = to_ms(now or now_utc())
        policy = self._policy
        cals = [rules.calendar(policy, self.timezone_of(r.timezone), now_ms) for r in requests]
        push_ids = [(r.push_id or new_push_id()) if r.reserve else "" for r in requests]
        exhausted = self._exhausted_campaigns(requests, now_ms)
        results: list[UserDecision] = []
        todo = list(range(len(requests)))
        while todo:
            given = dict(exhausted)
            replies = self._pipeline(
                [self._decide_call(requests[i], cals[i], push_ids[i], given) for i in todo]
            )
            parsed = {i: _parse_decide(reply, requests[i]) for i, reply in zip(todo, replies, strict=True)}
            cut = self._settle_throttle(requests, todo, parsed, push_ids, now_ms, given, exhausted)
            for i in todo[:cut]:
                reservation_reply, raws = parsed[i]
                request = requests[i]
                for candidate, blocks in zip(request.candidates, raws, strict=True):
                    if candidate.campaign is not None and candidate.campaign in given:
                        until, used, maximum = given[candidate.campaign]
                        blocks.append(("campaign_throttle", until, used, maximum))
                decisions = rules.decide_candidates(policy, raws, request.candidates, cals[i])
                results.append(
                    UserDecision(
                        request.user_id,
                        decisions,
                        _reservation(request.user_id, reservation_reply),
                        policy.version,
                        from_ms(now_ms),
                    )
                )
            todo = todo[cut:]
        return results

    def _exhausted_campaigns(
        self, requests: Sequence[CapRequest], now_ms: int
    ) -> dict[str, tuple[int, int, int]]:
        """Campaigns whose throttle window is already full: campaign -> (window end, used, max)."""
        if self._policy.campaign_throttle is None:
            return {}
        campaigns = sorted({c.campaign for r in requests for c in r.candidates if c.campaign is not None})
        if not campaigns:
            return {}
        buckets = [rules.throttle_bucket(self._policy, campaign, now_ms) for campaign in campaigns]
        counts = self._pipeline(
            [("GET", self.throttle_key(c, b[0])) for c, b in zip(campaigns, buckets, strict=True)]
        )
        exhausted = {}
        for campaign, (bucket, maximum, per_ms), used in zip(campaigns, buckets, counts, strict=True):
            used = int(used or 0)
            if used >= maximum:
                exhausted[campaign] = ((bucket + 1) * per_ms, used, maximum)
        return exhausted

    def _settle_throttle(
        self,
        requests: Sequence[CapRequest],
        todo: list[int],
        parsed: dict[int, tuple[list[Any], list[list[rules.RawBlock]]]],
        push_ids: list[str],
        now_ms: int,
        given: dict[str, tuple[int, int, int]],
        exhausted: dict[str, tuple[int, int, int]],
    ) -> int:
        """Claim campaign-throttle slots for this round's new reservations, in request order.

        Returns how many requests of `todo` stand as decided. The first request that lost a claim,
        or that was decided while a campaign it lists was already full (filled by an earlier request
        of the batch or by another scheduler), and every request after it are rolled back (their
        new reservations undone, their unused claims given back) and decided again with the
        campaign marked full, so a batch decides exactly as the same requests one by one.
        """
        if self._policy.campaign_throttle is None:
            return len(todo)
        chosen: dict[int, str] = {}
        wanted: dict[str, int] = defaultdict(int)
        for i in todo:
            reply, raws = parsed[i]
            if reply[0] == 1:
                campaign = requests[i].candidates[_chosen(requests[i].candidates, raws, given)].campaign
                if campaign is not None:
                    chosen[i] = campaign
                    wanted[campaign] += 1
        if not wanted:
            return len(todo)
        campaigns = list(wanted)
        rates = {c: rules.throttle_bucket(self._policy, c, now_ms) for c in campaigns}
        keys = {c: self.throttle_key(c, rates[c][0]) for c in campaigns}
        claims = self._pipeline(
            [
                ("EVALSHA", self._claim_sha, 1, keys[c], wanted[c], rates[c][1], rates[c][2] + 60_000)
                for c in campaigns
            ]
        )
        granted = {c: int(claim[0]) for c, claim in zip(campaigns, claims, strict=True)}
        running = {c: int(claim[1]) - granted[c] for c, claim in zip(campaigns, claims, strict=True)}
        before = dict(running)
        cut = len(todo)
        for position, i in enumerate(todo):
            listed = {cand.campaign for cand in requests[i].candidates if cand.campaign in running}
            if any(running[c] >= rates[c][1] and c not in given for c in listed):
                cut = position
                break
            if i in chosen:
                running[chosen[i]] += 1
        if cut == len(todo):
            return cut
        rollback: list[tuple[Any, ...]] = []
        for i in todo[cut:]:
            if parsed[i][0][0] == 1:
                rollback.append(
                    ("EVALSHA", self._sha, 1, self.user_key(requests[i].user_id), "u", now_ms, push_ids[i])
                )
        for c in campaigns:
            unused = granted[c] - (running[c] - before[c])
            if unused > 0:
                rollback.append(("DECRBY", keys[c], unused))
            bucket, maximum, per_ms = rates[c]
            if running[c] >= maximum:
                exhausted[c] = ((bucket + 1) * per_ms, running[c], maximum)
        self._pipeline(rollback)
        return cut

    # -- lifecycle of a push ----------------------------------------------------------------
    def confirm(self, user_id: str, push_id: str, *, now: datetime | None = None) -> PushStatus:
        check_id(user_id, "user_id")
        check_id(push_id, "push_id")
        return PushStatus(_text(self._call(user_id, "c", to_ms(now or now_utc()), push_id)))

    def release(self, user_id: str, push_id: str, *, now: datetime | None = None) -> PushStatus:
        check_id(user_id, "user_id")
        check_id(push_id, "push_id")
        return PushStatus(_text(self._call(user_id, "r", to_ms(now or now_utc()), push_id)))

    def _react(self, user_id: str, op: str, now: datetime | None) -> None:
        check_id(user_id, "user_id")
        self._call(user_id, op, to_ms(now or now_utc()))

    def record_open(self, user_id: str, *, now: datetime | None = None) -> None:
        self._react(user_id, "o", now)

    def record_mute(self, user_id: str, *, now: datetime | None = None) -> None:
        self._react(user_id, "m", now)

    def record_unmute(self, user_id: str, *, now: datetime | None = None) -> None:
        self._react(user_id, "M", now)

    def record_opt_out(self, user_id: str, *, now: datetime | None = None) -> None:
        self._react(user_id, "x", now)

    def record_opt_in(self, user_id: str, *, now: datetime | None = None) -> None:
        self._react(user_id, "X", now)

    def load_record(self, user_id: str) -> rules.CardholderRecord:
        check_id(user_id, "user_id")
        with self._guard():
            raw = self._client.hgetall(self.user_key(user_id))
        return parse_record({_text(k): _text(v) for k, v in raw.items()})

    def memory_usage(self, user_id: str) -> int:
        """Bytes Redis uses for one cardholder's key (MEMORY USAGE), 0 if the key does not exist."""
        with self._guard():
            return int(self._client.memory_usage(self.user_key(user_id), samples=0) or 0)

    def close(self) -> None:
        self._client.close()


def _redirected(error: Exception) -> bool:
    message = str(error)
    return message.startswith(("MOVED", "ASK"))


def _chosen(
    candidates: tuple[Candidate, ...], raws: list[list[rules.RawBlock]], exhausted: dict[str, Any]
) -> int:
    for index, (candidate, blocks) in enumerate(zip(candidates, raws, strict=True)):
        if not blocks and candidate.campaign not in exhausted:
            return index
    raise RuntimeError("cap script reserved a candidate that no rule allows: script and engine disagree")


def _opt(value: Any) -> int | None:
    number = int(value)
    return None if number == -1 else number


def _parse_decide(reply: list[Any], request: CapRequest) -> tuple[list[Any], list[list[rules.RawBlock]]]:
    reservation = [
        int(reply[0]),
        _text(reply[1]),
        _text(reply[2]),
        int(reply[3]),
        int(reply[4]),
        _text(reply[5]),
    ]
    position = 6
    raws: list[list[rules.RawBlock]] = []
    for _ in request.candidates:
        count = int(reply[position])
        position += 1
        blocks: list[rules.RawBlock] = []
        for _ in range(count):
            rule, eligible, a, b = reply[position : position + 4]
            blocks.append((_text(rule), _opt(eligible), _opt(a), _opt(b)))
            position += 4
        raws.append(blocks)
    return reservation, raws


def _reservation(user_id: str, reply: list[Any]) -> Reservation | None:
    kind, push_id, content_id, ts, expires, status = reply
    if kind == 0:
        return None
    return Reservation(
        push_id=push_id,
        user_id=user_id,
        content_id=content_id,
        reserved_at=from_ms(ts),
        expires_at=from_ms(expires),
        status=_STATUS[status],
        replayed=kind == 2,
    )


def parse_record(fields: dict[str, str]) -> rules.CardholderRecord:
    """A cardholder hash (decoded) as the reference's `CardholderRecord`."""
    record = rules.CardholderRecord(
        opted_out=int(fields["o"]) if "o" in fields else None,
        muted=int(fields["m"]) if "m" in fields else None,
        unopened=int(fields.get("u", 0)),
        last_sent=int(fields["l"]) if "l" in fields else None,
    )
    for name, value in fields.items():
        if name.startswith("c:"):
            record.sent_contents[name[2:]] = int(value)
    packed = fields.get("P", "")
    if packed:
        for item in packed.split("\x1e"):
            pid, status, ts, expires, tx, content, kind, tags, campaign = item.split("\x1f")
            record.pushes[pid] = rules.PushRecord(
                push_id=pid,
                status=_STATUS[status],
                ts=int(ts),
                expires=int(expires),
                content_id=content,
                kind=kind,
                tags=tuple(tags.split("|")) if tags else (),
                transactional=tx == "1",
                campaign=campaign or None,
            )
    return record
