"""Closed-loop month: a scheduler drives the real ranking API over HTTP for one calendar month.

A generated world with hour preference (--users cardholders, ending 2026-10-31) gets the bundle `recsys
train` builds with its default config (ranking model and response models); the bundle is published
twice into Redis (RECSYS_REDIS_URL, else an embedded server; own key prefixes, deleted afterwards) and
`recsys serve` runs once per engine: value-aware (the default policy's decision block) and send-all (the
same policy, `decision.enabled: false`). Each day of November at 10:00 and 19:30 Asia/Shanghai (--slots:
other times of asking, used by every scheduler of the run, the oracles included) the scheduler calls
`/v1/rank/batch` (k=1, reserve=true) for every opted-in cardholder who has not muted or unfollowed in
the push log, sends only `send` answers that carry a push id, draws opens and mutes from the world's
hidden truth at the push's local hour (the same uniforms for every engine), and posts sent / opened /
muted events back (a 503 or a connection error is retried with backoff, up to five tries, and
the retries are printed). Beside them in the same run: a weekly broadcast of the most-read item
(Mondays 10:00, to the same cardholders, less those it made mute).

On a generated world three oracle schedulers follow (`oracle`): the true best item at every slot the
default caps allow; the same, sending only when its true value is > 0; and the same, only in the
cardholder's better half of the day. They bound what whether, what and when could reach. A fourth row
keeps the value-aware engine's own sends (who, when) but with the true best item (`with_true_items`):
engine to that row is what to push, that row to an oracle is whether and when. Diagnostics follow: the
share of each engine's sends in the cardholder's true better half of the day, the learned hour
preference against the truth's hour term by amount of history (`hour_quality`), whether the push
log's reminders recur on a cardholder's day of the month (`statement_cycle`), and each engine's pushes of
content valid only after the data's end, which no trained model saw on offer (`fresh_content`).

--sweep runs one more value-aware engine per decision setting in the same run (same world, bundle and
uniforms), --sweep-ignoring the same with a scheduler that ignores `send_at`; --ignore-send-at one more
value-aware engine whose scheduler sends every `send` at the slot it asked at, as an outside scheduler
that ignores `send_at` would (its API learns that from the `sent` events, as each engine's API learns
its scheduler's slots from the batch calls); --ignore-send-at-until DAY
and --follow-send-at-until DAY one more each whose scheduler changes its habit on that day of the month
(ignores `send_at` before it and follows it from then on, or the reverse), and the share of each day's
sends the API answered with a later `send_at` is printed (it shows when the API noticed); --user-hour-penalty
refits the bundle's response models with another prior on each cardholder's daily wave under the same
ranking model.

--months N replays N consecutive calendar months (November, December, ...): each month's days (--days D: its
first D), the draws of a day seeded by its date, the server's clock after the last month, and the world
generated with its promotions' and activities' schedule carried to the last month's end
(`WorldConfig.content_horizon_days`: the same history, more upcoming content); the table, the value
against send-all and the gap closed are printed per month and for the whole run, cap violations counted
per local calendar month (`violations_by_month`). --months 1 (the default) is the one-month run as before.

--retrain (with --months 2 or more) does what a bank would do at each month boundary after the first:
every engine's bundle is retrained (`recsys train`'s job, default config) on the world's tables with the
push log that engine's API recorded (its event log, as `recsys events export` turns it into the
contract's `push_log`) appended, and published to that engine's API before the month's first slot;
--retrain-every N does the same at month boundaries and before every N-th day replayed (`retrain_days`).
The world has no spend, menu clicks or reads after its end, so what a retrain learns anew is the pushes
and their opens and mutes, and it is as of the end of that data (the engine's last push or outcome, as
`recsys train` and `recsys publish` take it without --as-of). --keep-response refits the ranking model
only and keeps the first bundle's response models (`recsys train --response-from`).

--control-share S sets the value-aware engines' `decision.control_share`: that share of the cardholders
(`recsys.control`) is sent whatever the value, and the run prints the decision's uplift as the API's own
log would measure it (value per cardholder, treated against control, drawn and expected) beside the same
cardholders under the send-all engine. A value-aware engine's retrain (without --keep-response) then
refits its response models on the pushes before the first month and the control share's after
(`recsys train --decided-since --control-share`).

--decompose splits what the value-aware engines' months lose by the truth into what to push, the hour,
whether to send and pacing: a chain of edits to the engine's own sends, each scored in expected value
(`benchmarks/month_gaps.py`), and for a scheduler that ignores `send_at`, whether each send went at the
truth's better slot of its day and whether the learned hours preferred it, by the cardholder's opened
pushes and by whether the engine ever held them for a better hour (`--slot-choices` prints that alone).

Prints pushes, opens, mutes, value = opens - 10 x mutes, the expected value (the true p_open - 10 x
p_mute summed over the pushes: the same figure less the luck of each push's draw) and cap violations
(more than 1 a local day or 4 a local month, in quiet hours 22:00-08:00, or less than 12 h apart) per
engine, and the share of the broadcast-to-oracle value gap each engine closes. Targets: value >= 1.5x
send-all, opens not lower, mutes -30%, 0 violations; gap closed >= 60% against the first oracle.

With --independent DIR (the shared independent world) the month is the one after the world's as-of time,
the bundle is trained on that world, and opens are drawn from its hidden `p` (DIR.hidden.npz: each
cardholder's true chance of opening each item as a push at the as-of time). That truth has no mutes, no
send-hour and no frequency effect, so only pushes and opens are scored there.

    .venv/bin/python benchmarks/month.py --users 2500
    .venv/bin/python benchmarks/month.py --users 2500 --months 2
    .venv/bin/python benchmarks/month.py --users 2000 --months 2 --retrain
    .venv/bin/python benchmarks/month.py --users 2000 --months 2 --retrain --keep-response
    .venv/bin/python benchmarks/month.py --users 2000 --seed 8 --sweep '[{"hour_margin": 0}]'
    .venv/bin/python benchmarks/month.py --independent ../shared/worlds/independent
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.caps.policy import clock_minute, is_clock  # noqa: E402
from scripts.demo_keys import delete_prefix  # noqa: E402
from serving.ready import wait_until_ready  # noqa: E402
from serving.send_at_following import is_later  # noqa: E402

TOKEN, ADMIN = "month-scheduler-token", "month-admin-token"
SHANGHAI = ZoneInfo("Asia/Shanghai")
Slots = tuple[tuple[int, int], ...]  # the scheduler's local (hour, minute) of asking each day, ascending
DEFAULT_SLOTS: Slots = ((10, 0), (19, 30))
MUTE_PRICE = 10.0
BROADCAST = "weekly broadcast of the most-read item"
IGNORING = "value-aware, scheduler ignores send_at"


def parse_slots(text: str) -> Slots:
    """`--slots`: the scheduler's times of asking each day, "HH:MM" (24 h, Asia/Shanghai) separated by
    commas, in any order; a value that is not such a time, or a time given twice, is refused by name."""
    clocks = [part.strip() for part in text.split(",")]
    for clock in clocks:
        if not is_clock(clock):
            raise argparse.ArgumentTypeError(
                f"{clock!r} is not a time of day: give HH:MM (24 h) separated by commas, "
                "e.g. 09:00,12:30,20:00")
    minutes = sorted(map(clock_minute, clocks))
    twice = next((m for m, n in zip(minutes, minutes[1:], strict=False) if m == n), None)
    if twice is not None:
        raise argparse.ArgumentTypeError(f"{twice // 60:02d}:{twice % 60:02d} is given twice")
    return tuple(divmod(minute, 60) for minute in minutes)


def slots_text(slots: Slots, separator: str = ", ") -> str:
    """'10:00, 19:30'."""
    return separator.join(f"{hour:02d}:{minute:02d}" for hour, minute in slots)


@dataclass(frozen=True)
class SendAtHabit:
    """Whether the scheduler delivers a `send` at the `send_at` answered: `follows` before the local day
    of the month `switch_day`, the opposite from that day on (None: never switches)."""

    follows: bool = True
    switch_day: int | None = None

    def follows_on(self, asked: datetime) -> bool:
        switched = self.switch_day is not None and asked.day >= self.switch_day
        return self.follows != switched

    def delivery(self, asked: datetime, send_at: datetime | None) -> datetime:
        """When a `send` answered at `asked` (local time) with `send_at` goes out."""
        if send_at is None or not self.follows_on(asked):
            return asked
        return max(asked, send_at)

    def name(self) -> str:
        verb = "follows" if self.follows else "ignores"
        return f"value-aware, scheduler {verb} send_at until day {self.switch_day}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def content_horizon(end: pd.Timestamp, months: int) -> int:
    """Days after a world's `end` its content schedule must cover for `months` calendar months replayed
    from the first month after it (Asia/Shanghai): promotions and activities keep starting until the
    last month's final day (`WorldConfig.content_horizon_days`)."""
    local = pd.Timestamp(end).tz_convert(SHANGHAI)
    first = datetime(local.year, local.month, 1, tzinfo=SHANGHAI)
    # `Outcomes`' first month is the local month of `end` when it ends on the 1st before the first slot
    # (generated worlds end at 07:59 on the 1st, Asia/Shanghai), else the next one: then one more is covered
    later = local.day > 1 or local.hour >= DEFAULT_SLOTS[0][0]
    last_day = month_after(first, months + int(later)).date() - timedelta(days=1)
    return (last_day - pd.Timestamp(end).tz_convert("UTC").date()).days


