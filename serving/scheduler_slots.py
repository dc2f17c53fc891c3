"""The times of day the scheduler asks at, learned from its batch rank calls and shared through Redis.

Each batch call adds its local minute of the day (in the policy's default time zone) to a hash per
local day, `{prefix}:slots:{YYYY-MM-DD}` (field: minute, value: calls), expiring after `KEEP_DAYS`;
a worker writes a minute once a day and reads the previous days once a day, so a batch costs no round
trip beyond the first of its minute. A slot is a minute asked at, within `TOLERANCE_MINUTES`, on more
than half of the last `LEARN_DAYS` days with any call, given at least `MIN_DAYS` such days; minutes
within the tolerance of an earlier slot are the same slot. A caller that knows the scheduler sends at once
on `send` may ask for the slots of a single earlier day (`min_days=1`): for such a scheduler an answer
for a later hour goes out at once, so even one day's times of asking are a better guess than none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from recsys.redis_client import Client as RedisClient
from recsys.times import zone
from serving.daily_hashes import DailyHashes

LEARN_DAYS = 7
MIN_DAYS = 2
KEEP_DAYS = LEARN_DAYS + 1
TOLERANCE_MINUTES = 10


def learned_slots(days: Sequence[Iterable[int]], min_days: int = MIN_DAYS) -> tuple[int, ...]:
    """The minutes of the day asked at on most of `days` (each day's minutes asked; days without any
    call are left out; none with fewer than `min_days` such days), the earliest of each group within
    `TOLERANCE_MINUTES`."""
    asked = [set(day) for day in days if day]
    if len(asked) < max(1, min_days):
        return ()
    slots: list[int] = []
    for minute in sorted(set().union(*asked)):
        hits = sum(1 for day in asked if any(abs(minute - other) <= TOLERANCE_MINUTES for other in day))
        if 2 * hits > len(asked) and (not slots or minute - slots[-1] > TOLERANCE_MINUTES):
            slots.append(minute)
    return tuple(slots)


class SchedulerSlots:
    """Records the batch calls' minutes of the day and answers the slots learned from earlier days."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.days = DailyHashes(f"{prefix}:slots", KEEP_DAYS)
        self._lock = threading.Lock()
        self._written: set[tuple[date, int]] = set()  # this worker's writes of the current day
        # the current day's slots by the fewest days asked for, learned once a day
        self._learned: dict[tuple[date, int], tuple[int, ...]] = {}

    def slots(self, moments: Iterable[datetime], timezone: str, record: bool,
              min_days: int = MIN_DAYS) -> tuple[int, ...]:
        """The slots (minutes of the day in `timezone`) learned before the local day of the first of
        `moments` from at least `min_days` days with calls; with `record`, each moment's minute is
        added to its day's calls."""
        tz = zone(timezone)
        local = [moment.astimezone(tz) for moment in moments]
        if not local:
            return ()
        today = local[0].date()
        with self._lock:
            writes = sorted({(t.date(), t.hour * 60 + t.minute) for t in local} - self._written) if record \
                else []
            learned = self._learned.get((today, min_days))
        if not writes and learned is not None:
            return learned
        pipe = self.client.pipeline(transaction=False)
        for day, minute in writes:
            self.days.add(pipe, day, str(minute))
        if learned is None:
            for day in self.days.days_before(today, LEARN_DAYS):
                pipe.hkeys(self.days.key(day))
        answers = pipe.execute()
        if learned is None:
            learned = learned_slots([[int(field) for field in fields]
                                     for fields in answers[2 * len(writes):]], min_days)
        with self._lock:
            if all(day != today for day, _ in self._learned):  # a new day: forget the last one's
                self._learned = {}
                self._written = {write for write in self._written if write[0] >= today}
            self._learned.setdefault((today, min_days), learned)
            self._written.update(writes)
        return learned
