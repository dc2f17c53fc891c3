"""`RedisCapEngine`: the cap rules enforced atomically in Redis (single server or Redis Cluster).

Key layout (prefix `qm` by default; `{...}` is the cluster hash tag, so every key of a cardholder
lives in one slot):

- `{qm:u:<user_id>}`  one hash per cardholder: `o` opted-out time, `m` muted time, `u` unopened
  streak, `l` last sent time, `c:<content_id>` last time each content was sent, `P` the push
  records (reserved / confirmed / released) in one string, format 2: each record is RS (0x1e)
  followed by its nine fields joined by US (0x1f), see `lua/caps.lua`. Invisible records (expired
  reservations, pushes older than every window) are dropped by the next write. The key expires
  after `policy.retention` without writes, except while the cardholder is opted out or muted
  forever (those must never be forgotten).
- `{qm:u:<user_id>}:e:<event_id>`  an event applied to the cardholder (`sent`, `opened`...),
  written by the same script call that applied it, so an event is applied once; expires after
  `event_ttl_seconds` (30 days by default).
- `{qm:t:<campaign>}:<window>`  reservations of a campaign in one throttle window (expires).

Every operation on a cardholder is one Lua script call on that cardholder's key, so
check-and-reserve is atomic: two schedulers can never both take the last slot. Batches are sent
as pipelines (grouped by cluster node) in chunks, and Python decodes early replies (one msgpack
string per decide call) while Redis runs later scripts. The caller's clock is passed in (never Redis
TIME); local day/month boundaries and quiet hours are computed in Python with zoneinfo and passed as
epoch milliseconds.
The policy is compiled into the script source, so a policy change loads a new script (SHA) once.

When Redis cannot be reached every call raises `CapStoreUnavailable`: nothing is allowed. A
reservation whose reply was lost may exist; it only blocks, and stops counting after its TTL.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from operator import itemgetter
from typing import Any

import redis
from msgpack import unpackb
from redis.cluster import RedisCluster

try:  # hiredis packs commands in C; redis-py's packer is the fallback
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - depends on the environment
    _pack_command = None

from recsys.caps import rules
from recsys.caps.decisions import (
    Candidate,
    CandidateDecision,
    CapRequest,
    CapStoreUnavailable,
    EventAlreadyApplied,
    PushStatus,
    Reservation,
    ReservationStatus,
    UserDecision,
    from_ms,
    now_utc,
    to_ms,
)
from recsys.caps.engine import CapEngine, check_candidate, check_id, check_ids, new_push_ids
from recsys.caps.policy import Policy, PolicyError, default_policy
from recsys.redis_client import connect

logger = logging.getLogger(__name__)

# A candidate under a policy: (limit bitmask * 4 + transactional * 2, record tail, field "c:<id>",
# the code and the code + 1 (campaign throttled) as script arguments, then the same three arguments
# in the Redis protocol's encoding)
_Code = tuple[int, bytes, bytes, bytes, bytes, bytes, bytes, bytes]
# A candidate object's code, found by the object's id: the code and the object (kept alive by it)
_Entry = tuple[int, bytes, bytes, bytes, bytes, bytes, bytes, bytes, Candidate]
# what a decide command joins from its candidates' entries, read in C-level passes (`_decide_command`)
_TAIL, _FIELD_ENCODED, _CODE_ENCODED = itemgetter(1), itemgetter(5), itemgetter(6)

_SETTING = re.compile(r"\bP\.([a-z_]+)\b")
_CHUNK = 128
EVENT_TTL_SECONDS = 30 * 86400
_NO_RESERVATION = [0, "", "", 0, 0, "", 0]  # commands per pipelined write
_STATUS = {"r": ReservationStatus.RESERVED, "c": ReservationStatus.CONFIRMED, "x": ReservationStatus.RELEASED}
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ClusterError,  # e.g. redirects exhausted while the cluster fails over
    redis.exceptions.SlotNotCoveredError,
    OSError,
)

# Reservation times kept for reuse: a batch's new reservations share one time and one expiry.
INSTANT_CACHE_SIZE = 4096

# A throttle window's counter outlives its window by this much, so a scheduler whose clock lags another's
# by up to a minute still counts against the same window instead of finding the counter gone.
THROTTLE_KEY_GRACE_MS = 60_000

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


def compile_policy(policy: Policy) -> dict[str, str]:
    """The policy's scalar settings as Lua literals, substituted for `P.<name>` in the cap script."""
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
        "outcomes": rules.SEND_OUTCOMES,
    }
    return {name: f"({value})" for name, value in values.items()}


