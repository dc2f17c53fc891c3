"""The versioned publication store in Redis: what `recsys publish` writes and the ranking API reads.

Layout (prefix `qm` by default; `{...}` is the Redis Cluster hash tag). The shared keys carry one tag,
`{qm:pub}`, so they share one slot and every multi-key operation on them (the switch, renew, release
and verify scripts; the `MULTI` that forgets a version) runs on one node of a Redis Cluster:

- `{qm:pub}:live` -> the live version id; switched by one Lua script only after a version is verified.
- `{qm:pub}:lock` -> the fencing token of the one publish running (expires after its lease, renewed
  while it writes); `{qm:pub}:fence` -> the last token handed out. A publish whose lease ran out
  (stalled, killed) is fenced off: every later write and its switch check the token and refuse.
- `{qm:pub}:versions` (sorted set, score = publish time) -> the committed versions;
  `{qm:pub}:pending` -> versions being written (a publish that died leaves its id here and the next
  publish deletes its keys).
- `{qm:pub}:v:{version}:meta` (hash) -> `manifest` (JSON: model, as-of, items and their metadata,
  names) plus binary float32 arrays (`item_factors`, popularity, the affine feature map) and the
  feature-builder state; `complete` = "1" and `users` = the number of user keys counted in Redis
  once the version is verified (manifest readable, arrays of the announced shapes, one user key per
  cardholder of the manifest).
- `qm:pub:v:{version}:u:{user_id}` -> one compact binary record per cardholder (`encode_user`). No
  tag: each record is hashed whole, so a version spreads over every primary; no operation needs two
  records in one slot (writes are pipelined per node, deletes split per slot, reads are per key).

A version stays readable until the publish after next: publishing v3 deletes v1 and keeps v2, so a
server that has not yet swapped to v3 keeps answering from v2. `recsys.redis_client.connect` opens a
`redis.Redis`, or a `RedisCluster` when the URL names a node of a cluster.
"""

from __future__ import annotations

import json
import logging
import struct
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis
from redis.cluster import RedisCluster

logger = logging.getLogger(__name__)

LAYOUT_VERSION = 2
_HEADER = struct.Struct("<BBhHHHH")
FLAG_OPT_IN = 1

_SWITCH_LIVE = """
if redis.call('GET', KEYS[5]) ~= ARGV[3] then
  return redis.error_reply('publish lock lost (fencing token ' .. ARGV[3] .. '): another publish took over')
end
local meta = redis.call('HMGET', KEYS[1], 'complete', 'manifest', 'users')
if meta[1] ~= '1' or not meta[2] then
  return redis.error_reply('version ' .. ARGV[1] .. ' is not complete')
end
local ok, manifest = pcall(cjson.decode, meta[2])
if not ok or type(manifest) ~= 'table' or tonumber(meta[3]) ~= tonumber(manifest['n_users']) then
  return redis.error_reply('version ' .. ARGV[1] .. ' does not match its manifest')
end
local previous = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return previous
"""


