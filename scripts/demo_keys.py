"""Delete what demos stored in Redis: every key under a key prefix (publication, caps, events, policy).

Usage: demo_keys.py REDIS_URL PREFIX_GLOB...   (e.g. `qm-demo-20261205T013000-4242` or `qm-demo-*`)
A Redis that does not answer holds nothing to delete (the demo's embedded server stops with the demo).
"""

from __future__ import annotations

import sys

import redis

from recsys.embedded_redis import redis_answers


def delete_prefix(client: redis.Redis, prefix_glob: str) -> int:
    """Delete keys named `<prefix>:...` or `{<prefix>:...` (cluster hash tags); returns how many."""
    deleted = 0
    for pattern in (f"{prefix_glob}:*", f"{{{prefix_glob}:*"):
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 500:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    return deleted


def main(url: str, prefix_globs: list[str]) -> None:
    for prefix_glob in prefix_globs:
        if not prefix_glob.strip("*?[]"):
            sys.exit(f"refusing to delete every key: the prefix {prefix_glob!r} names no demo")
    if not redis_answers(url):
        print(f"no Redis answers at {url}: no demo keys to delete")
        return
    client = redis.Redis.from_url(url)
    for prefix_glob in prefix_globs:
        print(f"deleted {delete_prefix(client, prefix_glob)} demo keys under {prefix_glob!r} at {url}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