def compile_limits(policy: Policy) -> str:
    """Lua code counting every limit's pushes in one pass over the counting records, constants inlined.

    For every full limit (as `rules._limit_block` decides) adds the bit `2^(i-1)` to `blocked_mask`
    and appends its eligible time and count to `limit_out`, in policy order.
    """
    if not policy.limits:
        return ""
    counters, tests, settles = [], [], []
    for index, limit in enumerate(policy.limits, start=1):
        n, t = f"n{index}", f"t{index}"
        duration = (limit.duration or 0) * 1000
        if limit.window == "calendar_day":
            window, eligible, count = "ts >= day_s and ts < day_e", "day_e", f"{n} = {n} + 1"
        elif limit.window == "calendar_month":
            window, eligible, count = "ts >= mon_s and ts < mon_e", "mon_e", f"{n} = {n} + 1"
        elif limit.max == 1:
            # the latest push in the window is the one that has to leave it
            counters.append(f"local {t} = 0")
            window, eligible = f"ts > now - {duration}", f"{t} + {duration}"
            count = f"{n} = {n} + 1; if ts > {t} then {t} = ts end"
        else:
            counters.append(f"local {t} = {{}}")
            window = f"ts > now - {duration}"
            eligible = f"{t}[{n} - {limit.max} + 1] + {duration}"
            count = f"{n} = {n} + 1; {t}[{n}] = ts"
        conditions = [window]
        if limit.kinds:
            conditions.append("(" + " or ".join(f"r[KIND] == {_lua_str(k)}" for k in limit.kinds) + ")")
        if limit.tags:
            # stored tags read `|t1|t2|`: a plain find of `|tag|` is an exact tag match
            tags = " or ".join(f"string.find(r[TAGS], '|{t}|', 1, true)" for t in limit.tags)
            conditions.append(f"({tags})")
        tests.append(f"      if {' and '.join(conditions)} then {count} end -- {limit.name}")
        sort = f"table.sort({t}); " if limit.window == "rolling" and limit.max > 1 else ""
        settles.append(
            f"    if {n} >= {limit.max} then\n"
            f"      {sort}blocked_mask = blocked_mask + {1 << (index - 1)}\n"
            f"      limit_out[#limit_out + 1] = {eligible}; limit_out[#limit_out + 1] = {n}\n"
            f"    end"
        )
    names = ", ".join(f"n{i}" for i in range(1, len(policy.limits) + 1))
    zeros = ", ".join("0" for _ in policy.limits)
    return "\n".join(
        [
            "  do -- limits",
            f"    local {names} = {zeros}",
            *(f"    {line}" for line in counters),
            "    for _, r in ipairs(counting) do",
            "      local ts = r[TS]",
            *tests,
            "    end",
            *settles,
            "  end",
        ]
    )


def script_source(policy: Policy) -> str:
    """The cap script for a policy: the generic rules with its settings inlined and its limits unrolled."""
    body = resources.files(__package__).joinpath("lua/caps.lua").read_text(encoding="utf-8")
    settings = compile_policy(policy)

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise RuntimeError(f"cap script reads unknown policy setting P.{name}")
        return settings[name]

    body = _SETTING.sub(setting, body.replace("  --@LIMITS@", compile_limits(policy)))
    return f"-- policy {policy.version}\n" + body


