"""Where an engine's month loses value, by the world's truth (`benchmarks/month.py --decompose`).

From the engine's own sends (cardholder, time, item), a chain of edits, each scored in expected value
(the truth's p_open - 10 x p_mute summed over the pushes; the recent count from the push log's
marketing pushes and the schedule's own, the local send hour as the month's draws take it):

(a) item: the same sends with the truth's best eligible item (valid at the send, open to the card
    tier, never read or pushed to the cardholder before the month, not pushed earlier in the month);
(b) hour: each send moved to the best time of its local day that the scheduler reaches (its slots
    when it ignores `send_at`, any half hour 08:00-21:30 local when it follows it), 12 h from the
    cardholder's neighbouring sends; for a scheduler that ignores `send_at` the further gain of any
    half hour is reported beside, out of its reach;
(c) whether: sends of negative true value dropped, then a cardholder's unused slots filled where a
    push adds value (on a day without one, at that day's best reachable time);
(d) pacing: one push at a time moved to another day while a move adds value.

Each step keeps the edits before it, so the parts add up to the edited month's value less the engine's.
The edits keep the caps' day, month, quiet-hour and 12 h rules, not the 14-day fatigue pause; a
cardholder the engine's month made mute keeps its sends after (b) (nothing after a mute is reachable).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from recsys.cells import split_list
from recsys.eligibility import epoch_micros, tier_table, valid_between
from recsys.response_model import recent_counts

HALF_HOUR, HOURS_12 = 1800, 12 * 3600
REACHES = ("slots", "any")
THIRDS = ("days 1-10", "days 11-20", "days 21-30")
PARTS = ("engine's own month", "(a) item: truth's best eligible item, same sends",
         "(b) hour: best reachable time of the same day", "(c) whether: negative sends dropped",
         "(c) whether: unused slots filled where worth it", "(d) pacing: pushes moved to better days")


@dataclass(frozen=True)
class Sends:
    """An engine's month: per push its row in the world's cardholders, UTC epoch second and content id;
    `muted` the rows whose month ended in a mute."""

    rows: np.ndarray
    times: np.ndarray
    contents: list[str]
    muted: frozenset[int]


def sends_of(batches: list, muted: set[int]) -> Sends:
    """`run_engine`'s batches (day, slot, rows, send times, contents) as `Sends`."""
    rows = [r for batch in batches for r in np.asarray(batch[2]).tolist()]
    times = [int(t.timestamp()) for batch in batches for t in batch[3]]
    contents = [c for batch in batches for c in batch[4]]
    return Sends(np.asarray(rows, dtype=np.int64), np.asarray(times, dtype=np.int64), contents,
                 frozenset(muted))


