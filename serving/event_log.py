"""The durable event log (JSON lines, fsync'd, one file per UTC day) and its export as `push_log`.

`get_settings().event_log_path` (e.g. `var/events/push_log.jsonl`) names the log; events of day D
go to `push_log.D.jsonl` beside it. Several worker processes append to the same file: each append is
one `write` on an `O_APPEND` descriptor, so lines never interleave, and a day change needs no rename.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from recsys.atomic import atomic_file

logger = logging.getLogger(__name__)


class EventLogError(ValueError):
    """A log line that cannot be read back (not JSON, or missing a field)."""


class EventLogUnavailable(RuntimeError):
    """The log file cannot be written (disk full, permissions): events are refused, not half-kept."""


class EventLog:
    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._day: date | None = None
        self._fd: int | None = None

    def file_for(self, day: date) -> Path:
        return self.path.with_name(f"{self.path.stem}.{day.isoformat()}{self.path.suffix or '.jsonl'}")

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records as JSON lines and fsync before returning."""
        if not records:
            return
        lines = (json.dumps(record, sort_keys=True, default=str) + "\n" for record in records)
        payload = "".join(lines).encode()
        with self._lock:
            try:
                fd = self._descriptor(self.clock().astimezone(UTC).date())
                written = 0
                while written < len(payload):
                    written += os.write(fd, payload[written:])
                os.fsync(fd)
            except OSError as error:
                self.close()
                raise EventLogUnavailable(
                    f"cannot append to the event log next to {self.path}: {error.strerror or error}; "
                    "check RECSYS_PUSH_LOG_PATH / RECSYS_HOME and free disk space, then retry"
                ) from error

    def _descriptor(self, day: date) -> int:
        if self._fd is None or self._day != day:
            self.close()
            target = self.file_for(day)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._day = day
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def files(self) -> list[Path]:
        pattern = f"{self.path.stem}.*{self.path.suffix or '.jsonl'}"
        return sorted(self.path.parent.glob(pattern))

    def read(self) -> Iterator[dict[str, Any]]:
        """Every logged event, file by file (oldest day first), in append order."""
        for path in self.files():
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        # A torn last line after a crash is the only expected damage; say where it is.
                        raise EventLogError(
                            f"{path}:{number}: not a JSON line ({error}): remove or fix it"
                        ) from None
                    yield record


def push_log_frame(events: Iterator[Mapping[str, Any]]):
    """The contract `push_log` table from logged events.

    One row per sent push (first `sent` event of a push id); `opened_ts` is its first opened or
    clicked event; `muted` is true when a muted or unsubscribed event names the push, or, without a
    push id, follows it as the cardholder's latest push. An event id repeated for one cardholder
    (a retried batch) counts once.
    """
    import pandas as pd

    seen_ids: set[tuple[str | None, str | None]] = set()
    sent: dict[str, dict[str, Any]] = {}
    opened: dict[str, pd.Timestamp] = {}
    mutes: list[tuple[str, str | None, pd.Timestamp]] = []
    for event in events:
        event_id = event.get("event_id")
        if (event.get("user_id"), event_id) in seen_ids:
            continue
        seen_ids.add((event.get("user_id"), event_id))
        kind, push_id, ts = event.get("type"), event.get("push_id"), pd.Timestamp(event["ts"])
        if kind == "sent" and push_id not in sent:
            if not event.get("content_id"):
                logger.warning("sent event %s has no content_id: left out of push_log", event_id)
                continue
            sent[push_id] = {"push_id": push_id, "user_id": event["user_id"],
                             "content_id": event["content_id"], "sent_ts": ts}
        elif kind in ("opened", "clicked") and push_id:
            opened[push_id] = min(ts, opened.get(push_id, ts))
        elif kind in ("muted", "unsubscribed"):
            mutes.append((event["user_id"], push_id, ts))
    frame = pd.DataFrame(list(sent.values()), columns=["push_id", "user_id", "content_id", "sent_ts"])
    frame["sent_ts"] = pd.to_datetime(frame["sent_ts"], utc=True)
    frame["opened_ts"] = pd.to_datetime(frame["push_id"].map(opened), utc=True)
    frame["muted"] = False
    frame = frame.sort_values(["user_id", "sent_ts"], kind="stable").reset_index(drop=True)
    by_push = pd.Series(frame.index, index=frame["push_id"])
    for user_id, push_id, ts in mutes:
        if push_id is not None and push_id in by_push.index:
            frame.loc[by_push[push_id], "muted"] = True
            continue
        earlier = frame.index[(frame["user_id"] == user_id) & (frame["sent_ts"] <= ts)]
        if len(earlier):
            frame.loc[earlier[-1], "muted"] = True
    return frame


def export_push_log(log: EventLog, out_dir: Path) -> tuple[Path, int]:
    """Write `out_dir/push_log.parquet` (atomically: temp file, then rename); returns path and rows."""
    frame = push_log_frame(log.read())
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "push_log.parquet"
    with atomic_file(target) as temporary:
        frame.to_parquet(temporary, index=False)
    logger.info("exported %d pushes from %d log file(s) to %s", len(frame), len(log.files()), target)
    return target, len(frame)
