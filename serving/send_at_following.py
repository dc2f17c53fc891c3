"""Whether the scheduler sends at the `send_at` the API answers, learned from the `sent` events it posts.

Nothing the API keeps holds a later `send_at` once it is answered: the reservation records hold the time
asked and expire (10 minutes) before a later `send_at`, and the event log holds only the sent time. So a
`send` answered with a `send_at` more than `LATER_MINUTES` after the time asked carries it in its push
id, `<32 hex digits>-<send_at in epoch seconds>` (`is_later`, `tag_push_id`), which the scheduler posts
back with the `sent` event. Each such `sent` applied counts as honoured when its `ts` is no earlier than
`TOLERANCE_MINUTES` before that `send_at`, else as ignored (sent at once), in a hash per local day of
the send (in the policy's default time zone), `{prefix}:follows:{YYYY-MM-DD}` (fields `honoured`,
`ignored`), expiring after `KEEP_DAYS`. The scheduler follows `send_at` when at least half of the
counted sends of the fewest days before today that count `MIN_SENDS` (the most recent first, within
`LEARN_DAYS`) honoured it; with fewer in all it is not known. A worker reads the earlier days once a day.

A scheduler learned to ignore `send_at` is answered `send` only for now, which teaches nothing: so one
cardholder in `RECHECK_SHARE` each day (`rechecked`, a different one each day) is answered as for a
scheduler not known, whose sends for a later hour keep the count going and would show a scheduler
that starts to follow `send_at`. While the habit is not known and no slot is either (a first day), a
better hour later today is a hold until it for every cardholder but the same day's share, whose sends
for a later hour teach the habit (`serving.ranker.held_for_better_hour`).
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from recsys.redis_client import Client as RedisClient
from recsys.times import zone
from serving.daily_hashes import DailyHashes

LATER_MINUTES = 30
TOLERANCE_MINUTES = 15
LEARN_DAYS = 7
KEEP_DAYS = LEARN_DAYS + 1
MIN_SENDS = 20
RECHECK_SHARE = 16
HONOURED, IGNORED = "honoured", "ignored"
_SEPARATOR = "-"
# built once: constructing a timedelta costs about 1 us, and `is_later` runs for every reserving
# request of a batch (README, "Load")
_LATER = timedelta(minutes=LATER_MINUTES)
_TOLERANCE = timedelta(minutes=TOLERANCE_MINUTES)


def is_later(asked: datetime, send_at: datetime | None) -> bool:
    """Whether a `send_at` answered at `asked` is later enough to tell a scheduler that follows it."""
    return send_at is not None and send_at - asked > _LATER


def tag_push_id(push_id: str, send_at: datetime) -> str:
    """A 32-hex-digit `push_id` carrying the `send_at` answered (whole epoch seconds)."""
    return f"{push_id}{_SEPARATOR}{int(send_at.timestamp())}"


def suggested_send_at(push_id: str | None) -> datetime | None:
    """The later `send_at` a push id carries (`tag_push_id`), else None (an id the API did not tag)."""
    if not push_id:
        return None
    head, _, tail = push_id.rpartition(_SEPARATOR)
    if len(head) != 32 or not tail.isdigit():
        return None
    return datetime.fromtimestamp(int(tail), UTC)


def honoured(sent: datetime, send_at: datetime) -> bool:
    """Whether a push sent at `sent` went at (or after) the `send_at` answered."""
    return sent >= send_at - _TOLERANCE


def rechecked(user_id: str, day: date) -> bool:
    """Whether a cardholder is among the day's `1 / RECHECK_SHARE` whose better hour later is a `send` at
    it while the habit is learned, not known yet or learned to ignore `send_at` (a stable hash of the
    cardholder and the day)."""
    return zlib.crc32(f"{user_id}|{day.isoformat()}".encode()) % RECHECK_SHARE == 0


def learned_following(days: Sequence[tuple[int, int]]) -> bool | None:
    """Whether the scheduler follows `send_at`, from each day's (honoured, ignored) counts, the most
    recent day first: the fewest recent days that count `MIN_SENDS` decide, so a scheduler that changes
    its habit is noticed once that much of the new one is counted, not once it outweighs the whole
    window; None with fewer than `MIN_SENDS` counted in all."""
    kept = missed = 0
    for day_kept, day_missed in days:
        kept, missed = kept + day_kept, missed + day_missed
        if kept + missed >= MIN_SENDS:
            return kept >= missed
    return None


class SendAtFollowing:
    """Counts the scheduler's sends against the `send_at` answered and answers what earlier days show."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.days = DailyHashes(f"{prefix}:follows", KEEP_DAYS)
        self._lock = threading.Lock()
        self._learned: dict[date, bool | None] = {}  # the current day's answer

    def record(self, sends: Iterable[tuple[datetime, datetime]], timezone: str) -> None:
        """Count each (sent time, `send_at` answered) pair in its local day of sending in `timezone`."""
        counts: Counter[tuple[date, str]] = Counter()
        local = zone(timezone)
        for sent, send_at in sends:
            counts[(sent.astimezone(local).date(), HONOURED if honoured(sent, send_at) else IGNORED)] += 1
        if not counts:
            return
        pipe = self.client.pipeline(transaction=False)
        for (day, field), count in sorted(counts.items()):
            self.days.add(pipe, day, field, count)
        pipe.execute()

    def follows(self, moment: datetime, timezone: str) -> bool | None:
        """Whether the scheduler followed `send_at` on the days before `moment`'s local day in `timezone`."""
        today = moment.astimezone(zone(timezone)).date()
        with self._lock:
            if today in self._learned:
                return self._learned[today]
        pipe = self.client.pipeline(transaction=False)
        for day in self.days.days_before(today, LEARN_DAYS):
            pipe.hmget(self.days.key(day), HONOURED, IGNORED)
        days = [(int(kept or 0), int(missed or 0)) for kept, missed in pipe.execute()]
        learned = learned_following(days)
        with self._lock:
            self._learned = {today: learned}  # a new day: forget the last one's
        return learned