def build(work: Path, users: int, hour_preference: float, seed: int, months: int = 1
          ) -> tuple[Path, Path, Path]:
    """World, truth and a bundle with response models (reused under --work-dir). For more than one month
    the world's content schedule covers them all (`content_horizon`): the same history, more upcoming
    promotions and activities."""
    from worlds import WorldConfig, generate_world
    from worlds.generator import DEFAULT_END
    from worlds.scenario import Scenario

    world = work / f"world-{users}-{hour_preference:g}-{seed}"
    horizon = {}
    if months > 1:
        horizon = {"content_horizon_days": content_horizon(DEFAULT_END, months)}
        world = world.with_name(f"{world.name}-content-{horizon['content_horizon_days']}d")
    truth = world.with_name(world.name + ".truth.npz")
    if not (world / "cardholders.parquet").exists():
        log(f"generating a {users:,}-cardholder world with hour preference {hour_preference:g}"
            + (f", content starting up to {horizon['content_horizon_days']} days after its end" if horizon
               else ""))
        generate_world(WorldConfig(users=users, items=150, days=120, seed=seed,
                                   scenario=Scenario(hour_preference=hour_preference), **horizon),
                       world, force=True)
    bundle_path = world.with_name(world.name + "-trained")
    if not (bundle_path / "bundle.json").exists():
        train_bundle(world, bundle_path, seed)
    return world, truth, bundle_path


def train_bundle(world: Path, bundle_path: Path, seed: int) -> None:
    """The bundle `recsys train` publishes with its default config: the ranking model with epochs and
    item appeal chosen on validation, and the response models (`seed` is the world's, not used here)."""
    from training.config import TrainConfig
    from training.job import TrainOptions, train

    log("training the ranking model and the response models (recsys train's job, default config)")
    train(TrainOptions(data_dir=world, config=TrainConfig(), model_out=bundle_path,
                       register=False, progress=False, track=False), echo=log)


def with_event_log(world: Path, history: pd.DataFrame, events_path: Path, out: Path) -> Path:
    """`out`: a data directory with `world`'s tables (linked) whose push log, `history` (the world's own,
    as the loader read it: its file may be Parquet, CSV or absent), also holds the pushes the API's event
    log at `events_path` recorded (`recsys events export`'s table): what a retrain reads."""
    from serving.event_log import EventLog, push_log_frame

    out.mkdir(parents=True, exist_ok=False)
    for table in world.iterdir():
        if table.is_file() and not table.name.startswith("push_log."):
            (out / table.name).symlink_to(table.resolve())
    logged = push_log_frame(EventLog(events_path).read())
    frames = [frame for frame in (history, logged) if len(frame)]
    pushes = pd.concat(frames, ignore_index=True) if frames else logged
    pushes.to_parquet(out / "push_log.parquet", index=False)
    return out


def retrain_days(schedule: list[tuple[int, int]], at_months: bool, every: int | None = None
                 ) -> frozenset[int]:
    """The days of `schedule` (`Outcomes.replay`'s (month, day) pairs) before which the bundle is
    retrained: with `at_months` the first replayed day of every month after the first, and with `every`
    also every `every`-th day replayed (counting replayed days from the first, which is never one)."""
    days: set[int] = set()
    for index, (month, day) in enumerate(schedule):
        if index and ((at_months and month != schedule[index - 1][0]) or (every and index % every == 0)):
            days.add(day)
    return frozenset(days)


def retrain_and_publish(world: Path, history: pd.DataFrame, events_path: Path, work: Path, client,
                        prefix: str, base: str, response_from: Path | None = None,
                        evidence: tuple[pd.Timestamp, float] | None = None) -> None:
    """Retrain the bundle on `world` (its push log `history`) and the API's pushes (`with_event_log`), as
    of the end of that data, publish it under `prefix` and wait until the API at `base` serves it.
    `response_from`: a bundle whose response models the retrained one keeps (`recsys train
    --response-from`) instead of refitting them; `evidence`: (decided since, control share), the response
    models refitted only on the pushes the decision did not choose (`recsys train --decided-since`)."""
    from features.loader import load_dataset
    from publishing.publish import publish
    from recsys.bundle import ModelBundle
    from recsys.publication import PublicationStore
    from training.config import TrainConfig
    from training.job import TrainOptions, train

    data = with_event_log(world, history, events_path, work / "data")
    bundle_path = work / "bundle"
    train(TrainOptions(data_dir=data, config=TrainConfig(), model_out=bundle_path, register=False,
                       progress=False, track=False,
                       response_from=None if response_from is None else str(response_from),
                       decided_since=None if evidence is None else evidence[0],
                       control_share=0.0 if evidence is None else evidence[1]),
          echo=lambda line: None)
    before = httpx.get(f"{base}/readyz", timeout=10).json()["model_version"]
    publish(ModelBundle.load(bundle_path), load_dataset(data), PublicationStore(client, prefix),
            model_uri=str(bundle_path))
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/readyz", timeout=10).json()["model_version"] == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API at {base} did not switch to the retrained bundle within 60 s")
        time.sleep(0.3)


def with_hour_prior(world: Path, bundle_path: Path, penalty: float) -> Path:
    """The bundle's ranking model beside response models refitted with `penalty` as the L2 weight of the
    open model's per-cardholder daily wave: hour priors compared under the same ranking model."""
    from features.loader import load_dataset
    from recsys.bundle import ModelBundle
    from training.response import DEFAULT_PENALTIES, ResponseFitConfig, fit_response_models

    target = bundle_path.with_name(f"{bundle_path.name}-user-hour-{penalty:g}")
    if not (target / "bundle.json").exists():
        log(f"refitting the response models with user_hour penalty {penalty:g}")
        penalties = {name: dict(weights) for name, weights in DEFAULT_PENALTIES.items()}
        penalties["open"]["user_hour"] = penalty
        dataset = load_dataset(world)
        response, report = fit_response_models(dataset, dataset.time_range()[1],
                                               ResponseFitConfig(penalties=penalties, user_hour_grid=()))
        log(report.summary())
        replace(ModelBundle.load(bundle_path), response=response).save(target)
    return target