class RedisCapEngine(CapEngine):
    """Cap engine on Redis; same semantics as `ReferenceCapEngine`.

    `client` is a `redis.Redis` or `redis.cluster.RedisCluster`; build one with `from_url`.
    Within one `decide_batch`, campaign-throttle counts seen by decide-only requests are those at
    the start of the batch (reserving requests always claim throttle slots atomically).
    """

    def __init__(
        self, client: redis.Redis | RedisCluster, policy: Policy | None = None, *, prefix: str = "qm",
        event_ttl_seconds: int = EVENT_TTL_SECONDS,
    ) -> None:
        super().__init__(policy or default_policy())
        # How long an applied event id is remembered: longer than any client keeps retrying.
        self._event_ttl_ms = event_ttl_seconds * 1000
        check_id(prefix, "prefix")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._prefix = prefix
        self._claim_sha = hashlib.sha1(_CLAIM_SCRIPT.encode()).hexdigest()
        self._sources: dict[str, str] = {}  # recent policies' scripts by SHA, reloaded after a flush
        self._loaded: set[str] = set()
        self._compiled = self._compile(self._policy)

    @classmethod
    def from_url(
        cls,
        url: str,
        policy: Policy | None = None,
        *,
        prefix: str = "qm",
        cluster: bool | None = False,
        timeout: float = 2.0,
    ) -> RedisCapEngine:
        """Connect to `redis://host:port/db` (a cluster seed node with `cluster=True`; `None` asks the
        server, see `recsys.redis_client.connect`)."""
        client = connect(url, cluster=cluster, socket_connect_timeout=timeout, socket_timeout=timeout,
                         health_check_interval=30)
        return cls(client, policy, prefix=prefix)

    # -- plumbing ---------------------------------------------------------------------------
    def _compile(self, policy: Policy) -> _Compiled:
        if len(policy.limits) > 30:
            # the script tests limits with 32-bit bit operations
            raise PolicyError(f"policy {policy.version}: the Redis engine supports at most 30 limits")
        source = script_source(policy)
        sha = hashlib.sha1(source.encode()).hexdigest()
        if len(self._sources) >= 8:
            self._sources.pop(next(iter(self._sources)))
        self._sources[sha] = source
        head = b"".join(map(_bulk, (b"EVALSHA", sha.encode(), b"1")))
        return _Compiled(policy, sha, {}, {}, {}, head)

    @staticmethod
    def _candidate_code(compiled: _Compiled, candidate: Candidate, request: int, position: int) -> _Entry:
        """(limit bitmask * 4 + transactional * 2, stored record tail, sent-content field, and the
        code and the code with the campaign-throttled bit as arguments), cached.

        Validates the candidate the first time it is seen. Callers look in `compiled.by_id` first:
        a candidate object seen before is found without hashing its fields (its entry ends with the
        object, which keeps it alive: no other live object can have its id).
        """
        cached = compiled.codes.get(candidate)
        if cached is None:
            check_candidate(candidate, f"requests[{request}].candidates[{position}]")
            if len(compiled.codes) > 50_000:
                compiled.codes.clear()
            mask = 0
            for index, limit in enumerate(compiled.policy.limits):
                if not limit.filtered or limit.matches(candidate.kind, candidate.tags):
                    mask |= 1 << index
            tags = "|" + "|".join(candidate.tags) + "|" if candidate.tags else ""
            fields = ["1" if candidate.transactional else "0", candidate.content_id, candidate.kind]
            tail = "\x1f".join([*fields, tags, candidate.campaign or ""]).encode()
            code = mask * 4 + (2 if candidate.transactional else 0)
            field = f"c:{candidate.content_id}".encode()
            arguments = (field, b"%d" % code, b"%d" % (code + 1))
            cached = (code, tail, *arguments, *map(_bulk, arguments))
            compiled.codes[candidate] = cached
        if len(compiled.by_id) > 50_000:
            compiled.by_id.clear()
        entry = compiled.by_id[id(candidate)] = (*cached, candidate)
        return entry

    def set_policy(self, policy: Policy) -> None:
        compiled = self._compile(policy)
        super().set_policy(policy)
        # one assignment: a batch in another thread keeps the policy it started with
        self._compiled = compiled

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
            for source in list(self._sources.values()):
                self._client.script_load(source)
            self._client.script_load(_CLAIM_SCRIPT)
        self._loaded = set(self._sources)
        logger.debug("loaded %d cap script(s); current policy %s", len(self._sources), self._policy.version)

    def _pipeline(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Run commands pipelined (per cluster node) and return their replies in order."""
        results: list[Any] = [None] * len(calls)

        def keep(index: int, reply: Any) -> None:
            results[index] = reply

        self._stream(calls, keep)
        return results

    def _stream(self, calls: Sequence[tuple[Any, ...]], handle: Callable[[int, Any], None]) -> None:
        """Send every command at once, then hand each reply to `handle(index, reply)` as it arrives.

        Python works on early replies while Redis still runs later scripts. Commands have their key
        at argument 3 (EVALSHA) or 1 (others). A script missing from the server (restart, SCRIPT
        FLUSH) is loaded and its commands re-run; cluster redirects are followed one by one.
        """
        if not calls:
            return
        if self._compiled.sha not in self._loaded:
            self._load_scripts()
        retry: list[int] = []
        redirected: list[int] = []
        failure: list[Exception] = []

        def triage(index: int, reply: Any) -> None:
            if not isinstance(reply, Exception):  # nearly every reply: one test
                handle(index, reply)
            elif isinstance(reply, redis.exceptions.NoScriptError):
                retry.append(index)
            elif isinstance(reply, redis.ResponseError) and self._cluster and _redirected(reply):
                redirected.append(index)
            else:
                failure.append(reply)

        with self._guard():
            for pool, indices in self._route(calls):
                if self._cluster:
                    self._send_and_read(pool, [calls[i] for i in indices], indices, triage)
                else:
                    self._send_and_read(pool, calls, indices, triage)
            if failure:
                raise failure[0]
            if retry:
                self._load_scripts()
                again = [calls[i] for i in retry]
                for pool, indices in self._route(again):
                    self._send_and_read(
                        pool, [again[i] for i in indices], [retry[i] for i in indices], handle
                    )
            for index in redirected:
                # Slots moved: the cluster client follows the redirect and refreshes its map.
                handle(index, self._client.execute_command(*calls[index]))

    def _route(self, calls: Sequence[tuple[Any, ...]]) -> list[tuple[Any, list[int]]]:
        """(connection pool, indices of its commands) per node."""
        if not self._cluster:
            return [(self._client.connection_pool, list(range(len(calls))))]
        groups: dict[str, list[int]] = defaultdict(list)
        pools = {}
        for index, call in enumerate(calls):
            key = call[3] if call[0] == "EVALSHA" else call[1]
            node = self._client.get_node_from_key(key)
            groups[node.name].append(index)
            if node.name not in pools:
                pools[node.name] = self._client.get_redis_connection(node).connection_pool
        return [(pools[name], indices) for name, indices in groups.items()]

    @staticmethod
    def _send_and_read(
        pool: Any, calls: Sequence[tuple[Any, ...]], indices: list[int], handle: Callable[[int, Any], None]
    ) -> None:
        """Pipeline on one connection: each chunk is written as soon as it is packed, so Redis is
        already running scripts while Python packs the rest; replies are then read in order."""
        connection = pool.get_connection()
        try:
            for start in range(0, len(calls), _CHUNK):
                if isinstance(calls, _LazyCalls) and calls.encode is not None:
                    packed = [calls.encode(start, min(start + _CHUNK, len(calls)))]
                elif _pack_command is not None:
                    packed = [b"".join([_pack_command(call) for call in calls[start : start + _CHUNK]])]
                else:
                    packed = connection.pack_commands(calls[start : start + _CHUNK])
                # no health check once replies are pending: its PING would read one of them
                connection.send_packed_command(packed, check_health=start == 0)
            for index in indices:
                try:
                    reply = connection.read_response()
                except redis.ResponseError as error:
                    reply = error
                handle(index, reply)
        except BaseException:
            # Replies may be left unread on this connection: never hand it to anyone else.
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

    def _call(self, user_id: str, *args: Any) -> Any:
        return self._pipeline([("EVALSHA", self._compiled.sha, 1, self.user_key(user_id), *args)])[0]

    # -- decisions --------------------------------------------------------------------------
    def _decide_call(
        self,
        compiled: _Compiled,
        request: CapRequest,
        cal_args: tuple[bytes, ...],
        push_id: str,
        exhausted: dict[str, tuple[int, int, int]],
        codes: list[_Entry],
    ) -> tuple[Any, ...]:
        # Arguments go pre-encoded where they repeat (calendar, candidate fields and codes): the
        # packer then only copies bytes.
        args: list[Any] = [
            "EVALSHA", compiled.sha, 1, self.user_key(request.user_id),
            b"d", cal_args[0], b"1" if request.reserve else b"0", push_id, *cal_args[1:],
            len(request.candidates),
        ]  # fmt: skip
        args += [code[2] for code in codes]
        args += _code_arguments(request, codes, exhausted, 3)
        # the record tails are only read to store a reservation
        args.append(b"\x1e".join([code[1] for code in codes]) if request.reserve else b"")
        return tuple(args)

    def _decide_command(
        self,
        compiled: _Compiled,
        request: CapRequest,
        cal_args: tuple[bytes, bytes],
        push_id: str,
        exhausted: dict[str, tuple[int, int, int]],
        codes: list[_Entry],
    ) -> bytes:
        """`_decide_call`'s command as written on the wire, the same bytes as packing that call, from
        arguments encoded once per policy, batch calendar or candidate (`cal_args`: the encoded time now,
        then the rest of the calendar) and one format for the rest: a packer encoded all ~27 arguments
        of every call afresh, 4 us a call (README, "Load")."""
        n = len(codes)
        key = self.user_key(request.user_id).encode()
        push = push_id.encode()
        fields = b"".join(map(_FIELD_ENCODED, codes))
        if exhausted:
            code_args = b"".join(_code_arguments(request, codes, exhausted, 6))
        else:
            code_args = b"".join(map(_CODE_ENCODED, codes))
        head = (15 + 2 * n, compiled.head, len(key), key, cal_args[0])
        rest = (len(push), push, cal_args[1], len(b"%d" % n), n, fields, code_args)
        if request.reserve:  # the record tails are only read to store a reservation
            tails = b"\x1e".join(map(_TAIL, codes))
            return _RESERVING_COMMAND % (*head, *rest, len(tails), tails)
        return _DECIDING_COMMAND % (*head, *rest)

    def decide_batch(
        self, requests: Sequence[CapRequest], *, now: datetime | None = None
    ) -> list[UserDecision]:
        self._check_requests(requests, candidates=False)
        compiled = self._compiled
        policy = compiled.policy
        version = policy.version
        known = compiled.by_id.get
        codes = []
        for i, r in enumerate(requests):
            row = list(map(known, map(id, r.candidates)))
            if None in row:
                row = [code if code is not None else self._candidate_code(compiled, c, i, p)
                       for p, (c, code) in enumerate(zip(r.candidates, row, strict=True))]
            codes.append(row)
        now_ms = to_ms(now or now_utc())
        # a batch spans a few zones: each zone's calendar and its arguments once
        zones = [r.timezone or policy.default_timezone for r in requests]
        by_zone = {}
        for timezone in set(zones):
            cal = rules.calendar(policy, timezone, now_ms)
            by_zone[timezone] = (cal, *_calendar_arguments(cal))
        cals = [by_zone[timezone][0] for timezone in zones]
        cal_args = [by_zone[timezone][1] for timezone in zones]
        cal_encoded = [by_zone[timezone][2] for timezone in zones]
        fresh = iter(new_push_ids(sum(1 for r in requests if r.reserve and not r.push_id)))
        push_ids = [(r.push_id or next(fresh)) if r.reserve else "" for r in requests]
        exhausted = self._exhausted_campaigns(policy, requests, now_ms)
        decided_at = from_ms(now_ms)
        allowed = _AllowedNow(decided_at)
        results: list[UserDecision] = []
        todo = list(range(len(requests)))
        while todo:
            given = dict(exhausted)
            # per position in `todo`: the reply's reservation fields and the cardholder's decision
            reservation_replies: list[Any] = [None] * len(todo)
            decided: list[UserDecision | None] = [None] * len(todo)

            def build(
                position: int, reply: Any, todo: list[int] = todo, given: dict = given,
                reservation_replies: list[Any] = reservation_replies, decided: list = decided,
            ) -> None:
                i = todo[position]
                request = requests[i]
                reservation_reply, decisions = self._decisions(
                    compiled, unpackb(reply), request, codes[i], cals[i], given, allowed
                )
                reservation_replies[position] = reservation_reply
                decided[position] = UserDecision(request.user_id, decisions,
                                                 _reservation(request.user_id, reservation_reply), version,
                                                 decided_at)

            calls = _LazyCalls(
                len(todo),
                lambda k, todo=todo, given=given: self._decide_call(
                    compiled, requests[todo[k]], cal_args[todo[k]], push_ids[todo[k]], given, codes[todo[k]]
                ),
                lambda start, stop, todo=todo, given=given: b"".join([
                    self._decide_command(compiled, requests[i], cal_encoded[i], push_ids[i], given, codes[i])
                    for i in todo[start:stop]
                ]),
            )
            self._stream(calls, build)
            replies = dict(zip(todo, reservation_replies, strict=True))
            cut = self._settle_throttle(compiled, requests, todo, replies, push_ids, now_ms, given, exhausted)
            results += decided[:cut]
            todo = todo[cut:]
        return results

    def _exhausted_campaigns(
        self, policy: Policy, requests: Sequence[CapRequest], now_ms: int
    ) -> dict[str, tuple[int, int, int]]:
        """Campaigns whose throttle window is already full: campaign -> (window end, used, max)."""
        if policy.campaign_throttle is None:
            return {}
        named = {c.campaign for r in requests for c in r.candidates}
        named.discard(None)
        if not named:
            return {}
        campaigns = sorted(named)
        buckets = [rules.throttle_bucket(policy, campaign, now_ms) for campaign in campaigns]
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
        compiled: _Compiled,
        requests: Sequence[CapRequest],
        todo: list[int],
        replies: dict[int, list[Any]],
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
        if compiled.policy.campaign_throttle is None:
            return len(todo)
        chosen: dict[int, str] = {}
        wanted: dict[str, int] = defaultdict(int)
        for i in todo:
            reply = replies[i]
            if reply[0] == 1:
                campaign = requests[i].candidates[reply[6] - 1].campaign
                if campaign is not None:
                    chosen[i] = campaign
                    wanted[campaign] += 1
        if not wanted:
            return len(todo)
        campaigns = list(wanted)
        rates = {c: rules.throttle_bucket(compiled.policy, c, now_ms) for c in campaigns}
        keys = {c: self.throttle_key(c, rates[c][0]) for c in campaigns}
        claims = self._pipeline(
            [
                ("EVALSHA", self._claim_sha, 1, keys[c], wanted[c], rates[c][1],
                 rates[c][2] + THROTTLE_KEY_GRACE_MS)
                for c in campaigns
            ]
        )
        granted = {c: int(claim[0]) for c, claim in zip(campaigns, claims, strict=True)}
        running = {c: int(claim[1]) - granted[c] for c, claim in zip(campaigns, claims, strict=True)}
        before = dict(running)
        if all(running[c] + wanted[c] < rates[c][1] for c in campaigns):
            return len(todo)  # no campaign fills up within this round: every decision stands
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
            if replies[i][0] == 1:
                rollback.append(
                    ("EVALSHA", compiled.sha, 1, self.user_key(requests[i].user_id), "u", now_ms, push_ids[i])
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

    def _decisions(
        self,
        compiled: _Compiled,
        reply: list[Any],
        request: CapRequest,
        codes: list[_Entry],
        cal: rules.Calendar,
        given: dict[str, tuple[int, int, int]],
        allowed: _AllowedNow,
    ) -> tuple[list[Any], tuple[CandidateDecision, ...]]:
        """Each candidate's decision from the script reply, with blocks ordered as `rules.evaluate`.

        The script reports the cardholder-wide blocks once, each limit's state and each
        candidate's no-repeat time; candidates with the same blocks share one decision body.
        """
        policy = compiled.policy
        if reply[0]:
            reservation = reply[:7]
        else:
            reservation = _NO_RESERVATION
        position = 7 if reply[0] else 1
        if not given and reply[position] == reply[position + 1] == reply[position + 2] == 0:
            # no cardholder block, full limit or tail block, no candidate sent before (the common
            # case): each is allowed now
            lasts = reply[position + 3 :]
            if lasts.count(-1) == len(lasts):
                return reservation, tuple([allowed[c.content_id] for c in request.candidates])
        user_blocks, position = _read_blocks(reply, position)
        limit_blocks: list[tuple[int, rules.RawBlock]] = []
        blocked = reply[position]
        position += 1
        if blocked:
            for index, limit in enumerate(policy.limits):
                if blocked >> index & 1:
                    bit = 1 << index
                    raw = (f"limit:{limit.name}", reply[position], reply[position + 1], limit.max)
                    limit_blocks.append((bit, raw))
                    position += 2
        tail_blocks, position = _read_blocks(reply, position)
        window = policy.no_repeat.window if policy.no_repeat else None
        shared: dict[tuple[Any, ...], CandidateDecision] = {}
        decisions: list[CandidateDecision] = []
        for candidate, (code, *_) in zip(request.candidates, codes, strict=True):
            last = reply[position]
            position += 1
            transactional = candidate.transactional
            throttle = given.get(candidate.campaign) if given and candidate.campaign is not None else None
            applicable = 0 if transactional else (code >> 2) & blocked
            signature = (
                transactional,
                applicable,
                last,
                candidate.content_id if last != -1 else None,
                candidate.campaign if throttle else None,
            )
            body = shared.get(signature)
            if body is not None:
                decisions.append(
                    CandidateDecision(candidate.content_id, body.allowed, body.blocks, body.eligible_at)
                )
                continue
            raws: list[rules.RawBlock] = []
            if not transactional:
                raws = user_blocks + [raw for bit, raw in limit_blocks if applicable & bit] + tail_blocks
                if last != -1:
                    raws.append(("no_repeat", None if window is None else last + window * 1000, last, None))
            if throttle is not None:
                raws.append(("campaign_throttle", *throttle))
            decision = rules.decide_one(policy, raws, candidate, cal, compiled.memo)
            shared[signature] = decision
            decisions.append(decision)
        return reservation, tuple(decisions)

    # -- lifecycle of a push ----------------------------------------------------------------
    def confirm(self, user_id: str, push_id: str, *, now: datetime | None = None,
                event_id: str | None = None, sent: Candidate | None = None) -> PushStatus:
        check_id(push_id, "push_id")
        tail = ""
        if sent is not None:
            check_candidate(sent, "sent")
            tags = "|" + "|".join(sent.tags) + "|" if sent.tags else ""
            tail = "\x1f".join(["1" if sent.transactional else "0", sent.content_id, sent.kind, tags,
                                 sent.campaign or ""])
        return PushStatus(self._event(user_id, event_id, "c", now, push_id, tail))

    def release(self, user_id: str, push_id: str, *, now: datetime | None = None,
                event_id: str | None = None) -> PushStatus:
        check_id(push_id, "push_id")
        return PushStatus(self._event(user_id, event_id, "r", now, push_id))

    def event_key(self, user_id: str, event_id: str) -> str:
        return f"{self.user_key(user_id)}:e:{event_id}"

    def applied(self, events: Sequence[tuple[str, str]]) -> list[bool]:
        for user_id, event_id in events:
            check_id(user_id, "user_id")
            check_id(event_id, "event_id")
        replies = self._pipeline([("EXISTS", self.event_key(u, e)) for u, e in events])
        return [bool(reply) for reply in replies]

    def _event(self, user_id: str, event_id: str | None, op: str, now: datetime | None, *args: str) -> str:
        """Run one change; with an event id, only if that event was not applied before (one script)."""
        check_id(user_id, "user_id")
        stamp = to_ms(now or now_utc())
        if event_id is None:
            return _text(self._call(user_id, op, stamp, *args))
        check_id(event_id, "event_id")
        call = ("EVALSHA", self._compiled.sha, 2, self.user_key(user_id), self.event_key(user_id, event_id),
                op, stamp, *args,
                self._event_ttl_ms)
        status = _text(self._pipeline([call])[0])
        if status == "duplicate":
            raise EventAlreadyApplied(f"event {event_id} was already applied to {user_id}")
        return status

    def record_open(self, user_id: str, *, now: datetime | None = None, push_id: str | None = None,
                    event_id: str | None = None) -> bool:
        if push_id is not None:
            check_id(push_id, "push_id")
        return self._event(user_id, event_id, "o", now, push_id or "") == "ok"

    def record_mute(self, user_id: str, *, now: datetime | None = None, event_id: str | None = None) -> None:
        self._event(user_id, event_id, "m", now)

    def record_unmute(self, user_id: str, *, now: datetime | None = None,
                      event_id: str | None = None) -> None:
        self._event(user_id, event_id, "M", now)

    def record_opt_out(self, user_id: str, *, now: datetime | None = None,
                       event_id: str | None = None) -> None:
        self._event(user_id, event_id, "x", now)

    def record_opt_in(self, user_id: str, *, now: datetime | None = None,
                      event_id: str | None = None) -> None:
        self._event(user_id, event_id, "X", now)

    def load_record(self, user_id: str) -> rules.CardholderRecord:
        check_id(user_id, "user_id")
        with self._guard():
            raw = self._client.hgetall(self.user_key(user_id))
        return parse_record({_text(k): _text(v) for k, v in raw.items()})

    def load_records(self, user_ids: Sequence[str]) -> list[rules.CardholderRecord]:
        """`load_record` for many cardholders in one pipelined round trip."""
        check_ids(user_ids, lambda index: "user_id")
        # the engine's own pipelining: redis-py's pipeline object cost four times as much per command
        replies = self._pipeline([("HGETALL", self.user_key(user_id)) for user_id in user_ids])
        return [parse_record(_fields(raw)) for raw in replies]

    def memory_usage(self, user_id: str) -> int:
        """Bytes Redis uses for one cardholder's key (MEMORY USAGE), 0 if the key does not exist."""
        with self._guard():
            return int(self._client.memory_usage(self.user_key(user_id), samples=0) or 0)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class _Compiled:
    """A policy with its script and the caches that depend on it (swapped as one on set_policy)."""

    policy: Policy
    sha: str
    codes: dict[Candidate, _Code]
    memo: dict[Any, Any]
    by_id: dict[int, _Entry]
    head: bytes  # the encoded `EVALSHA <sha> 1` every decide command starts with


class _LazyCalls(Sequence):
    """Commands built on first access, so a pipeline's first chunk is on the wire before the rest exist.

    `encode(start, stop)`, when given, writes commands `start:stop` in the Redis protocol directly (the
    bytes a packer would write for them); a node's pipeline of these is sent from it, never packed."""

    def __init__(self, size: int, make: Callable[[int], tuple[Any, ...]],
                 encode: Callable[[int, int], bytes] | None = None) -> None:
        self._built: list[tuple[Any, ...] | None] = [None] * size
        self._make = make
        self.encode = encode

    def __len__(self) -> int:
        return len(self._built)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._built)))]
        call = self._built[index]
        if call is None:
            call = self._built[index] = self._make(index)
        return call


