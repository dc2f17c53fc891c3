"""Versioned, audited policy in Redis: every change is a new revision with who, when and the diff.

Keys under `{prefix:policy}:` (one Redis Cluster hash tag, so the write script's keys share a slot):
`current` (the live revision number), `rev:{n}` (hash: document, author, at, diff, note). A rollback
is a new revision carrying an old document, so the history only grows. Revisions stored under the
untagged `{prefix}:policy:` of earlier releases (one Redis only) are renamed on first use. Writers
pass the revision they based their change on; a concurrent change makes the write fail with
`PolicyConflictError` instead of silently overwriting it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.cluster import RedisCluster

from recsys.caps.policy import Policy, parse_policy
from recsys.times import iso_utc

logger = logging.getLogger(__name__)

_WRITE_REVISION = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
local revision = current + 1
redis.call('HSET', KEYS[2] .. revision, 'document', ARGV[2], 'author', ARGV[3], 'at', ARGV[4],
           'diff', ARGV[5], 'note', ARGV[6])
redis.call('SET', KEYS[1], revision)
return {1, revision}
"""

# KEYS: untagged current, tagged current; ARGV: untagged and tagged revision prefixes
_ADOPT_UNTAGGED = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
for revision = 1, current do
  if redis.call('EXISTS', ARGV[1] .. revision) == 1 then
    redis.call('RENAME', ARGV[1] .. revision, ARGV[2] .. revision)
  end
end
if current > 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
end
return current
"""


class PolicyConflictError(ValueError):
    """The policy changed since the revision a write was based on."""


class PolicyRevisionNotFoundError(LookupError):
    """A policy revision that does not exist."""


@dataclass(frozen=True)
class PolicyRevision:
    revision: int
    policy: Policy
    document: dict[str, Any]
    author: str
    at: str
    diff: list[dict[str, Any]]
    note: str


def diff_documents(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """Changed leaves between two JSON documents, as `{path, old, new}` (absent = null)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(set(old) | set(new), key=str):
            child = f"{path}.{key}" if path else str(key)
            changes += diff_documents(old.get(key), new.get(key), child)
        return changes
    if old == new:
        return []
    return [{"path": path or "(document)", "old": old, "new": new}]


class PolicyStore:
    def __init__(self, client: redis.Redis | RedisCluster, prefix: str):
        self.client = client
        self.prefix = prefix
        self.current_key = f"{{{prefix}:policy}}:current"
        self.revision_prefix = f"{{{prefix}:policy}}:rev:"
        self._write = client.register_script(_WRITE_REVISION)

    def current_revision(self) -> int:
        return int(self.client.get(self.current_key) or 0)

    def get(self, revision: int | None = None) -> PolicyRevision | None:
        """A revision (default: the current one); None when no policy was ever stored."""
        number = self.current_revision() if revision is None else revision
        if number <= 0:
            if revision is not None:
                raise PolicyRevisionNotFoundError(f"policy revision {revision} does not exist")
            return None
        fields = self.client.hgetall(f"{self.revision_prefix}{number}")
        if not fields:
            raise PolicyRevisionNotFoundError(
                f"policy revision {number} does not exist: list them with GET /v1/policy/versions"
            )
        fields = {key.decode(): value.decode() for key, value in fields.items()}
        document = json.loads(fields["document"])
        return PolicyRevision(
            revision=number,
            policy=parse_policy(document, f"policy revision {number}"),
            document=document,
            author=fields["author"],
            at=fields["at"],
            diff=json.loads(fields["diff"]),
            note=fields.get("note", ""),
        )

    def history(self, limit: int = 100) -> list[PolicyRevision]:
        """The newest `limit` revisions, newest first."""
        current = self.current_revision()
        return [rev for n in range(current, max(0, current - limit), -1) if (rev := self.get(n))]

    def put(self, policy: Policy, author: str, based_on: int | None = None, note: str = "") -> PolicyRevision:
        """Store `policy` as the next revision; `based_on` (default: current) must still be current.

        A policy capping no marketing push by count is refused unless it carries
        `override_no_limits` (its reason, stored with the author and the diff).
        """
        policy.check_protective()
        expected = self.current_revision() if based_on is None else based_on
        previous = self.get(expected) if expected > 0 else None
        document = policy.to_dict()
        diff = diff_documents(previous.document if previous else {}, document)
        at = iso_utc(datetime.now(UTC).replace(microsecond=0))
        written, number = self._write(
            keys=[self.current_key, self.revision_prefix],
            args=[expected, json.dumps(document, sort_keys=True), author, at, json.dumps(diff), note],
        )
        if not written:
            raise PolicyConflictError(
                f"the policy changed since revision {expected} (now revision {number}): "
                "fetch it again and reapply your change"
            )
        logger.info("policy revision %d (%s) stored by %s: %d change(s)", number, policy.version, author,
                    len(diff))
        if policy.override_no_limits:
            logger.warning("policy revision %d stored by %s caps no marketing push by count: %s", number,
                           author, policy.override_no_limits)
        return PolicyRevision(int(number), policy, document, author, at, diff, note)

    def ensure(self, policy: Policy, author: str = "bootstrap") -> PolicyRevision:
        """The current revision, storing `policy` as revision 1 when none exists (race-safe)."""
        self.adopt_untagged()
        current = self.get()
        if current is not None:
            return current
        try:
            return self.put(policy, author, based_on=0, note="initial policy")
        except PolicyConflictError:
            current = self.get()
            if current is None:
                raise
            return current

    def adopt_untagged(self) -> int:
        """Rename the revisions an earlier release stored under `{prefix}:policy:` to the tagged keys,
        in one script (workers starting together rename once); returns how many revisions it found.
        A cluster never held them: that layout's write script crosses slots."""
        if isinstance(self.client, RedisCluster):
            return 0
        found = self.client.eval(_ADOPT_UNTAGGED, 2, f"{self.prefix}:policy:current", self.current_key,
                                 f"{self.prefix}:policy:rev:", self.revision_prefix)
        if found:
            logger.info("policy revisions 1-%d moved to %s", found, self.revision_prefix)
        return int(found)