def month_after(first: datetime, months: int) -> datetime:
    """The first day of the calendar month `months` after `first`'s (local midnight)."""
    index = first.year * 12 + first.month - 1 + months
    return first.replace(year=index // 12, month=index % 12 + 1, day=1, hour=0, minute=0)


def serve(redis_url: str, prefix: str, port: int, home: Path, month: datetime, months: int = 1
          ) -> subprocess.Popen:
    # the months are replayed: the server's clock is fixed just after the last, its past window spans them
    clock = month_after(month, months).replace(hour=20)
    env = {**os.environ, "RECSYS_REDIS_URL": redis_url, "RECSYS_REDIS_PREFIX": prefix,
           "RECSYS_SCHEDULER_TOKEN": TOKEN, "RECSYS_ADMIN_TOKEN": ADMIN, "RECSYS_HOME": str(home),
           "RECSYS_LOG_LEVEL": "WARNING", "RECSYS_SERVER_TIME": clock.isoformat(),
           "RECSYS_CLOCK_PAST_SECONDS": str(((clock - month).days + 10) * 86400)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    recsys = str(Path(sys.executable).with_name("recsys"))
    command = [recsys, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, env=env, cwd=home)
    wait_until_ready(f"http://127.0.0.1:{port}", process, seconds=90)
    return process


class Outcomes:
    """Opens and mutes drawn from the truth, the same uniforms (cardholder, day, slot) for every engine;
    `slots` are the times every scheduler of the run asks at."""

    def __init__(self, truth_path: Path, world: Path, seed: int, slots: Slots = DEFAULT_SLOTS,
                 months: int = 1) -> None:
        self.slots, self.months = slots, months
        holders = pd.read_parquet(world / "cardholders.parquet")
        self.user_ids = holders["user_id"].astype(str).to_numpy()
        self.row = {user: i for i, user in enumerate(self.user_ids)}
        zones = holders["timezone"].astype("string").fillna("")
        self.zones = zones.replace("", "Asia/Shanghai").to_numpy()
        self.opted_in = holders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool)
        self.seed = seed
        self.independent = truth_path.name.endswith(".hidden.npz")
        if self.independent:  # the shared independent world: true P(open) per pair, nothing else
            with np.load(truth_path, allow_pickle=True) as hidden:
                self.p = hidden["p"]
                self.truth_users = pd.Index(hidden["users"].astype(str)).get_indexer(self.user_ids)
                self.truth_items = pd.Index(hidden["items"].astype(str))
            as_of = pd.Timestamp(json.loads(truth_path.with_name(
                truth_path.name.replace(".hidden.npz", ".meta.json")).read_text())["as_of"], tz="UTC")
        else:
            from worlds.truth import WorldTruth

            truth = WorldTruth.load(truth_path)
            self.truth_users = truth.user_index(self.user_ids)
            self.truth = truth
            self.response = truth.response_model()
            as_of = pd.Timestamp(truth.as_of)
        # the calendar month whose first slot comes after the data's end
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of
        local = as_of.tz_convert(SHANGHAI)
        first = datetime(local.year, local.month, 1, *slots[0], tzinfo=SHANGHAI)
        if first <= as_of.to_pydatetime():
            first = (first + timedelta(days=31)).replace(day=1)
        self.month = first.replace(hour=0, minute=0)
        content = pd.read_parquet(world / "content.parquet")
        # content that becomes valid only after the data's end: never on offer to the trained models
        fresh = pd.to_datetime(content["valid_from"], utc=True) > as_of
        self.fresh = set(content.loc[fresh.to_numpy(), "content_id"].astype(str))
        self.last_values = np.zeros(0)
        pushes = pd.read_parquet(world / "push_log.parquet")
        pushes["sent_ts"] = pd.to_datetime(pushes["sent_ts"], utc=True)  # naive times are UTC (contract)
        flags = content["transactional"].astype("boolean").fillna(False)
        transactional = set(content.loc[flags, "content_id"])
        start = pd.Timestamp(self.month)
        # the truth's recent count is of marketing pushes: reminders in the push log do not count
        recent = pushes.loc[(pushes["sent_ts"] > start - pd.Timedelta(days=30))
                            & ~pushes["content_id"].isin(transactional)]
        self.history = {self.row[u]: list(pd.to_datetime(group["sent_ts"], utc=True))
                        for u, group in recent.groupby("user_id") if u in self.row}
        # a cardholder who muted or unfollowed in the push log is no longer reachable by any engine
        gone = set(pushes.loc[pushes["muted"].astype("boolean").fillna(False), "user_id"].astype(str))
        self.reachable = self.opted_in & ~np.isin(self.user_ids, list(gone))

    def draws(self, day: int, slot: int) -> np.ndarray:
        return np.random.default_rng([self.seed, day, slot]).random((2, len(self.user_ids)))

    def replay(self, days: int | None = None) -> list[tuple[int, int]]:
        """(month, day) of each day replayed: the first `days` days (default: all) of each of the `months`
        calendar months from `month`; month counts from 0, day from `month`'s first day (the day of
        `draws` and of the slots' times, so a date has the same draws whatever is replayed before it)."""
        schedule = []
        for number in range(self.months):
            start, end = month_after(self.month, number), month_after(self.month, number + 1)
            offset, length = (start - self.month).days, (end - start).days
            schedule += [(number, offset + day) for day in range(min(length, days or length))]
        return schedule

    def at(self, day: int, hour: int, minute: int = 0) -> datetime:
        """The local time (Asia/Shanghai) `hour`:`minute` of `day` (days from `month`'s first)."""
        return (self.month + timedelta(days=day)).replace(hour=hour, minute=minute)

    def month_of(self, times: list[datetime]) -> np.ndarray:
        """int: the month replayed (from 0) that each time falls in, by the Asia/Shanghai calendar (a time
        after the last month counts in the last)."""
        first = self.month.year * 12 + self.month.month
        local = [t.astimezone(SHANGHAI) for t in times]
        return np.minimum(np.array([t.year * 12 + t.month - first for t in local], dtype=np.int64),
                          self.months - 1)

    def month_name(self, number: int) -> str:
        return f"{month_after(self.month, number):%B %Y}"

    def recent(self, rows: np.ndarray, sent: list[datetime], sent_log: dict) -> np.ndarray:
        """The truth's recent count of a push to each row at its time: marketing pushes of the last 30 days
        (the push log's and `sent_log`'s), this one included."""
        return np.array([1 + sum(1 for t in self.history.get(r, []) + sent_log[r]
                                 if at - timedelta(days=30) < t <= at)
                         for r, at in zip(np.asarray(rows).tolist(), sent, strict=True)])

    def local_hours(self, rows: np.ndarray, sent: list[datetime]) -> np.ndarray:
        """float: each push's local hour of the day (10:30 is 10.5)."""
        local = [at.astimezone(ZoneInfo(self.zones[r])) for r, at in zip(np.asarray(rows).tolist(), sent,
                                                                          strict=True)]
        return np.array([t.hour + t.minute / 60 for t in local])

    def probabilities(self, rows: np.ndarray, contents: list[str], sent: list[datetime], sent_log: dict
                      ) -> tuple[np.ndarray, np.ndarray]:
        """True P(open) and P(mute) per push; `sent_log[row]` (this engine's pushes) gives the recent
        count."""
        recent = self.recent(rows, sent, sent_log)
        hours = np.array([at.astimezone(ZoneInfo(self.zones[r])).hour
                          for r, at in zip(rows, sent, strict=True)])
        users = self.truth_users[rows]
        if self.independent:
            return (self.p[users, self.truth_items.get_indexer(np.asarray(contents))],
                    np.zeros(len(rows), dtype=np.float64))
        items = self.truth.content_index(np.asarray(contents))
        return (self.response.open_probability(users, items, recent, local_hours=hours),
                self.response.mute_probability(users, recent, items))

    def answer(self, rows: np.ndarray, contents: list[str], sent: list[datetime], sent_log: dict,
               uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Opened and muted per push, and the push's true value p_open - 10 x p_mute into
        `self.last_values` (for the fresh-content diagnosis)."""
        p_open, p_mute = self.probabilities(rows, contents, sent, sent_log)
        self.last_values = p_open - MUTE_PRICE * p_mute
        return uniforms[0, rows] < p_open, uniforms[1, rows] < p_mute


def violating(sent_log: dict, zones: np.ndarray) -> list[datetime]:
    """The default caps' violations, one entry each, as the (local) time of the push that breaks the rule:
    a second push of a local day, a fifth of a local calendar month, one in quiet hours (22:00-08:00
    local) and one less than 12 h after the one before."""
    found = []
    for row, times in sent_log.items():
        local = sorted(t.astimezone(ZoneInfo(zones[row])) for t in times)
        days: dict = defaultdict(int)
        months: dict = defaultdict(int)
        for number, t in enumerate(local):
            days[t.date()] += 1
            months[(t.year, t.month)] += 1
            broken = (int(days[t.date()] > 1) + int(months[(t.year, t.month)] > 4)
                      + int(t.hour >= 22 or t.hour < 8)
                      + int(number > 0 and t - local[number - 1] < timedelta(hours=12)))
            found += [t] * broken
    return found


def violations(sent_log: dict, zones: np.ndarray) -> int:
    return len(violating(sent_log, zones))


def violations_by_month(sent_log: dict, outcomes: Outcomes) -> list[int]:
    """`violating`'s count per month replayed (`Outcomes.month_of` the breaking push)."""
    months = outcomes.month_of(violating(sent_log, outcomes.zones))
    return np.bincount(months, minlength=outcomes.months).tolist()


MONTH_FIELDS = ("pushes", "opens", "mutes", "expected value")


def new_totals() -> defaultdict:
    """A scheduler's running sums, its counts at 0 from the start: one that never sends (a weekly
    broadcast over days without a Monday) still reports its pushes, opens and mutes."""
    return defaultdict(int, dict.fromkeys(MONTH_FIELDS, 0))


def tally_months(totals: dict, outcomes: Outcomes, times: list[datetime], opened: np.ndarray,
                 muted: np.ndarray, values: np.ndarray) -> None:
    """Adds a batch's pushes (sent at `times`), opens, mutes and true values to `totals` by month replayed,
    under keys ("month", number, field)."""
    months = outcomes.month_of(times)
    for number in np.unique(months).tolist():
        part = months == number
        for field, amount in zip(MONTH_FIELDS, (int(part.sum()), int(opened[part].sum()),
                                                int(muted[part].sum()), float(values[part].sum())),
                                 strict=True):
            totals[("month", number, field)] += amount


def close_months(totals: dict, outcomes: Outcomes, sent_log: dict) -> None:
    """Moves `tally_months`' sums into `totals["months"]` (a dict a month, with its violations) and puts
    the whole run's violations in `totals["violations"]`."""
    counts = violations_by_month(sent_log, outcomes)
    totals["months"] = [{**{field: totals.pop(("month", number, field), 0) for field in MONTH_FIELDS},
                         "violations": counts[number]} for number in range(outcomes.months)]
    for key in [key for key in totals if isinstance(key, tuple) and key[0] == "month"]:
        number, field = key[1], key[2]
        totals["months"][number][field] = totals.pop(key)
    totals["violations"] = sum(counts)


class SchedulerClient:
    """POSTs to the API as a bank's scheduler would: a 503 (the API shedding load or its caps store
    briefly away) or a connection error is retried up to `attempts` times in all, waiting `backoff` x 2^n
    seconds between tries; every retry is counted, and the last failure is raised naming the call."""

    def __init__(self, base: str, token: str, attempts: int = 5, backoff: float = 1.0,
                 timeout: float = 120) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                   timeout=timeout)
        self.attempts, self.backoff = attempts, backoff
        self.retries: dict[str, int] = defaultdict(int)  # by cause: "503" or the transport error's name

    def post(self, path: str, body: dict) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = self.client.post(path, json=body)
            except httpx.TransportError as error:
                cause, detail = type(error).__name__, str(error) or type(error).__name__
            else:
                if response.status_code != 503:
                    response.raise_for_status()
                    return response
                cause, detail = "503", response.text[:200]
            if attempt == self.attempts:
                raise RuntimeError(f"POST {path} failed {self.attempts} times, last: {cause} ({detail}); "
                                   "the API is down or overloaded: check recsys serve and Redis, then rerun")
            wait = self.backoff * 2 ** (attempt - 1)
            self.retries[cause] += 1
            log(f"  POST {path}: {cause}, retry {attempt} of {self.attempts - 1} in {wait:g} s")
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self.client.close()


def run_engine(name: str, base: str, outcomes: Outcomes, schedule: list[tuple[int, int]],
               habit: SendAtHabit = SendAtHabit(), retrain: Callable[[int], None] | None = None,
               retrain_on: frozenset[int] = frozenset()) -> dict:
    """One engine's months through the API (`schedule`: `Outcomes.replay`); a scheduler that does not
    follow `send_at` (`habit`) delivers every `send` at the slot it asked at. Counts per day the sends
    answered with a later `send_at` and the expected value of the day's pushes, and per month
    (`tally_months`) the pushes, opens, mutes, expected value, violations and holds. `retrain` is
    called with each day of `retrain_on` (`retrain_days`) before that day's first slot."""
    client = SchedulerClient(base, TOKEN)
    sent_log: dict[int, list[datetime]] = defaultdict(list)
    totals: dict = new_totals()
    # (day, slot, rows, send times, content ids)
    batches: list[tuple[int, int, np.ndarray, list[datetime], list[str]]] = []
    muted_rows: set[int] = set()
    held_rows: dict[str, set[int]] = defaultdict(set)  # by the kind of hold
    # each cardholder's value by month replayed, expected (the truth's p) and drawn (what a bank sees)
    row_values = np.zeros((outcomes.months, len(outcomes.user_ids), 2))
    users = [u for u, ok in zip(outcomes.user_ids, outcomes.reachable, strict=True) if ok]
    for month, day in schedule:
        if retrain is not None and day in retrain_on:
            retrain(day)
        for slot, (hour, minute) in enumerate(outcomes.slots):
            now = outcomes.at(day, hour, minute)
            uniforms = outcomes.draws(day, slot)
            rows, contents, when, push_ids = [], [], [], []
            for start in range(0, len(users), 1000):
                body = {"requests": [{"user_id": u, "k": 1, "reserve": True, "now": now.isoformat()}
                                     for u in users[start:start + 1000]]}
                response = client.post("/v1/rank/batch", body)
                for result in response.json()["results"]:
                    if result.get("decision") == "hold" and result["caps"]["allowed"]:
                        totals["held"] += 1
                        reason = result["reason"]
                        kind = "below threshold" if "below threshold" in reason else reason.split(":")[0]
                        totals[f"held: {kind}"] += 1
                        totals[("month", month, "held")] += 1
                        totals[("month", month, f"held: {kind}")] += 1
                        held_rows[kind].add(outcomes.row[result["user_id"]])
                    if not result["push_id"] or result.get("decision", "send") != "send":
                        continue
                    suggested = result.get("send_at")
                    send_at = datetime.fromisoformat(suggested) if suggested else None
                    at = habit.delivery(now, send_at)
                    totals[("sends", day)] += 1
                    totals[("later send_at", day)] += is_later(now, send_at)
                    rows.append(outcomes.row[result["user_id"]])
                    contents.append(result["items"][0]["content_id"])
                    when.append(at)
                    push_ids.append(result["push_id"])
            if not rows:
                continue
            batches.append((day, slot, np.asarray(rows), when, contents))
            opened, muted = outcomes.answer(np.asarray(rows), contents, when, sent_log, uniforms)
            events = []
            pushes = zip(rows, contents, when, push_ids, opened, muted, strict=True)
            for r, content, at, push_id, o, m in pushes:
                sent_log[r].append(at)
                user = outcomes.user_ids[r]
                events.append({"event_id": f"{push_id}-s", "type": "sent", "user_id": user,
                               "push_id": push_id, "content_id": content, "ts": at.isoformat()})
                if o:
                    events.append({"event_id": f"{push_id}-o", "type": "opened", "user_id": user,
                                   "push_id": push_id, "ts": (at + timedelta(minutes=20)).isoformat()})
                if m:
                    muted_rows.add(r)
                    events.append({"event_id": f"{push_id}-m", "type": "muted", "user_id": user,
                                   "push_id": push_id, "ts": (at + timedelta(minutes=5)).isoformat()})
            for start in range(0, len(events), 1000):
                client.post("/v1/events", {"events": events[start:start + 1000]})
            tally(totals, outcomes, contents, opened, muted, when)
            at_month, at_row = outcomes.month_of(when), np.asarray(rows)
            np.add.at(row_values, (at_month, at_row, 0), outcomes.last_values)
            np.add.at(row_values, (at_month, at_row, 1), opened - MUTE_PRICE * muted)
            totals[("expected", day)] += float(outcomes.last_values.sum())
        if day % 7 == 6:
            log(f"  {name}: day {day + 1}, {totals['pushes']:,} pushes, {totals['opens']:,} opens")
    client.close()
    totals["expected by day"] = [totals.pop(("expected", day), 0.0) for _, day in schedule]
    totals["later by day"] = [totals.pop(("later send_at", day), 0) / max(totals.pop(("sends", day), 0), 1)
                              for _, day in schedule]
    close_months(totals, outcomes, sent_log)
    totals["batches"] = batches
    totals["muted rows"] = muted_rows
    totals["held rows"] = dict(held_rows)
    totals["row values"] = row_values
    totals["retries"] = dict(client.retries)
    return dict(totals)


def tally(totals: dict, outcomes: Outcomes, contents: list[str], opened: np.ndarray,
          muted: np.ndarray, times: list[datetime]) -> None:
    """Adds a batch just answered (`outcomes.answer`) to `totals`: its pushes, opens and mutes, the
    pushes of content valid only after the data's end, and the true value of fresh and of other pushes
    (`outcomes.last_values`); the same by month replayed of the pushes' `times` (`tally_months`)."""
    tally_months(totals, outcomes, times, opened, muted, outcomes.last_values)
    totals["pushes"] += len(contents)
    totals["opens"] += int(opened.sum())
    totals["mutes"] += int(muted.sum())
    fresh = np.array([c in outcomes.fresh for c in contents], dtype=bool)
    totals["fresh"] += int(fresh.sum())
    totals["value fresh"] += float(outcomes.last_values[fresh].sum())
    totals["value other"] += float(outcomes.last_values[~fresh].sum())
    totals["expected value"] += float(outcomes.last_values.sum())


def fresh_content(results: dict, names: list[str], outcomes: Outcomes) -> list[str]:
    """Per engine: the share of its pushes carrying content valid only after the data's end (never on
    offer to the trained models) and the mean true value per push of those and of the others."""
    lines = [f"content valid only after the data's end: {len(outcomes.fresh):,} items",
             "| engine | pushes of fresh content | true value per push, fresh / other |", "|---|---|---|"]
    for name in names:
        r = results[name]
        fresh, other = r.get("fresh", 0), r["pushes"] - r.get("fresh", 0)
        per_fresh = f"{r['value fresh'] / fresh:.3f}" if fresh else "-"
        per_other = f"{r['value other'] / other:.3f}" if other else "-"
        share = fresh / max(r["pushes"], 1)
        lines.append(f"| {name} | {fresh:,} ({share:.1%}) | {per_fresh} / {per_other} |")
    return lines


def weekly_broadcast(world: Path, outcomes: Outcomes, schedule: list[tuple[int, int]]) -> dict:
    """Each Monday 10:00 the most-read item valid then and not broadcast yet, to every reachable, unmuted
    cardholder."""
    reads = pd.read_parquet(world / "article_reads.parquet")
    content = pd.read_parquet(world / "content.parquet").set_index("content_id")
    marketing = content.loc[~content["transactional"].astype("boolean").fillna(False)]
    valid_from = pd.to_datetime(marketing["valid_from"], utc=True)
    valid_to = pd.to_datetime(marketing["valid_to"], utc=True)
    order = [c for c in reads["content_id"].value_counts().index if c in marketing.index]
    sent_log: dict[int, list[datetime]] = defaultdict(list)
    muted_rows: set[int] = set()
    sent_items: set[str] = set()
    totals = new_totals()
    for _, day in schedule:
        now = outcomes.at(day, 10)
        if now.weekday() != 0:
            continue
        rows = np.array([r for r in range(len(outcomes.user_ids))
                         if outcomes.reachable[r] and r not in muted_rows])
        moment = pd.Timestamp(now)
        valid = [c for c in order if c not in sent_items and not valid_from[c] > moment
                 and not valid_to[c] < moment]
        if not valid:
            continue
        item = valid[0]
        sent_items.add(item)
        opened, muted = outcomes.answer(rows, [item] * len(rows), [now] * len(rows), sent_log,
                                        outcomes.draws(day, 0))
        for r in rows.tolist():
            sent_log[r].append(now)
        muted_rows.update(rows[muted].tolist())
        totals["pushes"] += len(rows)
        totals["opens"] += int(opened.sum())
        totals["mutes"] += int(muted.sum())
        totals["expected value"] += float(outcomes.last_values.sum())
        tally_months(totals, outcomes, [now] * len(rows), opened, muted, outcomes.last_values)
    close_months(totals, outcomes, sent_log)
    return dict(totals)


ORACLES = {
    "true best item at every allowed slot": "every",
    "same, sending only when true value > 0": "positive",
    "same, and only in the cardholder's better half of the day": "better half",
}
GAP_ORACLE = "true best item at every allowed slot"  # the held-out target is against this row


class TrueBest:
    """The valid marketing item of the highest true value p_open - 10 x p_mute for a cardholder at a local
    hour, with the true recent count, never an item the cardholder already got from this scheduler."""

    def __init__(self, world: Path, outcomes: Outcomes) -> None:
        content = pd.read_parquet(world / "content.parquet")
        marketing = content.loc[~content["transactional"].astype("boolean").fillna(False).to_numpy()]
        self.outcomes = outcomes
        self.item_ids = marketing["content_id"].astype(str).to_numpy()
        self.items = outcomes.truth.content_index(self.item_ids)
        self.valid_from = pd.to_datetime(marketing["valid_from"], utc=True).to_numpy(dtype="datetime64[s]")
        self.valid_to = pd.to_datetime(marketing["valid_to"], utc=True).to_numpy(dtype="datetime64[s]")
        self.sent = np.zeros((len(outcomes.user_ids), len(self.item_ids)), dtype=bool)

    def pick(self, rows: np.ndarray, moments: list[datetime], local_hours: np.ndarray,
             recent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the best item's column and its true value (-inf: no valid item left)."""
        at = pd.to_datetime(moments, utc=True).tz_localize(None).to_numpy(dtype="datetime64[s]")
        starts, ends = self.valid_from[None, :], self.valid_to[None, :]
        valid = ((np.isnat(starts) | (starts <= at[:, None])) & (np.isnat(ends) | (ends >= at[:, None])))
        users = self.outcomes.truth_users[rows]
        response = self.outcomes.response
        p_open = response.open_probability(users[:, None], self.items[None, :], recent[:, None],
                                           local_hours[:, None])
        p_mute = response.mute_probability(users[:, None], recent[:, None], self.items[None, :])
        value = np.where(valid & ~self.sent[rows], p_open - MUTE_PRICE * p_mute, -np.inf)
        best = value.argmax(axis=1)
        return best, value[np.arange(len(rows)), best]


def oracle(world: Path, outcomes: Outcomes, schedule: list[tuple[int, int]], rule: str) -> dict:
    """A scheduler that knows the world's truth, at the same slots and within the default policy's caps
    (1 a local day, 4 a local month, 12 h apart, no push 22:00-08:00 local, never the same item twice,
    a 14-day pause after each push once 3 in a row went unopened, none after a mute): at each allowed
    slot it sends each cardholder the valid marketing item of the highest true value p_open - 10 x
    p_mute (`TrueBest`, at the local hour, with the true recent count). `rule` "positive" sends only
    when that value is > 0; "better half" also only when the local hour is in the cardholder's better
    half of the day (the truth's hour term >= 0)."""
    best_item = TrueBest(world, outcomes)
    n = len(outcomes.user_ids)
    sent_log: dict[int, list[datetime]] = defaultdict(list)
    paused_until = np.full(n, np.datetime64("NaT"), dtype="datetime64[s]")
    unopened = np.zeros(n, dtype=np.int64)
    stopped = ~outcomes.reachable.copy()
    totals = new_totals()
    for _, day in schedule:
        for slot, (hour, minute) in enumerate(outcomes.slots):
            now = outcomes.at(day, hour, minute)
            moment = pd.Timestamp(now)
            rows, hours = [], []
            for r in np.flatnonzero(~stopped).tolist():
                local = now.astimezone(ZoneInfo(outcomes.zones[r]))
                if local.hour >= 22 or local.hour < 8:
                    continue
                mine = [t.astimezone(ZoneInfo(outcomes.zones[r])) for t in sent_log[r]]
                if any(t.date() == local.date() for t in mine) or any(now - t < timedelta(hours=12)
                                                                        for t in sent_log[r]):
                    continue
                if sum(1 for t in mine if (t.year, t.month) == (local.year, local.month)) >= 4:
                    continue
                if np.datetime64(moment.tz_convert(None), "s") < paused_until[r]:  # NaT: never paused
                    continue
                rows.append(r)
                hours.append(local.hour + local.minute / 60)
            if not rows:
                continue
            rows_array, local_hours = np.asarray(rows), np.asarray(hours)
            users = outcomes.truth_users[rows_array]
            recent = outcomes.recent(rows_array, [now] * len(rows), sent_log)
            best, best_value = best_item.pick(rows_array, [now] * len(rows), local_hours, recent)
            send = np.isfinite(best_value)
            if rule in ("positive", "better half"):
                send &= best_value > 0
            if rule == "better half":
                send &= outcomes.response.hour_effect(users, local_hours) >= 0
            if not send.any():
                continue
            chosen, picks = rows_array[send], best[send]
            opened, muted = outcomes.answer(chosen, best_item.item_ids[picks].tolist(), [now] * len(chosen),
                                            sent_log, outcomes.draws(day, slot))
            for r, item, o, m in zip(chosen.tolist(), picks.tolist(), opened, muted, strict=True):
                sent_log[r].append(now)
                best_item.sent[r, item] = True
                unopened[r] = 0 if o else unopened[r] + 1
                if unopened[r] >= 3:  # the streak stays until an open: each further push restarts the pause
                    paused_until[r] = np.datetime64(moment.tz_convert(None) + pd.Timedelta(days=14), "s")
                stopped[r] |= bool(m)
            tally(totals, outcomes, best_item.item_ids[picks].tolist(), opened, muted, [now] * len(chosen))
    close_months(totals, outcomes, sent_log)
    return dict(totals)


TRUE_ITEMS = "engine's decisions, true best item"


def with_true_items(world: Path, outcomes: Outcomes, batches: list) -> dict:
    """The value-aware engine's own whether and when (its sends, to the same cardholders at the same
    times) with the true best item instead of its own: the gap to the engine is what to push, the gap
    to the oracle whether and when. After a mute the cardholder gets nothing more."""
    best_item = TrueBest(world, outcomes)
    sent_log: dict[int, list[datetime]] = defaultdict(list)
    stopped: set[int] = set()
    totals = new_totals()
    for day, slot, rows, when, _ in batches:
        keep = np.array([r not in stopped for r in rows.tolist()], dtype=bool)
        rows, when = rows[keep], [t for t, k in zip(when, keep, strict=True) if k]
        recent = outcomes.recent(rows, when, sent_log)
        picks, value = best_item.pick(rows, when, outcomes.local_hours(rows, when), recent)
        found = np.isfinite(value)
        rows, picks, when = rows[found], picks[found], [t for t, f in zip(when, found, strict=True) if f]
        if not len(rows):
            continue
        opened, muted = outcomes.answer(rows, best_item.item_ids[picks].tolist(), when, sent_log,
                                        outcomes.draws(day, slot))
        for r, item, at, m in zip(rows.tolist(), picks.tolist(), when, muted, strict=True):
            sent_log[r].append(at)
            best_item.sent[r, item] = True
            if m:
                stopped.add(r)
        tally(totals, outcomes, best_item.item_ids[picks].tolist(), opened, muted, when)
    close_months(totals, outcomes, sent_log)
    return dict(totals)


def send_times(outcomes: Outcomes, batches: list) -> str:
    """Where an engine's sends land: the share in the cardholder's true better half of the day (the
    truth's hour term >= 0), and at the scheduler's slot against a later suggested hour."""
    rows = np.concatenate([b[2] for b in batches]) if batches else np.zeros(0, np.int64)
    when = [t for b in batches for t in b[3]]
    if not len(rows):
        return "no sends"
    hours = outcomes.local_hours(rows, when)
    better = outcomes.response.hour_effect(outcomes.truth_users[rows], hours) >= 0
    at_slot = np.array([(t.astimezone(SHANGHAI).hour, t.astimezone(SHANGHAI).minute) in outcomes.slots
                        for t in when])
    return (f"{better.mean():.1%} in the better half of the day ({better[at_slot].mean():.1%} of the "
            f"{at_slot.sum():,} at a slot, {better[~at_slot].mean() if (~at_slot).any() else 0:.1%} of the "
            f"{(~at_slot).sum():,} at a later suggested hour)")


def statement_cycle(world: Path, outcomes: Outcomes) -> str:
    """Whether the push log supports a per-cardholder statement cycle: the share of cardholders with a
    transactional reminder sent in two or more months whose local day of the month repeats (within a day,
    each reminder on its own), and the median reminder days per cardholder."""
    content = pd.read_parquet(world / "content.parquet")
    reminders = set(content.loc[content["transactional"].astype("boolean").fillna(False).to_numpy(),
                                "content_id"])
    pushes = pd.read_parquet(world / "push_log.parquet")
    pushes = pushes.loc[pushes["content_id"].isin(reminders) & pushes["user_id"].isin(outcomes.row)]
    if pushes.empty:
        return "no transactional reminders in the push log"
    zones = pushes["user_id"].map(lambda u: outcomes.zones[outcomes.row[u]])
    sent = pd.to_datetime(pushes["sent_ts"], utc=True)
    day = np.array([t.tz_convert(z).day for t, z in zip(sent, zones, strict=True)])
    frame = pd.DataFrame({"user": pushes["user_id"].to_numpy(), "item": pushes["content_id"].to_numpy(),
                          "day": day})
    spread = frame.groupby(["user", "item"])["day"].agg(lambda d: 0 if len(d) < 2 else int(
        min(d.max() - d.min(), 31 - (d.max() - d.min()))))
    counts = frame.groupby(["user", "item"]).size()
    repeated = spread[counts >= 2]
    steady = (repeated <= 1).groupby(level="user").all()
    return (f"{len(steady):,} of {len(outcomes.user_ids):,} cardholders had a reminder in two or more months;"
            f" its day of the month repeats within a day for {steady.mean():.1%} of them "
            f"(median {int(frame.groupby('user').size().median())} reminders per cardholder)")


def learned_hours(model: Any, ids: np.ndarray) -> np.ndarray:
    """float [n, 24]: each cardholder's learned hour terms as `best_hours` ranks them (open net of mute)."""
    users = model.user_rows(ids)
    return model.hour_effects(users, "open") - model.hour_effects(users, "mute") * model.mute_hour_weight


def opened_pushes(world: Path, ids: np.ndarray) -> np.ndarray:
    """Each cardholder's opened pushes (marketing and reminders) in the world's push log."""
    pushes = pd.read_parquet(world / "push_log.parquet")
    opens = pushes.loc[pushes["opened_ts"].notna()].groupby("user_id").size()
    return opens.reindex(ids).fillna(0).to_numpy()


def evidence_bins(count: np.ndarray) -> np.ndarray:
    """The opened-push bins the hour diagnostics split by."""
    return np.select([count == 0, count == 1, count <= 3], ["0", "1", "2-3"], "4+")


def hour_quality(world: Path, model: Any, outcomes: Outcomes) -> list[str]:
    """The response model's learned hour preference against the truth's hour term, by the cardholder's
    opened pushes in the push log: Spearman correlation over the open hours 08-21, whether the learned
    best hour is in the truth's better half of the day and within 2 h of the truth's best open hour,
    and whether it prefers the right one of the scheduler's slots within 08-21 (with one slot: n/a)."""
    from scipy.stats import spearmanr

    if model is None:
        return ["no response model in the bundle"]
    hours = np.arange(8, 22)
    ids = outcomes.user_ids[outcomes.reachable]
    learned = learned_hours(model, ids)[:, hours]
    truth_users = outcomes.truth_users[outcomes.reachable]
    true = outcomes.response.hour_effect(truth_users[:, None], hours[None, :].astype(float))
    inside = [(h, m) for h, m in outcomes.slots if 8 <= h <= 21]
    slot_right = None  # with fewer than two slots there is no slot to prefer
    if len(inside) > 1:
        slot_hours = np.array([h + m / 60 for h, m in inside])
        true_slots = outcomes.response.hour_effect(truth_users[:, None], slot_hours[None, :])
        learned_slots = learned[:, [h - 8 for h, _ in inside]]
        slot_right = learned_slots.argmax(axis=1) == true_slots.argmax(axis=1)
    top = learned.argmax(axis=1)
    rho = np.array([spearmanr(a, b).statistic for a, b in zip(learned, true, strict=True)])
    in_half = true[np.arange(len(top)), top] >= 0
    near = np.abs(hours[top] - hours[true.argmax(axis=1)]) <= 2
    count = opened_pushes(world, ids)
    lines = ["| opened pushes in the push log | cardholders | Spearman (median) | best hour in better half "
             f"| within 2 h of true best | right slot of {slots_text(inside, ' / ')} |",
             "|---|---|---|---|---|---|"]
    bins = evidence_bins(count)
    for name, mask in (*((b, bins == b) for b in ("0", "1", "2-3", "4+")), ("all", count >= 0)):
        if mask.any():
            lines.append(f"| {name} | {mask.sum():,} | {np.nanmedian(rho[mask]):.2f} "
                         f"| {in_half[mask].mean():.1%} | {near[mask].mean():.1%} "
                         f"| {'n/a' if slot_right is None else f'{slot_right[mask].mean():.1%}'} |")
    return lines


def slot_diagnosis(world: Path, bundle_path: Path, outcomes: Outcomes, month_truth: Any, result: dict,
                   gap: float) -> list[str]:
    """The ignoring scheduler's choice between its slots (`month_gaps.slot_choices`), split by the
    cardholder's opened pushes in the push log, whether the engine ever held them for a better hour, and
    the days."""
    from benchmarks.month_gaps import sends_of, slot_ceiling, slot_choices, slot_report
    from recsys.bundle import ModelBundle

    learned = learned_hours(ModelBundle.load(bundle_path).response, outcomes.user_ids)
    choices = slot_choices(month_truth, sends_of(result["batches"], result["muted rows"]), learned)
    rows = pd.RangeIndex(len(outcomes.user_ids))
    held = set().union(*(found for kind, found in result["held rows"].items()
                         if kind.startswith("better hour")))
    groups = {"opens in the push log": pd.Series(evidence_bins(opened_pushes(world, outcomes.user_ids)),
                                                 index=rows),
              "held for a better hour": pd.Series([r in held for r in rows], index=rows).map(
                  {True: "at least once", False: "never"})}
    lines = [f"{IGNORING}: the slot of each send against the scheduler's other slots that day (expected "
             f"value; points of the gap {gap:,.1f})", *slot_report(choices, groups, gap)]
    inside = [h for h, _ in outcomes.slots if 8 <= h <= 21]
    if len(inside) < 2:
        return lines
    first, second = inside[:2]  # whole local hours, as the API and the month's draws take them
    ceiling = slot_ceiling(month_truth, (first, second))
    truth_users = outcomes.truth_users
    right = ((learned[:, first] > learned[:, second])
             == (outcomes.response.hour_effect(truth_users, first)
                 > outcomes.response.hour_effect(truth_users, second)))
    bins = groups["opens in the push log"].to_numpy()
    lines += ["", f"the better of {first}:00 and {second}:00 local, reachable cardholders: the learned hours "
              "against a posterior from the push log that knows the truth's form and its parameters but "
              "taste (`month_gaps.slot_ceiling`)",
              "| opened pushes in the push log | cardholders | learned hours right | posterior right |",
              "|---|---|---|---|"]
    for label in ("0", "1", "2-3", "4+", "all"):
        mask = outcomes.reachable & ((bins == label) | (label == "all"))
        lines.append(f"| {label} | {mask.sum():,} | {right[mask].mean():.1%} | {ceiling[mask].mean():.1%} |")
    return lines


def control_uplift(results: dict, outcomes: Outcomes, share: float) -> list[str]:
    """The decision's uplift as its control share measures it: the value-aware engine's value per reachable
    cardholder, treated against control, per month replayed and for the run, expected (the truth's p) and
    drawn (opens - 10 x mutes, what the bank's event log shows, `recsys events uplift`; with its 95%
    interval, `recsys.uplift.mean_ratio`), beside the send-all engine on the same two groups (there they
    differ only by chance)."""
    from recsys.control import in_control
    from recsys.uplift import mean_ratio

    control = in_control(outcomes.user_ids, share)
    groups = {"treated": outcomes.reachable & ~control, "control": outcomes.reachable & control}
    ours, base = results["value-aware engine"]["row values"], results["send-all engine"]["row values"]
    lines = [f"the decision's uplift, control share {share:g}: {groups['treated'].sum():,} treated and "
             f"{groups['control'].sum():,} control cardholders (value per cardholder, expected / drawn)"]
    spans = [(outcomes.month_name(number), slice(number, number + 1)) for number in range(outcomes.months)]
    for label, span in [*(spans if outcomes.months > 1 else []), ("the run", slice(None))]:
        mine, theirs = ours[span].sum(axis=0), base[span].sum(axis=0)
        per = {name: mine[mask].mean(axis=0) for name, mask in groups.items()}
        other = {name: theirs[mask].mean(axis=0) for name, mask in groups.items()}
        drawn = mean_ratio(mine[groups["treated"], 1], mine[groups["control"], 1])
        lines.append(
            f"  {label}: value-aware treated {per['treated'][0]:.3f} / {per['treated'][1]:.3f}, control "
            f"{per['control'][0]:.3f} / {per['control'][1]:.3f}: uplift "
            f"{per['treated'][0] / max(per['control'][0], 1e-12):.2f}x expected, {drawn.text()} drawn; "
            f"send-all engine on the same groups {other['treated'][0]:.3f} / {other['control'][0]:.3f} "
            f"expected; value-aware treated against send-all treated "
            f"{per['treated'][0] / max(other['treated'][0], 1e-12):.2f}x expected")
    return lines


def value_of(r: dict) -> float:
    """opens - 10 x mutes of an engine's run or month."""
    return r["opens"] - MUTE_PRICE * r["mutes"]


def results_table(results: dict, independent: bool, month: int | None = None) -> list[str]:
    """The engines' pushes, opens, mutes, value, expected value and cap violations: the whole run, or
    the month replayed `month` (from 0)."""
    # expected: the true p_open - 10 x p_mute summed over the pushes, less the luck of each push's draw
    lines = [f"| {'engine':<40} | pushes | opens | mutes | value (opens - 10 x mutes) | expected value "
             "| cap violations |", "|---|---|---|---|---|---|---|"]
    for name, whole in results.items():
        r = whole if month is None else whole["months"][month]
        value = "n/a" if independent else f"{value_of(r):,.0f}"
        mutes = "n/a" if independent else f"{r['mutes']:,}"
        lines.append(f"| {name:<40} | {r['pushes']:,} | {r['opens']:,} | {mutes} | {value} "
                     f"| {r.get('expected value', 0):,.1f} | {r['violations']} |")
    return lines


def against_send_all(ours: dict, base: dict) -> str:
    """A month's value-aware engine against send-all: value ratio, opens and mutes change, holds."""
    difference = value_of(ours) - value_of(base)
    ratio = (f"{value_of(ours) / value_of(base):.2f}x" if value_of(base) > 0
             else f"no ratio (send-all {value_of(base):,.0f}, difference {difference:+,.0f})")
    reasons = ", ".join(f"{key[6:]} {n:,}" for key, n in sorted(ours.items()) if key.startswith("held: "))
    return (f"value {ratio}, opens {ours['opens'] / max(base['opens'], 1) - 1:+.1%}, mutes "
            f"{ours['mutes'] / max(base['mutes'], 1) - 1:+.1%}, held by the decision {ours.get('held', 0):,}"
            f" ({reasons})")


def gap_closed(results: dict, oracle_name: str, engines: list[str]) -> str:
    """Each engine's (value - broadcast) / (oracle - broadcast) among `results` (a run's or a month's)."""
    floor = value_of(results[BROADCAST])
    gap = value_of(results[oracle_name]) - floor
    return ", ".join(f"{name.removesuffix(' engine')} {(value_of(results[name]) - floor) / gap:.0%}"
                     if gap > 0 else f"{name.removesuffix(' engine')} n/a (oracle not above broadcast)"
                     for name in engines)


def engine_rows(args: argparse.Namespace) -> list[tuple[str, bool, dict, SendAtHabit]]:
    """The engines a run replays, in order: (name, decision enabled, decision fields, scheduler habit).
    `--sweep` rows follow `send_at`; `--sweep-ignoring` rows, after them, ignore it (named after
    `IGNORING`, so they are printed as the ignoring scheduler is)."""
    follows, ignores = SendAtHabit(), SendAtHabit(follows=False)
    engines = [("value-aware engine", True, args.decision, follows),
               ("send-all engine", False, {}, follows)]
    if args.ignore_send_at:
        engines.append((IGNORING, True, args.decision, ignores))
    for day, first in ((args.ignore_send_at_until, False), (args.follow_send_at_until, True)):
        if day is not None:
            habit = SendAtHabit(follows=first, switch_day=day)
            engines.append((habit.name(), True, args.decision, habit))
    for prefix, sweep, habit in (("value-aware", args.sweep, follows),
                                 (IGNORING, args.sweep_ignoring, ignores)):
        engines += [(f"{prefix}, {json.dumps(fields, separators=(',', ':'))}", True,
                     {**args.decision, **fields}, habit) for fields in sweep]
    return engines


def command_line() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2500)
    parser.add_argument("--hour-preference", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=None,
                        help="days of each month replayed, from its first (default: the whole month)")
    parser.add_argument("--months", type=int, default=1,
                        help="consecutive calendar months replayed (default 1); tables per month and for "
                             "the whole run")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--mute-weight", type=float, default=None,
                        help="lambda of the value-aware engine (default: the default policy's)")
    parser.add_argument("--decision", type=json.loads, default={},
                        help="JSON fields of the value-aware policy's decision block, e.g. "
                             "'{\"hour_margin\": 0}'")
    parser.add_argument("--sweep", type=json.loads, default=[],
                        help="a JSON list of decision fields: one more value-aware engine each, same run, "
                             "e.g. '[{\"hour_margin\": 0}, {\"pacing\": {\"margin\": 0.4}}]'")
    parser.add_argument("--sweep-ignoring", type=json.loads, default=[],
                        help="the same for a scheduler that ignores send_at: one more value-aware engine "
                             "per setting whose every send goes at the slot it asked at, e.g. "
                             "'[{\"pacing\": {\"margin\": 0.4}}]'")
    parser.add_argument("--ignore-send-at", action="store_true",
                        help="one more value-aware engine whose scheduler ignores send_at: every send goes "
                             "at the slot it asked at")
    parser.add_argument("--ignore-send-at-until", type=int, default=None, metavar="DAY",
                        help="one more value-aware engine whose scheduler ignores send_at before this day of "
                             "the month and follows it from then on")
    parser.add_argument("--follow-send-at-until", type=int, default=None, metavar="DAY",
                        help="the reverse: follows send_at before this day of the month, ignores it "
                             "from then on")
    parser.add_argument("--user-hour-penalty", type=float, default=None,
                        help="refit the bundle's response models with this fixed L2 weight on the "
                             "cardholder's own daily wave (default: the bundle's as trained)")
    parser.add_argument("--slots", type=parse_slots, default=DEFAULT_SLOTS,
                        help="the scheduler's times of asking each day, HH:MM Asia/Shanghai separated by "
                             f"commas (default {slots_text(DEFAULT_SLOTS).replace(' ', '')}); every "
                             "scheduler of the run asks then, the oracles included")
    parser.add_argument("--decompose", action="store_true",
                        help="where the value-aware engines' months lose value by the truth: item, hour, "
                             "whether to send, pacing (benchmarks/month_gaps.py)")
    parser.add_argument("--slot-choices", action="store_true",
                        help="with --ignore-send-at: the slot of each of its sends against the truth's "
                             "better one, by the cardholder's evidence and holds (also in --decompose)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench-month")
    parser.add_argument("--retrain", action="store_true",
                        help="retrain and publish each engine's bundle at every month boundary, on the world "
                             "and the pushes its API recorded")
    parser.add_argument("--keep-response", action="store_true",
                        help="with --retrain or --retrain-every: refit the ranking model only and keep the "
                             "first bundle's response models (recsys train --response-from)")
    parser.add_argument("--control-share", type=float, default=0.0, metavar="SHARE",
                        help="the value-aware engines' decision.control_share: cardholders sent whatever the "
                             "value; the uplift is printed and retrains refit the response models on theirs")
    parser.add_argument("--retrain-every", type=int, default=None, metavar="DAYS",
                        help="retrain as --retrain does, also before every DAYS-th day replayed")
    parser.add_argument("--independent", type=Path, default=None,
                        help="a data directory with DIR.hidden.npz beside it (the shared independent world)")
    return parser