def _bulk(value: bytes) -> bytes:
    """One command argument as the Redis protocol writes it (a bulk string)."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


# A decide command in the Redis protocol: `*<arguments>`, the EVALSHA head, the cardholder's key, `d`,
# now, reserve 1 or 0, the push id, the rest of the calendar, the candidate count, their fields, their
# codes, then the candidates' record tails (reserving) or an empty string.
_COMMAND_START = b"*%d\r\n%b$%d\r\n%b\r\n$1\r\nd\r\n%b"
_COMMAND_MIDDLE = b"$%d\r\n%b\r\n%b$%d\r\n%d\r\n%b%b"
_RESERVING_COMMAND = _COMMAND_START + b"$1\r\n1\r\n" + _COMMAND_MIDDLE + b"$%d\r\n%b\r\n"
_DECIDING_COMMAND = _COMMAND_START + b"$1\r\n0\r\n" + _COMMAND_MIDDLE + b"$0\r\n\r\n"


def _code_arguments(request: CapRequest, codes: list[_Entry], exhausted: dict[str, tuple[int, int, int]],
                    plain: int) -> list[bytes]:
    """Each candidate's code argument, read from its entry at `plain` (the code), or at `plain + 1` (the
    code + 1: campaign throttled) when its campaign's budget is exhausted."""
    if not exhausted:
        return [code[plain] for code in codes]
    return [code[plain + 1] if candidate.campaign is not None and candidate.campaign in exhausted
            else code[plain] for candidate, code in zip(request.candidates, codes, strict=True)]