# Extend the lease / mark verified only while holding the lock (token in ARGV[1]).
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_MARK_VERIFIED = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'complete', '1', 'users', ARGV[2])
return 1
"""
LEASE_SECONDS = 60.0
RESPONSE_FIELD = "response:"  # meta hash fields holding the push response model's saved files


class PublicationError(ValueError):
    """A publication that cannot be written or read (incomplete, unknown version, damaged record)."""


class PublishLockedError(PublicationError):
    """Another publish holds the lock, or this one lost it (fenced off)."""


# Not frozen: one is decoded per cardholder of every request, and a frozen dataclass's fields are set
# through object.__setattr__ (1.2 against 0.3 us)
@dataclass(slots=True)
class UserRecord:
    """What the API knows about one published cardholder.

    `group` indexes the manifest's `tiers` (-1: no known card tier), `timezone` its `timezones`;
    `feature_index`/`feature_values` the sparse feature row (for reasons);
    `seen` the items already read or pushed (never proposed again).
    """

    group: int
    timezone: int
    opt_in: bool
    factors: np.ndarray
    feature_index: np.ndarray
    feature_values: np.ndarray
    seen: np.ndarray


def index_dtype(n: int) -> np.dtype:
    return np.dtype("<u2") if n < 65535 else np.dtype("<u4")


def encode_user(record: UserRecord, item_dtype: np.dtype, feature_dtype: np.dtype) -> bytes:
    """Pack a record: a 12-byte header, then float32 factors, features, seen items."""
    header = _HEADER.pack(
        LAYOUT_VERSION,
        FLAG_OPT_IN if record.opt_in else 0,
        record.group,
        record.timezone,
        len(record.feature_index),
        len(record.seen),
        len(record.factors),
    )
    return b"".join((
        header,
        np.asarray(record.factors, dtype="<f4").tobytes(),
        np.asarray(record.feature_index, dtype=feature_dtype).tobytes(),
        np.asarray(record.feature_values, dtype="<f4").tobytes(),
        np.asarray(record.seen, dtype=item_dtype).tobytes(),
    ))


@dataclass(slots=True)
class RecordBatch:
    """Many decoded cardholder records as batch arrays, row i from `blobs[i]` of `decode_users`.

    `factors` [n, d]; the sparse feature rows and the seen items as CSR-style flat arrays, row i's
    entries at `feature_starts[i]:feature_starts[i + 1]` (and `seen_starts`)."""

    group: np.ndarray  # int64 [n]
    timezone: np.ndarray  # int64 [n]
    opt_in: np.ndarray  # bool [n]
    factors: np.ndarray  # float32 [n, d]
    feature_starts: np.ndarray  # int64 [n + 1]
    feature_index: np.ndarray
    feature_values: np.ndarray  # float32
    seen_starts: np.ndarray  # int64 [n + 1]
    seen: np.ndarray

    def __len__(self) -> int:
        return len(self.group)

    def record(self, row: int) -> UserRecord:
        lo, hi = self.feature_starts[row], self.feature_starts[row + 1]
        return UserRecord(int(self.group[row]), int(self.timezone[row]), bool(self.opt_in[row]),
                          self.factors[row], self.feature_index[lo:hi], self.feature_values[lo:hi],
                          self.seen[self.seen_starts[row]:self.seen_starts[row + 1]])


_HEADER_FIELDS = np.dtype([("layout", "u1"), ("flags", "u1"), ("group", "<i2"), ("timezone", "<u2"),
                           ("nnz", "<u2"), ("n_seen", "<u2"), ("dim", "<u2")])
assert _HEADER_FIELDS.itemsize == _HEADER.size


def decode_user(blob: bytes, item_dtype: np.dtype, feature_dtype: np.dtype) -> UserRecord:
    """Inverse of `encode_user`; `PublicationError` for a record of another layout or a truncated one."""
    return decode_users([blob], item_dtype, feature_dtype).record(0)


def decode_users(blobs: Sequence[bytes], item_dtype: np.dtype, feature_dtype: np.dtype) -> RecordBatch:
    """Decode many records at once: the headers of all records joined and read as one array, then each
    section of all records joined into one array. `PublicationError` names the first record of another
    layout, truncated or of the wrong length."""
    n = len(blobs)
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=n)
    short = np.flatnonzero(lengths < _HEADER.size)
    if len(short):
        raise PublicationError(f"user record of {lengths[short[0]]} bytes is truncated: republish the model")
    headers = np.frombuffer(b"".join([blob[:_HEADER.size] for blob in blobs]), dtype=_HEADER_FIELDS)
    layouts = headers["layout"]
    other = np.flatnonzero(layouts != LAYOUT_VERSION)
    if len(other):
        raise PublicationError(f"user record layout {layouts[other[0]]} is not {LAYOUT_VERSION}: republish "
                               "with this version of the engine")
    nnz, n_seen, dim = (headers[name].astype(np.int64) for name in ("nnz", "n_seen", "dim"))
    isz, fsz = item_dtype.itemsize, feature_dtype.itemsize
    expected = _HEADER.size + 4 * dim + (fsz + 4) * nnz + isz * n_seen
    wrong = np.flatnonzero(lengths != expected)
    if len(wrong):
        first = wrong[0]
        raise PublicationError(f"user record has {lengths[first]} bytes, expected {expected[first]}: "
                               "republish the model")
    width = int(dim[0]) if n else 0
    if n and (dim != width).any():
        raise PublicationError("user records of one version hold factors of different lengths: "
                               "republish the model")
    # Each section of every record copied out by one slice and joined: copying bytes this way costs a
    # third of gathering the same sections by a numpy index over the joined records.
    factors_end = _HEADER.size + 4 * width
    values_start = (factors_end + fsz * nnz).tolist()
    seen_start = (factors_end + (fsz + 4) * nnz).tolist()
    factors = b"".join([blob[_HEADER.size:factors_end] for blob in blobs])
    feature_index = b"".join([blob[factors_end:end] for blob, end in zip(blobs, values_start, strict=True)])
    feature_values = b"".join([blob[start:end]
                               for blob, start, end in zip(blobs, values_start, seen_start, strict=True)])
    seen = b"".join([blob[start:] for blob, start in zip(blobs, seen_start, strict=True)])
    return RecordBatch(headers["group"].astype(np.int64), headers["timezone"].astype(np.int64),
                       (headers["flags"] & FLAG_OPT_IN) != 0,
                       np.frombuffer(factors, "<f4").reshape(n, width), _row_starts(nnz),
                       np.frombuffer(feature_index, feature_dtype), np.frombuffer(feature_values, "<f4"),
                       _row_starts(n_seen), np.frombuffer(seen, item_dtype))


def _row_starts(counts: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return starts


@dataclass(frozen=True)
class PublishedVersion:
    """A complete version's shared state: the manifest and its named float32 arrays."""

    version: str
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]
    builder_state: dict[str, Any] | None
    response_files: dict[str, bytes] | None = None  # the push response model's saved files, if published

    @property
    def item_dtype(self) -> np.dtype:
        return np.dtype(self.manifest["item_index_dtype"])

    @property
    def feature_dtype(self) -> np.dtype:
        return np.dtype(self.manifest["feature_index_dtype"])