def main() -> int:
    parser = command_line()
    args = parser.parse_args()
    if args.months < 1:
        parser.error(f"--months must be at least 1, got {args.months}")
    if args.days is not None and args.days < 1:
        parser.error(f"--days must be at least 1, got {args.days}")
    if args.retrain_every is not None and args.retrain_every < 1:
        parser.error(f"--retrain-every must be at least 1 day, got {args.retrain_every}")
    if args.retrain and args.months < 2:
        parser.error("--retrain retrains at a month boundary: give it with --months 2 or more")
    if args.keep_response and not (args.retrain or args.retrain_every is not None):
        parser.error("--keep-response says what a retrain keeps: give it with --retrain or --retrain-every")
    if not 0.0 <= args.control_share <= 0.5:
        parser.error(f"--control-share must be in [0, 0.5] (decision.control_share), "
                     f"got {args.control_share}")
    if args.control_share:
        args.decision = {**args.decision, "control_share": args.control_share}
    if args.months > 1 and (args.decompose or args.slot_choices):
        parser.error("--decompose and --slot-choices split one month: give them without --months")
    import redis

    from publishing.publish import publish
    from recsys.bundle import ModelBundle
    from recsys.embedded_redis import free_port, start_embedded_redis
    from recsys.publication import PublicationStore

    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.independent is not None:
        world = args.independent.resolve()
        truth = world.with_name(world.name + ".hidden.npz")
        if not truth.is_file():
            print(f"error: {truth} not found: --independent needs the world's hidden truth beside it",
                  file=sys.stderr)
            return 2
        bundle_path = work / f"{world.name}-trained"
        if not (bundle_path / "bundle.json").exists():
            train_bundle(world, bundle_path, args.seed)
    else:
        world, truth, bundle_path = build(work, args.users, args.hour_preference, args.seed, args.months)
        if args.user_hour_penalty is not None:
            bundle_path = with_hour_prior(world, bundle_path, args.user_hour_penalty)
    embedded = None if os.environ.get("RECSYS_REDIS_URL") else start_embedded_redis()
    redis_url = embedded.url if embedded else os.environ["RECSYS_REDIS_URL"]
    client = redis.Redis.from_url(redis_url)
    tag = f"month-bench-{os.getpid()}"
    outcomes = Outcomes(truth, world, args.seed, args.slots, args.months)
    schedule = outcomes.replay(args.days)
    retrain_on = retrain_days(schedule, args.retrain or args.retrain_every is not None, args.retrain_every)
    results: dict[str, dict] = {}
    servers: list[subprocess.Popen] = []
    homes: list[Path] = []
    try:
        from features.loader import load_dataset

        bundle, dataset = ModelBundle.load(bundle_path), load_dataset(world)
        for number, (name, enabled, fields, habit) in enumerate(engine_rows(args)):
            prefix = f"{tag}-{number}"
            publish(bundle, dataset, PublicationStore(client, prefix), model_uri=str(bundle_path))
            port = free_port()
            home = Path(tempfile.mkdtemp(prefix="month-", dir=work))
            homes.append(home)
            servers.append(serve(redis_url, prefix, port, home, outcomes.month, args.months))
            base = f"http://127.0.0.1:{port}"
            admin = {"Authorization": f"Bearer {ADMIN}"}
            policy = httpx.get(f"{base}/v1/policy", headers=admin).json()["policy"]
            policy["version"] = f"month-{number}"
            policy["decision"]["enabled"] = enabled
            if args.mute_weight is not None:
                policy["decision"]["mute_weight"] = args.mute_weight
            policy["decision"].update(fields)
            httpx.put(f"{base}/v1/policy", json=policy, headers=admin).raise_for_status()
            log(f"{name}: replaying {len(schedule)} days from {outcomes.month:%Y-%m-%d}, "
                f"{outcomes.reachable.sum():,} cardholders")
            retrain = None
            if retrain_on:
                share = float(fields.get("control_share", 0.0)) if enabled else 0.0
                evidence = (None if args.keep_response or not share
                            else (pd.Timestamp(outcomes.month), share))

                def retrain(day: int, base: str = base, prefix: str = prefix, home: Path = home,
                            name: str = name, evidence: tuple | None = evidence) -> None:
                    log(f"{name}: retraining before {outcomes.at(day, 0):%Y-%m-%d} on the world and the "
                        "API's pushes")
                    retrain_and_publish(world, dataset.push_log, home / "events" / "push_log.jsonl",
                                        Path(tempfile.mkdtemp(prefix="retrain-", dir=home)), client, prefix,
                                        base, bundle_path if args.keep_response else None, evidence)
            began = time.perf_counter()
            results[name] = run_engine(name, base, outcomes, schedule, habit, retrain, retrain_on)
            results[name]["seconds"] = time.perf_counter() - began
            servers[-1].terminate()
            servers[-1].wait(timeout=30)
        results[BROADCAST] = weekly_broadcast(world, outcomes, schedule)
        if not outcomes.independent:
            for name, rule in ORACLES.items():
                log(f"oracle: {name}")
                results[name] = oracle(world, outcomes, schedule, rule)
            log(TRUE_ITEMS)
            results[TRUE_ITEMS] = with_true_items(world, outcomes, results["value-aware engine"]["batches"])
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
        delete_prefix(client, f"{tag}-*")
        client.close()
        if embedded is not None:
            embedded.stop()
    source = ("the independent world's hidden p (opens only: it has no mutes)" if outcomes.independent
              else f"the hidden truth (hour preference {args.hour_preference:g})")
    where = f"{len(outcomes.user_ids):,} cardholders, slots {slots_text(outcomes.slots)} Asia/Shanghai"
    months = range(outcomes.months) if outcomes.months > 1 else ()
    for number in months:
        days = sum(1 for month, _ in schedule if month == number)
        print(f"\n{outcomes.month_name(number)} ({days} days, month {number + 1} of {outcomes.months}), "
              f"{where}; outcomes from {source}")
        print("\n".join(results_table(results, outcomes.independent, number)))
    title = (f"{outcomes.month:%B %Y}" if not months else
             f"{outcomes.month_name(0)} to {outcomes.month_name(outcomes.months - 1)} (the whole run, "
             f"{len(schedule)} days)")
    print(f"\n{title}, {where}; outcomes from {source}")
    print("\n".join(results_table(results, outcomes.independent)))
    retried = [f"{name} {', '.join(f'{cause} x{n}' for cause, n in r['retries'].items())}"
               for name, r in results.items() if r.get("retries")]
    print(f"\nAPI calls retried (503 or connection error): {'; '.join(retried) or 'none'}")
    ours, base = results["value-aware engine"], results["send-all engine"]
    opens_change = ours["opens"] / max(base["opens"], 1) - 1
    if outcomes.independent:
        print(f"\nopens {opens_change:+.1%} against send-all (mutes and value: not in this truth), held by "
              f"the decision {ours.get('held', 0):,}")
        return 0
    value_ours = ours["opens"] - MUTE_PRICE * ours["mutes"]
    value_base = base["opens"] - MUTE_PRICE * base["mutes"]
    difference = value_ours - value_base
    ratio = (f"{value_ours / value_base:.2f}x" if value_base > 0
             else f"no ratio (send-all value {value_base:,.0f} <= 0; difference {difference:+,.0f})")
    reasons = ", ".join(f"{key[6:]} {n:,}" for key, n in sorted(ours.items()) if key.startswith("held: "))
    print(f"\nvalue {ratio} (target >= 1.5x), opens {opens_change:+.1%} (target >= 0),"
          f" mutes {ours['mutes'] / max(base['mutes'], 1) - 1:+.1%} (target <= -30%), "
          f"held by the decision {ours.get('held', 0):,} ({reasons})")
    for number in months:
        print(f"{outcomes.month_name(number)}: "
              f"{against_send_all(ours['months'][number], base['months'][number])}")
    habits = [name for name in results if name.startswith("value-aware, scheduler ")]
    for name in habits:
        held = ", ".join(f"{key[6:]} {n:,}" for key, n in sorted(results[name].items())
                         if key.startswith("held: "))
        print(f"{name}: held by the decision {results[name].get('held', 0):,} ({held})")
    # each month's positions in `schedule` (one month: all, printed as before)
    spans = [(f" ({outcomes.month_name(number)})" if months else "",
              [i for i, (month, _) in enumerate(schedule) if month == number])
             for number in range(outcomes.months)]
    for name in ("value-aware engine", *habits):
        for label, positions in spans:
            shares = " ".join(f"{results[name]['later by day'][i]:.0%}" for i in positions)
            print(f"sends answered with a later send_at, days 1-{len(positions)}{label}, {name}: {shares}")
    for name in ("value-aware engine", *habits):
        for label, positions in spans:
            days = [results[name]["expected by day"][i] for i in positions]
            parts = [(1, 10), (11, 20), (21, len(days))]
            split = ", ".join(f"days {a}-{b} {sum(days[a - 1:b]):,.1f}" for a, b in parts if a <= len(days))
            print(f"expected value by part of the month{label}, {name}: {split}")
            print(f"expected value by day{label}, {name}: {' '.join(f'{value:.0f}' for value in days)}")
    for engine in ("value-aware engine", "send-all engine", *habits):
        print(f"\nsend times, {engine}: {send_times(outcomes, results[engine]['batches'])}")
    if args.control_share:
        print("\n" + "\n".join(control_uplift(results, outcomes, args.control_share)))
    print("\nlearned hour preference (the bundle's response model) against the truth's hour term:")
    print("\n".join(hour_quality(world, ModelBundle.load(bundle_path).response, outcomes)))
    print(f"\nstatement cycle: {statement_cycle(world, outcomes)}\n")
    print("\n".join(fresh_content(results, [n for n in results if n != BROADCAST], outcomes)))

    def value(name: str) -> float:
        return results[name]["opens"] - MUTE_PRICE * results[name]["mutes"]

    sweeps = [name for name in results if name.startswith("value-aware, ") and name not in habits]
    engines = ["value-aware engine", "send-all engine", *habits, *sweeps]
    for oracle_name in ORACLES:
        gap = value(oracle_name) - value(BROADCAST)
        closed = ", ".join(f"{name.removesuffix(' engine')} {(value(name) - value(BROADCAST)) / gap:.0%}"
                           if gap > 0 else f"{name.removesuffix(' engine')} n/a (oracle not above broadcast)"
                           for name in engines)
        target = " (target >= 60% for value-aware)" if oracle_name == GAP_ORACLE else ""
        print(f"gap closed = (engine - broadcast) / (oracle - broadcast), oracle '{oracle_name}': "
              f"{closed}{target}")
        for number in months:
            print(f"  {outcomes.month_name(number)}: "
                  + gap_closed({name: results[name]["months"][number] for name in results}, oracle_name,
                               engines))
    taste = value(TRUE_ITEMS) - value("value-aware engine")
    for oracle_name in ORACLES:
        decision = value(oracle_name) - value(TRUE_ITEMS)
        print(f"value-aware engine to the oracle '{oracle_name}': {taste + decision:+,.0f}, of which what to "
              f"push {taste:+,.0f} (to '{TRUE_ITEMS}'), whether and when {decision:+,.0f}")
    if args.decompose or args.slot_choices:
        from benchmarks.month_gaps import MonthTruth, decompose, report, sends_of

        month_truth = MonthTruth(world, outcomes, len(schedule), MUTE_PRICE)
        gap = results[GAP_ORACLE]["expected value"] - results[BROADCAST]["expected value"]
        # a scheduler that follows send_at reaches any time the API names; one that ignores it, its slots
        for name, reach in (("value-aware engine", "any"), (IGNORING, "slots")):
            if name in results and args.decompose:
                log(f"where the month loses value: {name}")
                sends = sends_of(results[name]["batches"], results[name]["muted rows"])
                print("\n" + "\n".join(report(name, decompose(month_truth, sends, reach), gap)))
        if IGNORING in results:
            print("\n" + "\n".join(slot_diagnosis(world, bundle_path, outcomes, month_truth,
                                                   results[IGNORING], gap)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