def _calendar_arguments(cal: rules.Calendar) -> tuple[tuple[bytes, ...], tuple[bytes, bytes]]:
    """A calendar's decide-call arguments (now, day and month bounds, end of quiet hours), and the same
    encoded for `_decide_command`: now, then the rest."""
    numbers = (cal.now, cal.day_start, cal.day_end, cal.month_start, cal.month_end, cal.quiet_until or 0)
    args = tuple(b"%d" % v for v in numbers)
    return args, (_bulk(args[0]), b"".join(map(_bulk, args[1:])))


def _redirected(error: Exception) -> bool:
    message = str(error)
    return message.startswith(("MOVED", "ASK"))


def _opt(value: Any) -> int | None:
    number = int(value)
    return None if number == -1 else number


def _read_blocks(reply: list[Any], position: int) -> tuple[list[rules.RawBlock], int]:
    """A count-prefixed run of (rule, eligible, a, b) blocks in a decide reply, and the position after it."""
    count = reply[position]
    blocks: list[rules.RawBlock] = []
    for start in range(position + 1, position + 1 + 4 * count, 4):
        rule, eligible, a, b = reply[start : start + 4]
        blocks.append((rule, _opt(eligible), _opt(a), _opt(b)))
    return blocks, position + 1 + 4 * count