def new_version_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


class PublicationStore:
    """Versioned publications under `{prefix}:pub:` in one Redis database."""

    def __init__(self, client: redis.Redis | RedisCluster, prefix: str):
        self.client = client
        self.prefix = prefix
        self._switch = client.register_script(_SWITCH_LIVE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._mark_verified = client.register_script(_MARK_VERIFIED)

    def key(self, *parts: str) -> str:
        """A shared key: all carry the `{prefix:pub}` hash tag, one Redis Cluster slot."""
        return ":".join((f"{{{self.prefix}:pub}}", *parts))

    @property
    def live_key(self) -> str:
        return self.key("live")

    def meta_key(self, version: str) -> str:
        return self.key("v", version, "meta")

    def user_key(self, version: str, user_id: str) -> str:
        """A cardholder's record: untagged, so the records of a version spread over the cluster."""
        return ":".join((self.prefix, "pub", "v", version, "u", user_id))

    def user_pattern(self, version: str) -> str:
        """SCAN pattern of every user key of `version` (`*` for every version)."""
        return self.user_key(version, "*")

    def script_keys(self, script: str, version: str = "") -> list[str]:
        """The keys each publication script is called with, in order: all in the shared slot."""
        lock, versions, pending = self.key("lock"), self.key("versions"), self.key("pending")
        return {
            "switch": [self.meta_key(version), self.live_key, versions, pending, lock],
            "renew": [lock],
            "release": [lock],
            "mark_verified": [self.meta_key(version), lock],
            "forget": [versions, pending],
        }[script]

    def live_version(self) -> str | None:
        value = self.client.get(self.live_key)
        return value.decode() if isinstance(value, bytes) else value

    def versions(self) -> list[str]:
        """Committed versions, oldest first."""
        return [_text(value) for value in self.client.zrange(self.key("versions"), 0, -1)]

    def begin(self, version: str | None = None, lease: float = LEASE_SECONDS) -> PublicationWriter:
        """Take the publish lock and start writing a new version (not visible until `commit`).

        `PublishLockedError` when another publish holds the lock; its lease (renewed as it writes)
        runs out `lease` seconds after it stopped, e.g. killed.
        """
        token = int(self.client.incr(self.key("fence")))
        lease_ms = max(1, int(lease * 1000))
        if not self.client.set(self.key("lock"), token, nx=True, px=lease_ms):
            holder = _text(self.client.get(self.key("lock")) or b"?")
            raise PublishLockedError(
                f"another publish (fencing token {holder}) is running: wait for it to finish, or for its "
                f"lease ({lease:g}s) to run out if it died, then publish again"
            )
        version = version or new_version_id()
        if self.client.exists(self.meta_key(version)):
            self._release(keys=self.script_keys("release"), args=[token])
            raise PublicationError(f"version {version} already exists: publish under a new version id")
        self.client.zadd(self.key("pending"), {version: time.time()})
        return PublicationWriter(self, version, token, lease_ms)

    def load(self, version: str) -> PublishedVersion:
        """The shared state of a verified version; `PublicationError` for anything missing or damaged."""
        fields = self.client.hgetall(self.meta_key(version))
        if not fields:
            raise PublicationError(f"version {version} is not in Redis: it was deleted or never published")
        fields = {_text(name): value for name, value in fields.items()}
        if fields.get("complete") != b"1":
            raise PublicationError(f"version {version} is incomplete: its publish did not finish")
        try:
            manifest = json.loads(fields["manifest"])
            arrays = {}
            for name, spec in manifest["arrays"].items():
                arrays[name] = np.frombuffer(fields[f"array:{name}"], dtype="<f4").reshape(spec["shape"])
            builder = json.loads(fields["builder_state"]) if fields.get("builder_state") else None
            response = {name[len(RESPONSE_FIELD):]: value for name, value in fields.items()
                        if name.startswith(RESPONSE_FIELD)} or None
            for field in ("n_users", "items", "item_index_dtype", "feature_index_dtype"):
                manifest[field]  # noqa: B018 - presence check
            users = int(fields.get("users", b"-1"))
        except (KeyError, TypeError, ValueError) as error:
            raise PublicationError(
                f"version {version} is damaged ({type(error).__name__}: {error}): publish again"
            ) from None
        if users != manifest["n_users"]:
            raise PublicationError(
                f"version {version} holds {users} cardholders, its manifest {manifest['n_users']}: "
                "publish again"
            )
        return PublishedVersion(version, manifest, arrays, builder, response)

    def count_users(self, version: str, chunk: int = 5000) -> int:
        """User keys of `version` in Redis (a SCAN)."""
        return sum(1 for _ in self.client.scan_iter(match=self.user_pattern(version), count=chunk))

    def delete_version(self, version: str, chunk: int = 2000) -> int:
        """Remove every key of `version` (never the live one); returns the number of keys removed."""
        if version == self.live_version():
            raise PublicationError(f"version {version} is live: publish another version before deleting it")
        removed = 0
        batch: list[bytes] = []
        for name in self.client.scan_iter(match=self.user_pattern(version), count=chunk):
            batch.append(name)
            if len(batch) >= chunk:
                removed += self.client.unlink(*batch)
                batch = []
        if batch:
            removed += self.client.unlink(*batch)
        removed += self.client.unlink(self.meta_key(version))
        versions, pending = self.script_keys("forget")
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(versions, version)
        pipe.zrem(pending, version)
        pipe.execute()
        return removed

    def prune(self, keep: int = 2) -> list[str]:
        """Delete committed versions beyond the newest `keep` and leftovers of dead publishes."""
        live = self.live_version()
        committed = self.versions()
        doomed = [version for version in committed[:-keep] if version != live] if keep else []
        doomed += [_text(v) for v in self.client.zrange(self.key("pending"), 0, -1)]
        for version in doomed:
            removed = self.delete_version(version)
            logger.info("deleted publication %s (%d keys)", version, removed)
        return doomed


class PublicationWriter:
    """Writes one version; `commit` makes it live atomically, `abort` removes what was written."""

    def __init__(self, store: PublicationStore, version: str, token: int, lease_ms: int):
        self.store = store
        self.version = version
        self.token = token
        self.lease_ms = lease_ms
        self.users_written = 0
        self.bytes_written = 0

    def renew(self) -> None:
        """Extend the lease; `PublishLockedError` if this publish lost the lock (fenced off)."""
        if not self.store._renew(keys=self.store.script_keys("renew"), args=[self.token, self.lease_ms]):
            raise PublishLockedError(
                f"publish of {self.version} lost its lock (fencing token {self.token}): its lease ran "
                "out and another publish may have started; publish again"
            )

    def write_meta(self, manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   builder_state: Mapping[str, Any] | None,
                   response_files: Mapping[str, bytes] | None = None) -> None:
        manifest = dict(manifest)
        manifest["version"] = self.version
        manifest["arrays"] = {name: {"shape": list(np.shape(value))} for name, value in arrays.items()}
        self.renew()
        mapping: dict[str, bytes | str] = {"manifest": json.dumps(manifest), "complete": "0"}
        for name, value in arrays.items():
            mapping[f"array:{name}"] = np.ascontiguousarray(value, dtype="<f4").tobytes()
        if builder_state is not None:
            mapping["builder_state"] = json.dumps(builder_state)
        for name, blob in (response_files or {}).items():
            mapping[f"{RESPONSE_FIELD}{name}"] = blob
        self.store.client.hset(self.store.meta_key(self.version), mapping=mapping)

    def write_users(self, records: Iterable[tuple[str, bytes]], chunk: int = 2000) -> int:
        """Write `(user_id, blob)` pairs pipelined in chunks; returns how many were written."""
        pipe = self.store.client.pipeline(transaction=False)
        pending = 0
        for user_id, blob in records:
            pipe.set(self.store.user_key(self.version, user_id), blob)
            self.bytes_written += len(blob)
            pending += 1
            if pending >= chunk:
                self.renew()
                pipe.execute()
                self.users_written += pending
                pending = 0
        if pending:
            self.renew()
            pipe.execute()
            self.users_written += pending
        return self.users_written

    def commit(self) -> str | None:
        """Verify the version, then switch the live pointer (one script, checking the fencing token,
        the manifest and the count); returns the previous live version and releases the lock."""
        store = self.store
        self.renew()
        counted = store.count_users(self.version)
        if counted != self.users_written:
            raise PublicationError(
                f"version {self.version}: {counted} user keys in Redis, {self.users_written} written: "
                "publish again"
            )
        if not store._mark_verified(keys=store.script_keys("mark_verified", self.version),
                                    args=[self.token, counted]):
            self.renew()  # raises: the lock was lost
        store.load(self.version)  # the manifest and arrays read back
        try:
            previous = store._switch(
                keys=store.script_keys("switch", self.version),
                args=[self.version, time.time(), self.token],
            )
        except redis.ResponseError as error:
            raise PublicationError(f"publication {self.version} was not switched live: {error}") from None
        previous = _text(previous) if previous else None
        logger.info("publication %s is live (previous %s)", self.version, previous)
        return previous

    def release(self) -> None:
        """Give the lock back (no-op when another publish holds it)."""
        self.store._release(keys=self.store.script_keys("release"), args=[self.token])

    def abort(self) -> None:
        try:
            self.store.delete_version(self.version)
        except redis.RedisError:
            logger.warning("could not delete the aborted publication %s; the next publish will", self.version)
        except PublicationError:
            logger.warning("aborted publication %s went live before the failure; kept", self.version)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