class MonthTruth:
    """The truth's value of a cardholder's schedule of pushes, and the times each scheduler reaches."""

    def __init__(self, world: Path, outcomes: Any, days: int, mute_price: float) -> None:
        """`outcomes`: the month's `Outcomes` (truth, cardholders, push log, slots); `mute_price` the value
        of a mute in opens."""
        self.outcomes, self.response, self.mute_price = outcomes, outcomes.response, mute_price
        self.world = world
        content = pd.read_parquet(world / "content.parquet")
        marketing = content.loc[~content["transactional"].astype("boolean").fillna(False).to_numpy()]
        self.item_ids = marketing["content_id"].astype(str).to_numpy()
        self.items = outcomes.truth.content_index(self.item_ids)
        self.valid_from = epoch_micros(marketing["valid_from"]) / 1e6  # epoch seconds, NaN: open
        self.valid_to = epoch_micros(marketing["valid_to"]) / 1e6
        holders = pd.read_parquet(world / "cardholders.parquet")
        tiers = holders["card_tier"].astype("string").fillna("").tolist()
        self.allowed = tier_table(split_list(marketing["card_tiers"]).tolist(),
                                  [t or None for t in tiers])
        column = {c: i for i, c in enumerate(self.item_ids)}
        pushes = pd.read_parquet(world / "push_log.parquet")[["user_id", "content_id"]]
        reads = pd.read_parquet(world / "article_reads.parquet")[["user_id", "content_id"]]
        for user, item in pd.concat([pushes, reads]).astype(str).itertuples(index=False):
            if user in outcomes.row and item in column:
                self.allowed[outcomes.row[user], column[item]] = False
        self.history = {row: np.array([int(t.timestamp()) for t in times], dtype=np.int64)
                        for row, times in outcomes.history.items()}
        start = int(outcomes.month.timestamp())
        self.grid = start + HALF_HOUR * np.arange(days * 48, dtype=np.int64)
        self.month_key = (outcomes.month.year, outcomes.month.month)
        slot_seconds = {3600 * h + 60 * m for h, m in outcomes.slots}
        self.at_slot = ((self.grid - start) % 86400)[:, None] == np.array(sorted(slot_seconds))[None, :]
        self.at_slot = self.at_slot.any(axis=1)
        self._zone_grid: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._off_grid: dict[tuple[str, int], list] = {}

    def local(self, row: int, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local hour (int), local day ordinal and whether in the month, for epoch seconds `times`."""
        times = np.asarray(times, dtype=np.int64)
        zone = self.outcomes.zones[row]
        if zone not in self._zone_grid:
            self._zone_grid[zone] = self._convert(zone, self.grid)
        offset = times - self.grid[0]
        on_grid = (offset % HALF_HOUR == 0) & (offset >= 0) & (offset < HALF_HOUR * len(self.grid))
        at = np.where(on_grid, offset // HALF_HOUR, 0)
        parts = [part[at] for part in self._zone_grid[zone]]
        if not on_grid.all():  # a send_at off the half hours: converted once, then remembered
            missing = [t for t in times[~on_grid].tolist() if (zone, t) not in self._off_grid]
            if missing:
                for t, *found in zip(missing, *self._convert(zone, np.asarray(missing)), strict=True):
                    self._off_grid[(zone, t)] = found
            for k in np.flatnonzero(~on_grid).tolist():
                for part, found in zip(parts, self._off_grid[(zone, int(times[k]))], strict=True):
                    part[k] = found
        return parts[0], parts[1], parts[2]

    def _convert(self, zone: str, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stamps = pd.to_datetime(times, unit="s", utc=True).tz_convert(ZoneInfo(zone))
        months = np.asarray(stamps.year) * 100 + np.asarray(stamps.month)
        return (np.asarray(stamps.hour), np.asarray([t.toordinal() for t in stamps.date]),
                months == self.month_key[0] * 100 + self.month_key[1])

    def candidates(self, row: int, reach: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The times (epoch s), local days and hour terms a scheduler reaches for `row`: "slots" (it ignores
        `send_at`) or "any" (it follows it: every half hour), outside quiet hours, in the local month."""
        if reach not in REACHES:
            raise ValueError(f"reach must be one of {', '.join(REACHES)}, got {reach!r}")
        zone = self.outcomes.zones[row]
        if zone not in self._zone_grid:
            self._zone_grid[zone] = self._convert(zone, self.grid)
        hours, days, inside = self._zone_grid[zone]
        keep = inside & (hours >= 8) & (hours < 22) & (self.at_slot if reach == "slots" else True)
        user = self.outcomes.truth_users[row]
        return self.grid[keep], days[keep], self.response.hour_effect(user, hours[keep].astype(float))

    def value(self, row: int, times: np.ndarray, contents: list[str] | None = None) -> np.ndarray:
        """Per push (in time order) its true value; without `contents` each push carries the best eligible
        item not pushed earlier in the schedule (-inf when none is left)."""
        order = np.argsort(times, kind="stable")
        times = np.asarray(times)[order]
        if not len(times):
            return np.zeros(0)
        hours = self.local(row, times)[0].astype(float)
        history = self.history.get(row, np.zeros(0, dtype=np.int64))
        window = 86400 * self.response.params.window_days
        start, end = times[:, None] - window, times[:, None]
        recent = (1 + ((history[None, :] > start) & (history[None, :] <= end)).sum(1)
                  + ((times[None, :] < end) & (times[None, :] > start)).sum(1))
        user = self.outcomes.truth_users[row]
        if contents is not None:
            items = self.outcomes.truth.content_index(np.asarray(contents)[order])
            return (self.response.open_probability(user, items, recent, hours)
                    - self.mute_price * self.response.mute_probability(user, recent, items))
        items = self.items[None, :]
        worth = (self.response.open_probability(user, items, recent[:, None], hours[:, None])
                 - self.mute_price * self.response.mute_probability(user, recent[:, None], items))
        eligible = self.allowed[row][None, :] & valid_between(self.valid_from, self.valid_to,
                                                                times[:, None].astype(float))
        values = np.full(len(times), -np.inf)
        for k in range(len(times)):
            column = np.where(eligible[k], worth[k], -np.inf).argmax()
            values[k] = np.where(eligible[k], worth[k], -np.inf)[column]
            eligible[k + 1:, column] = False
        return values


def total(values: np.ndarray) -> float:
    return float(values[np.isfinite(values)].sum())


class RowEditor:
    """One cardholder's schedule under the edits (b)-(d): times (epoch s) the scheduler reaches."""

    def __init__(self, truth: MonthTruth, row: int, reach: str) -> None:
        self.truth, self.row = truth, row
        self.times, self.days, self.effect = truth.candidates(row, reach)

    def day_of(self, times: np.ndarray) -> np.ndarray:
        return self.truth.local(self.row, times)[1]

    def best_on(self, day: int, low: float, high: float, keep: int | None = None) -> int | None:
        """The reachable time of local `day` in [low, high] with the best hour term (`keep` wins ties)."""
        mask = (self.days == day) & (self.times >= low) & (self.times <= high)
        if not mask.any():
            return keep
        best = np.flatnonzero(mask)[self.effect[mask].argmax()]
        if keep is not None:
            kept = np.flatnonzero(self.times == keep)
            if len(kept) and self.effect[kept[0]] >= self.effect[best]:
                return keep
        return int(self.times[best])

    def moved_to_best_hours(self, times: np.ndarray) -> np.ndarray:
        """(b): each push to its day's best reachable time, 12 h after the previous (moved) push and 12 h
        before the next one's original time."""
        times = np.sort(times)
        days = self.day_of(times)
        out = []
        for k, (t, day) in enumerate(zip(times.tolist(), days.tolist(), strict=True)):
            low = out[-1] + HOURS_12 if out else -np.inf
            high = times[k + 1] - HOURS_12 if k + 1 < len(times) else np.inf
            chosen = self.best_on(day, low, high, keep=t)
            out.append(t if chosen is None else chosen)
        return np.asarray(out, dtype=np.int64)

    def placed(self, times: np.ndarray, day: int) -> int | None:
        """The best reachable time on local `day` at least 12 h from every push in `times` (None: none)."""
        mask = self.days == day
        if len(times) and day in set(self.day_of(np.asarray(times)).tolist()):
            return None  # one push a local day
        if len(times):
            mask &= (np.abs(self.times[:, None] - np.asarray(times)[None, :]) >= HOURS_12).all(axis=1)
        if not mask.any():
            return None
        return int(self.times[np.flatnonzero(mask)[self.effect[mask].argmax()]])

    def worth(self, times: np.ndarray) -> float:
        return total(self.truth.value(self.row, times))

    def without_negative(self, times: np.ndarray) -> np.ndarray:
        """(c): drop the pushes of negative true value until none is left (dropping one only lowers the
        recent count of the later ones)."""
        while len(times):
            order = np.sort(times)
            values = self.truth.value(self.row, order)
            if (values >= 0).all():
                return order
            times = order[values >= 0]
        return times

    def filled(self, times: np.ndarray, cap: int = 4) -> np.ndarray:
        """(c): while under `cap`, add the push (a free day at its best reachable time) that adds the most."""
        times = np.sort(times)
        current = self.worth(times)
        while len(times) < cap:
            best, gain = self.best_of(current, self._additions(times))
            if best is None:
                return times
            times, current = best, current + gain
        return times

    def paced(self, times: np.ndarray, rounds: int = 8) -> np.ndarray:
        """(d): move one push to another day (its best reachable time there) while a move adds value."""
        times = np.sort(times)
        current = self.worth(times)
        for _ in range(rounds):
            best, gain = self.best_of(current, self._moves(times))
            if best is None:
                break
            times, current = best, current + gain
        return times

    def _additions(self, times: np.ndarray) -> Iterator[np.ndarray]:
        """Every plan with one more push, on any day at its best reachable time."""
        for day in np.unique(self.days).tolist():
            t = self.placed(times, day)
            if t is not None:
                yield np.sort(np.append(times, t))

    def _moves(self, times: np.ndarray) -> Iterator[np.ndarray]:
        """Every plan with one push of `times` moved to another day's best reachable time."""
        for k in range(len(times)):
            rest = np.delete(times, k)
            for day in np.unique(self.days).tolist():
                t = self.placed(rest, day)
                if t is not None and t != times[k]:
                    yield np.sort(np.append(rest, t))

    def best_of(self, current: float, plans: Iterable[np.ndarray]) -> tuple[np.ndarray | None, float]:
        """The plan worth the most over `current` (None if none adds value), and what it adds."""
        best, gain = None, 1e-9
        for plan in plans:
            value = self.worth(plan)
            if value - current > gain:
                best, gain = plan, value - current
        return best, gain


def decompose(truth: MonthTruth, sends: Sends, reach: str) -> dict[str, float]:
    """Expected value after each edit of `PARTS` (and, for reach "slots", of (b) at any half hour)."""
    totals = dict.fromkeys(PARTS, 0.0)
    totals["(b) at any half hour"] = 0.0
    totals["own items: best reachable time"] = 0.0
    totals["own items: negative sends"] = 0.0
    totals.update({f"pushes {label}: {third}": 0.0
                   for label in ("before pacing", "paced") for third in THIRDS})
    for row in np.unique(sends.rows).tolist():
        mine = sends.rows == row
        times = sends.times[mine]
        contents = [c for c, m in zip(sends.contents, mine, strict=True) if m]
        editor = RowEditor(truth, row, reach)
        steps = [total(truth.value(row, times, contents)), editor.worth(times)]
        hours = editor.moved_to_best_hours(times)
        steps.append(editor.worth(hours))
        order = np.argsort(times, kind="stable")
        own = [contents[k] for k in order]  # moved within its day, each push keeps its place in time
        totals["own items: best reachable time"] += total(truth.value(row, hours, own))
        mine_values = truth.value(row, times, contents)
        totals["own items: negative sends"] += float(mine_values[mine_values < 0].sum())
        anywhere = RowEditor(truth, row, "any").moved_to_best_hours(times) if reach == "slots" else hours
        totals["(b) at any half hour"] += editor.worth(anywhere)
        if row in sends.muted:
            steps += [steps[-1]] * 3
        else:
            kept = editor.without_negative(hours)
            steps.append(editor.worth(kept))
            full = editor.filled(kept)
            steps.append(editor.worth(full))
            paced = editor.paced(full)
            steps.append(editor.worth(paced))
            for label, schedule in (("before pacing", full), ("paced", paced)):
                for third in ((schedule - truth.grid[0]) // (10 * 86400)).clip(0, 2).tolist():
                    totals[f"pushes {label}: {THIRDS[third]}"] += 1
        for part, value in zip(PARTS, steps, strict=True):
            totals[part] += value
    return totals


def report(name: str, totals: dict[str, float], gap: float) -> list[str]:
    """A table: each step's expected value, what it adds and that as points of `gap` (the broadcast-to-
    oracle gap)."""
    lines = [f"where the month loses value, {name} (expected value; points of the broadcast-to-oracle gap "
             f"{gap:,.1f}):", "| step | expected value | added | points of the gap |", "|---|---|---|---|"]
    previous = None
    for part in PARTS:
        value = totals[part]
        added = "" if previous is None else f"{value - previous:+,.1f}"
        points = "" if previous is None else f"{100 * (value - previous) / gap:+.1f}"
        lines.append(f"| {part} | {value:,.1f} | {added} | {points} |")
        previous = value
    hour = PARTS[2]
    if abs(totals["(b) at any half hour"] - totals[hour]) > 1e-6:
        extra = totals["(b) at any half hour"] - totals[hour]
        lines.append(f"| (b) at any half hour instead (out of this scheduler's reach) "
                     f"| {totals['(b) at any half hour']:,.1f} | {extra:+,.1f} over (b) "
                     f"| {100 * extra / gap:+.1f} |")
    moved = totals["own items: best reachable time"]
    own = moved - totals[PARTS[0]]
    lines.append(f"| (b) alone, with the engine's own items | {moved:,.1f} "
                 f"| {own:+,.1f} over its month | {100 * own / gap:+.1f} |")
    negative = totals["own items: negative sends"]
    lines.append(f"| the engine's own sends of negative true value | {negative:,.1f} "
                 f"| {-negative:+,.1f} if dropped | {-100 * negative / gap:+.1f} |")
    for label in ("before pacing", "paced"):
        counts = ", ".join(f"{third} {totals[f'pushes {label}: {third}']:,.0f}" for third in THIRDS)
        lines.append(f"pushes {label} (after (c)): {counts}")
    return lines


def slot_choices(truth: MonthTruth, sends: Sends, learned: np.ndarray) -> pd.DataFrame:
    """Per send of a scheduler that ignores `send_at`, against the scheduler's other slots of its local day:
    the expected value of the month with that one send moved to each slot (same item, the recent counts
    of the rest follow), the truth's better slot and the one `learned` prefers (float [rows, 24], e.g.
    the response model's hour terms, as `best_hours` ranks them). Sends on a day with one slot, or off
    the slots, have no choice and are left out. Columns: row, day (of the month, 0 first), sent_right
    (at the truth's better slot), model_right (`learned` prefers the truth's), sent_model (at the slot
    `learned` prefers), loss (the best slot's value less the sent one's)."""
    out: dict[str, list] = {name: [] for name in ("row", "day", "sent_right", "model_right", "sent_model",
                                                  "loss")}
    start = int(truth.grid[0])
    for row in np.unique(sends.rows).tolist():
        mine = np.flatnonzero(sends.rows == row)
        order = mine[np.argsort(sends.times[mine], kind="stable")]
        times, contents = sends.times[order], [sends.contents[k] for k in order]
        reachable, days, _ = truth.candidates(row, "slots")
        hours = truth.local(row, reachable)[0]
        sent_days = truth.local(row, times)[1]
        for k, (t, day) in enumerate(zip(times.tolist(), sent_days.tolist(), strict=True)):
            options = np.flatnonzero(days == day)
            if len(options) < 2 or t not in set(reachable[options].tolist()):
                continue
            worth = []
            for option in options.tolist():
                moved = times.copy()
                moved[k] = reachable[option]
                worth.append(total(truth.value(row, moved, contents)))
            sent = int(np.flatnonzero(reachable[options] == t)[0])
            best, preferred = int(np.argmax(worth)), int(np.argmax(learned[row, hours[options]]))
            for name, value in (("row", row), ("day", (t - start) // 86400), ("sent_right", sent == best),
                                ("model_right", preferred == best), ("sent_model", sent == preferred),
                                ("loss", worth[best] - worth[sent])):
                out[name].append(value)
    return pd.DataFrame(out)


def slot_report(choices: pd.DataFrame, groups: dict[str, pd.Series], gap: float) -> list[str]:
    """`slot_choices` split by each of `groups` (a label per row of the world, e.g. opens in the push log):
    sends, the share at the truth's better slot, the share where `learned` agrees with the truth, and the
    loss (expected value; points of `gap`) split by whether the learned preference was right."""
    lines = ["| split | sends with a choice | at the truth's better slot | learned agrees with the truth "
             "| loss | of it: learned wrong | of it: learned right, sent at the other slot |",
             "|---|---|---|---|---|---|---|"]
    splits = {title: labels.reindex(choices["row"]).to_numpy() for title, labels in groups.items()}
    splits["days"] = np.where(choices["day"] < 2, "1-2 (habit and slots not yet known)", "3-30")
    splits["all"] = np.full(len(choices), "")
    for title, group in splits.items():
        for label in sorted(pd.unique(group), key=str):
            part = choices.loc[group == label]
            wrong = part.loc[~part["model_right"], "loss"].sum()
            ignored = part.loc[part["model_right"] & ~part["sent_model"], "loss"].sum()
            name = f"{title}: {label}" if label != "" else title
            lines.append(f"| {name} | {len(part):,} | {part['sent_right'].mean():.1%} "
                         f"| {part['model_right'].mean():.1%} | {part['loss'].sum():,.1f} "
                         f"({100 * part['loss'].sum() / gap:.1f}) | {wrong:,.1f} ({100 * wrong / gap:.1f}) "
                         f"| {ignored:,.1f} ({100 * ignored / gap:.1f}) |")
    return lines


PEAKS = np.arange(0.0, 24.0, 0.25)  # the grid of peak hours a posterior is computed on


def peak_posterior(rows: np.ndarray, hours: np.ndarray, opened: np.ndarray, logit: np.ndarray, weight: float,
                   n_rows: int) -> np.ndarray:
    """float [n_rows, len(PEAKS)]: each row's posterior over its peak hour (flat prior) from its pushes
    (`rows`, local `hours`, `opened`), each opened with sigmoid(`logit` + weight x cos(2 pi (hour - peak)
    / 24)): the truth's own form of the hour term, with the rest of its logit known."""
    wave = np.asarray(logit)[:, None] + weight * np.cos(2 * np.pi * (np.asarray(hours)[:, None] - PEAKS) / 24)
    likelihood = np.where(np.asarray(opened)[:, None], -np.logaddexp(0.0, -wave), -np.logaddexp(0.0, wave))
    log_post = np.zeros((n_rows, len(PEAKS)))
    np.add.at(log_post, np.asarray(rows), likelihood)
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    return post / post.sum(axis=1, keepdims=True)


def slot_ceiling(truth: MonthTruth, slot_hours: tuple[float, float]) -> np.ndarray:
    """bool [rows of the world]: whether the posterior over each cardholder's peak hour from the push log
    (`peak_posterior`, the truth's engagement, item appeal and fatigue known, its taste not, as a model
    fitted without a taste score could know at best) puts more mass where the first of `slot_hours`
    (local) is the truth's better one than the second, as the truth does: how often the better slot can
    be known from the push log's opens."""
    outcomes, response = truth.outcomes, truth.response
    pushes = pd.read_parquet(truth.world / "push_log.parquet")
    pushes = pushes.loc[pushes["user_id"].astype(str).isin(outcomes.row)]
    rows = pushes["user_id"].astype(str).map(outcomes.row).to_numpy()
    sent = pd.to_datetime(pushes["sent_ts"], utc=True)
    hours = np.empty(len(pushes))
    for zone in np.unique(outcomes.zones[rows]):
        mask = outcomes.zones[rows] == zone
        local = sent[mask].dt.tz_convert(zone)
        hours[mask] = local.dt.hour + local.dt.minute / 60 + local.dt.second / 3600
    items = outcomes.truth.content_index(pushes["content_id"].astype(str).to_numpy())
    marketing = ~response.item_transactional[items]
    seconds = sent.astype("int64").to_numpy() // 10**9
    recent = np.ones(len(pushes), dtype=np.int64)
    recent[marketing] = recent_counts(rows[marketing], seconds[marketing],
                                      86400 * response.params.window_days)
    users = outcomes.truth_users[rows]
    logit = (response.params.base_logit + response.user_engagement[users] + response.item_appeal[items]
             - response.fatigue(items, recent))
    post = peak_posterior(rows, hours, pushes["opened_ts"].notna().to_numpy(), logit,
                          response.params.hour_weight, len(outcomes.user_ids))
    first, second = slot_hours
    first_better = np.cos(2 * np.pi * (first - PEAKS) / 24) > np.cos(2 * np.pi * (second - PEAKS) / 24)
    chosen = post[:, first_better].sum(axis=1) > 0.5
    every = outcomes.truth_users
    return chosen == (response.hour_effect(every, first) > response.hour_effect(every, second))