_instant = lru_cache(maxsize=INSTANT_CACHE_SIZE)(from_ms)


def _reservation(user_id: str, reply: list[Any]) -> Reservation | None:
    kind, push_id, content_id, ts, expires, status, _ = reply
    if kind == 0:
        return None
    # positional: once per reserving cardholder of a batch
    return Reservation(push_id, user_id, content_id, _instant(ts), _instant(expires), _STATUS[status],
                       kind == 2)


def _fields(reply: Any) -> dict[str, str]:
    """An HGETALL reply read off the connection: a map (RESP3) or field, value, field, value, ... (RESP2)."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {_text(k): _text(v) for k, v in pairs}


def parse_record(fields: dict[str, str]) -> rules.CardholderRecord:
    """A cardholder hash (decoded) as the reference's `CardholderRecord`."""
    record = rules.CardholderRecord()
    if not fields:  # no key: a wave's first day reads one for every cardholder
        return record
    # each scalar set only when stored: the constructor's keywords cost more than the tests
    get = fields.get
    if (opted_out := get("o")) is not None:
        record.opted_out = int(opted_out)
    if (muted := get("m")) is not None:
        record.muted = int(muted)
    if (unopened := get("u")) is not None:
        record.unopened = int(unopened)
    if (last_sent := get("l")) is not None:
        record.last_sent = int(last_sent)
    contents = record.sent_contents
    for name, value in fields.items():
        if name.startswith("c:"):
            contents[name[2:]] = int(value)
    if outcomes_text := get("S"):
        outcomes = record.outcomes
        for entry in outcomes_text.split("\x1e")[1:]:
            pid, sent, opened = entry.split("\x1f")
            outcomes.append((pid, int(sent), opened == "1"))
    # one pass, positional: a wave after the first day reads records holding push rows for every
    # cardholder, and building them cost more than the rest of the batch's caps read
    packed = get("P")
    if packed:
        pushes, status_of, push = record.pushes, _STATUS, rules.PushRecord
        for text in packed.split("\x1e")[1:]:
            pid, status, ts, expires, tx, content, kind, tags, campaign = text.split("\x1f")
            pushes[pid] = push(pid, status_of[status], int(ts), int(expires), content, kind,
                               tuple(tags[1:-1].split("|")) if tags else (), tx == "1", campaign or None)
    return record


class _AllowedNow(dict):
    """content id -> its allowed-now decision at one batch's decision time, made on first use:
    immutable, so the many cardholders of a batch share one per content."""

    def __init__(self, at: datetime) -> None:
        super().__init__()
        self.at = at

    def __missing__(self, content_id: str) -> CandidateDecision:
        decision = self[content_id] = CandidateDecision(content_id, True, (), self.at)
        return decision
