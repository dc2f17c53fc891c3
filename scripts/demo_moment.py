"""Pick the demo's cardholder and the moment its example calls use: 10:00 in the cardholder's zone on
the first morning after the live publication's as-of time, whatever the wall clock says.

The cardholders offered accept marketing pushes and, when the world has them, already received the
bill reminder REMINDER (so the demo shows a transactional notice repeating). The demo asks the API
about them in order and shows the first one the engine would push to at that moment (`send`, not
`hold`), so that a slot can be reserved.
Usage: demo_moment.py WORLD_DIR REDIS_URL PREFIX
(prints shell assignments: as_of, reminder, and candidates: one line per cardholder,
"USER ZONE NOW REMINDED_AT", REMINDED_AT empty when never reminded)
"""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow.parquet as pq
import redis

from recsys.config import get_settings
from recsys.publication import PublicationStore

REMINDER = "rem0001"
CANDIDATES = 50  # how many cardholders the demo may ask about before giving up
DEMO_HOUR = time(10, 0)  # after the default quiet hours (22:00-08:00) and the strict draft's (21:00-09:00)


def first_morning_after(as_of: datetime, zone: ZoneInfo) -> datetime:
    """The first DEMO_HOUR in `zone` strictly after `as_of`."""
    local = as_of.astimezone(zone)
    moment = datetime.combine(local.date(), DEMO_HOUR, tzinfo=zone)
    return moment if moment > local else datetime.combine(local.date() + timedelta(days=1), DEMO_HOUR,
                                                          tzinfo=zone)


def main(world: Path, redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = PublicationStore(client, prefix)
    version = store.live_version()
    if version is None:
        sys.exit(f"no live publication under the key prefix {prefix!r} at {redis_url}: publish first")
    as_of = datetime.fromisoformat(store.load(version).manifest["as_of"])
    holders = pq.read_table(world / "cardholders.parquet",
                            columns=["user_id", "push_opt_in", "timezone"]).to_pandas()
    opted_in = holders.loc[holders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool)]
    if opted_in.empty:
        sys.exit(f"no cardholder in {world} accepts marketing pushes")
    pushes = pq.read_table(world / "push_log.parquet",
                           columns=["user_id", "content_id", "sent_ts"]).to_pandas()
    reminded = pushes.loc[pushes["content_id"].astype(str) == REMINDER].groupby(
        pushes["user_id"].astype(str))["sent_ts"].max()
    again = opted_in["user_id"].astype(str).isin(reminded.index).to_numpy()
    ordered = pd.concat([opted_in.loc[again], opted_in.loc[~again]]).head(CANDIDATES)
    lines = []
    for holder in ordered.itertuples(index=False):
        reminded_at = reminded.get(str(holder.user_id))
        zone_name = holder.timezone if isinstance(holder.timezone, str) and holder.timezone else \
            get_settings().default_timezone
        now = first_morning_after(as_of, ZoneInfo(zone_name))
        lines.append(" ".join((str(holder.user_id), zone_name, now.isoformat(),
                               "" if reminded_at is None else reminded_at.isoformat())))
    assignments = (("as_of", as_of.isoformat()), ("reminder", REMINDER), ("candidates", "\n".join(lines)))
    for name, value in assignments:
        print(f"{name}={shlex.quote(value)}")

if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
