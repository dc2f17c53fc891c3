"""The live version's cardholder records held in the worker, so a rank request reads no record from Redis.

A published record never changes (a new publication is a new version under new keys), so a copy
is valid for as long as its version is live. When a worker swaps to a version it starts copying that
version's records in a background thread (SCAN + MGET in chunks, on a Redis Cluster over every
primary and per hash slot); until a record is copied, it is read from Redis and kept. Once every
record is held, a cardholder missing from the copy is one the version does not know, and no round
trip is needed to learn that either. At most `limit` records are held (about 0.7 KB each with the
default 32 factors): beyond it, the rest are read from Redis per request, as without the copy.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Sequence

import redis

from recsys.publication import PublicationStore
from recsys.redis_client import Client, get_many

logger = logging.getLogger(__name__)

FILL_CHUNK = 1000
_GLOB = re.compile(r"([*?\[\]\\])")


def _glob_escaped(text: str) -> str:
    return _GLOB.sub(r"\\\1", text)


class RecordCache:
    """The records of one published version, filled in the background; safe for concurrent readers
    (dict reads and writes are atomic under the GIL; the size limit may be passed by a few entries)."""

    def __init__(self, client: Client, store: PublicationStore, version: str, limit: int) -> None:
        self.client = client
        self.store = store
        self.version = version
        self.limit = limit
        self.records: dict[str, bytes] = {}
        self.complete = False  # every record of the version is held
        self._stopped = threading.Event()
        self._filler: threading.Thread | None = None
        self._prefix = store.user_key(version, "")

    def start(self) -> None:
        """Copy the version's records in a daemon thread (returns at once)."""
        if self.limit <= 0:
            return
        self._filler = threading.Thread(target=self._fill, name=f"records-{self.version}", daemon=True)
        self._filler.start()

    def stop(self, wait: float = 0.0) -> None:
        self._stopped.set()
        if wait and self._filler is not None:
            self._filler.join(wait)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background copy has ended; True if it ended (tests and benchmarks)."""
        if self._filler is None:
            return True
        self._filler.join(timeout)
        return not self._filler.is_alive()

    def get_many(self, user_ids: Sequence[str]) -> list[bytes | None]:
        """Each cardholder's record (None: not in this version); reads what is not held from Redis."""
        records = self.records
        found = [records.get(user_id) for user_id in user_ids]
        if self.complete or all(blob is not None for blob in found):
            return found
        missing = [i for i, blob in enumerate(found) if blob is None]
        keys = [self._prefix + user_ids[i] for i in missing]
        fetched = get_many(self.client, keys)
        for i, blob in zip(missing, fetched, strict=True):
            found[i] = blob
            if blob is not None and len(records) < self.limit:
                records[user_ids[i]] = blob
        return found

    def _fill(self) -> None:
        records, start = self.records, len(self._prefix)
        try:
            # scan_iter walks every primary of a cluster; chunks are read per hash slot there
            found = self.client.scan_iter(match=_glob_escaped(self._prefix) + "*", count=FILL_CHUNK)
            while not self._stopped.is_set():
                keys = list(itertools.islice(found, FILL_CHUNK))
                if keys:
                    for key, blob in zip(keys, get_many(self.client, keys), strict=True):
                        if blob is not None and len(records) < self.limit:
                            records.setdefault(key[start:].decode(), blob)
                if len(records) >= self.limit:
                    logger.info("holding %d records of %s (the limit); the rest are read per request",
                                len(records), self.version)
                    return
                if len(keys) < FILL_CHUNK:
                    self.complete = not self._stopped.is_set()
                    logger.info("holding all %d records of %s", len(records), self.version)
                    return
        except (redis.RedisError, OSError) as error:
            # Not fatal: records not held are read from Redis per request.
            logger.warning("stopped copying the records of %s: %s", self.version, error)
